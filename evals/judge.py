"""LLM judge through an OpenAI-compatible chat-completions endpoint, scoring replies on rubrics.

HTTP, retries and the API key are datamodules/openai_client.py's, shared with the voice build.
Conversation text is sent only to the endpoint the user configured, never logged. A malformed judge
answer and a failed request are counted and left out, never fatal.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Literal

import yaml

from datamodules.openai_client import ChatClient, ChatRequestError
from datamodules.typed_settings import build
from evals.metrics import Metric, mean_metric
from evals.settings import JudgeSettings

log = logging.getLogger(__name__)
RUBRICS_FILE = Path(__file__).parent / "rubrics.yaml"
SPEAKERS = {"system": "System", "user": "Help-seeker", "assistant": "Assistant"}


@dataclass(frozen=True)
class Field:
    """One field of a judge's answer: an integer on an anchored scale, or yes/no."""

    name: str
    kind: Literal["int", "yes_no"]
    min: int | None = None  # int fields: the scale's ends (yes/no is 0..1)
    max: int | None = None
    # What each level means (anchored scale): level -> description, shown to the judge. An int
    # field describes every level; a yes/no field's question is in the rubric's instructions.
    anchors: dict[int, str] = dataclass_field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind == "yes_no":
            if (self.min, self.max) not in ((None, None), (0, 1)) or self.anchors:
                raise ValueError(
                    "a yes_no field takes no min, max or anchors (ask its question in the instructions)"
                )
            object.__setattr__(self, "min", 0)
            object.__setattr__(self, "max", 1)
        elif self.min is None or self.max is None or self.min >= self.max:
            raise ValueError(f"an int field needs min < max, got min {self.min} and max {self.max}")
        elif set(self.anchors) != set(range(self.min, self.max + 1)):
            got = sorted(self.anchors)
            raise ValueError(f"anchors must describe each level {self.min}..{self.max} and no other: {got}")


@dataclass(frozen=True)
class RubricMetric:
    """A metric: the sum of some fields, normalised to 0..1 (`invert` where lower is better)."""

    name: str
    fields: tuple[str, ...]
    scale: str
    invert: bool = False


@dataclass(frozen=True)
class Rubric:
    """One rubric of a rubrics file: the judge's instructions, the answer's fields and the metrics."""

    name: str
    instructions: str
    fields: dict[str, Field]
    metrics: dict[str, RubricMetric]
    # A pass/fail verdict: field -> the answer a passing reply has (e.g. method_information: no).
    pass_when: dict[str, Literal["yes", "no"]] = dataclass_field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "instructions", self.instructions.strip())
        if not self.fields:
            raise ValueError("fields: a rubric needs at least one field")
        for metric in self.metrics.values():
            unknown = [f for f in metric.fields if f not in self.fields]
            if unknown:
                known = list(self.fields)
                raise ValueError(f"metrics.{metric.name} names unknown fields {unknown}; known: {known}")
        wrong = [k for k in self.pass_when if k not in self.fields or self.fields[k].kind != "yes_no"]
        if wrong:
            raise ValueError(f"pass_when must name yes/no fields, got {wrong}")

    def raw_range(self, metric_name: str) -> tuple[float, float]:
        """The metric's raw scale, ordered from worst to best (inverted metrics run high to low)."""
        metric = self.metrics[metric_name]
        low = float(sum(self.fields[f].min for f in metric.fields))
        high = float(sum(self.fields[f].max for f in metric.fields))
        return (high, low) if metric.invert else (low, high)

    def normalise(self, metric_name: str, scores: Mapping[str, int]) -> float:
        """One answer's value of a metric on 0..1, higher is better."""
        worst, best = self.raw_range(metric_name)
        total = sum(scores[f] for f in self.metrics[metric_name].fields)
        return (total - worst) / (best - worst)

    def passes(self, scores: Mapping[str, int]) -> bool:
        """The pass/fail verdict of one answer (pass_when)."""
        return not self.failed_fields(scores)

    def failed_fields(self, scores: Mapping[str, int]) -> list[str]:
        """The pass_when fields an answer got wrong, e.g. ["validates_plan=yes"]: the judge's reason."""
        return [
            f"{f}={'yes' if scores[f] else 'no'}"
            for f, answer in self.pass_when.items()
            if scores[f] != int(answer == "yes")
        ]

    def schema(self) -> dict:
        """JSON schema of an answer: the rationale first, then every field (for guided decoding)."""
        properties: dict[str, dict] = {"rationale": {"type": "string"}}
        for f in self.fields.values():
            properties[f.name] = (
                {"type": "string", "enum": ["yes", "no"]}
                if f.kind == "yes_no"
                else {"type": "integer", "minimum": f.min, "maximum": f.max}
            )
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }


def load_rubrics(path: Path = RUBRICS_FILE) -> dict[str, Rubric]:
    """The rubrics of a YAML file, type-checked and built by jsonargparse (typed_settings.build):
    a bad value raises ValueError naming the file and the key, e.g. `crisis.fields.engages.kind`."""
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(entries, Mapping):
        raise ValueError(f"{path}: expected a mapping of rubric names to rubrics, not {entries!r:.40}")
    named = {str(name): body for name, body in entries.items()}
    return {name: build(Rubric, _named(body, name), str(path), name) for name, body in named.items()}


def _named(body: Any, name: str) -> Any:
    """A rubric as the file writes it, with the names its keys give (the rubric's, each field's and
    each metric's), as the dataclasses hold them."""
    if not isinstance(body, Mapping):
        return body  # build names what is wrong with it
    named = {**body, "name": name}
    for section in ("fields", "metrics"):
        if isinstance(body.get(section), Mapping):
            named[section] = {
                key: {**value, "name": str(key)} if isinstance(value, Mapping) else value
                for key, value in body[section].items()
            }
    return named


class MalformedJudgement(ValueError):
    """The judge answered, but not with one JSON object holding a rationale and the rubric's fields."""


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def parse_judgement(text: str, rubric: Rubric) -> dict[str, int]:
    """The field scores of the first JSON object in the answer (decoded, not matched by a regex, so
    braces inside the rationale or a second object cannot confuse it)."""
    text = _FENCE.sub("", text.strip())
    start = text.find("{")
    if start < 0:
        raise MalformedJudgement("no JSON object in the answer")
    try:
        answer, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as error:
        raise MalformedJudgement(f"invalid JSON: {error.msg}") from None
    if not isinstance(answer, dict):
        raise MalformedJudgement("the answer is not a JSON object")
    if not isinstance(answer.get("rationale"), str) or not answer["rationale"].strip():
        raise MalformedJudgement("the rationale is missing (it must come before the scores)")
    scores = {}
    for field in rubric.fields.values():
        if field.name not in answer:
            raise MalformedJudgement(f"field {field.name!r} is missing")
        value = answer[field.name]
        if field.kind == "yes_no":
            if not isinstance(value, str) or value.strip().lower() not in ("yes", "no"):
                raise MalformedJudgement(f"field {field.name!r} must be 'yes' or 'no'")
            scores[field.name] = int(value.strip().lower() == "yes")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
                raise MalformedJudgement(f"field {field.name!r} must be an integer")
            if not field.min <= value <= field.max:
                raise MalformedJudgement(
                    f"field {field.name!r} = {value} is outside {field.min}..{field.max}"
                )
            scores[field.name] = int(value)
    return scores


def _field_help(field: Field) -> str:
    levels = "; ".join(f"{level} = {text}" for level, text in field.anchors.items())
    kind = '"yes" or "no"' if field.kind == "yes_no" else f"an integer {field.min}-{field.max}"
    return f"- {field.name}: {kind}" + (f" ({levels})" if levels else "")


def transcript(conversation: Sequence[Mapping[str, str]]) -> str:
    """The conversation as a judge reads it, one speaker-labelled turn per paragraph."""
    return "\n\n".join(f"{SPEAKERS[m['role']]}: {m['content']}" for m in conversation)


def judge_messages(
    rubric: Rubric, conversation: Sequence[Mapping[str, str]], reply: str
) -> list[dict[str, str]]:
    keys = ", ".join(
        f'"{f.name}": "yes"|"no"' if f.kind == "yes_no" else f'"{f.name}": integer {f.min}-{f.max}'
        for f in rubric.fields.values()
    )
    scale = "\n".join(_field_help(f) for f in rubric.fields.values())
    return [
        {"role": "system", "content": f"{rubric.instructions}\n\nScore levels:\n{scale}"},
        {
            "role": "user",
            "content": (
                f"Conversation so far:\n\n{transcript(conversation)}\n\nReply to rate:\n\n{reply}\n\n"
                "First give your rationale (two or three sentences citing the reply), then the scores. "
                f'Answer with only one JSON object: {{"rationale": string, {keys}}}'
            ),
        },
    ]


def _same_model(a: str, b: str) -> bool:
    """Two model names that denote one model: equal, or equal after dropping a path or org prefix."""
    def norm(name: str) -> str:
        return name.rstrip("/").casefold()

    return norm(a) == norm(b) or norm(a).rsplit("/", 1)[-1] == norm(b).rsplit("/", 1)[-1]


class JudgeError(RuntimeError):
    """The endpoint refused the request or did not answer in the protocol (after retries)."""


class JudgeClient:
    """The shared chat client; any request that did not come back becomes a JudgeError, which
    score_replies counts as a failed verdict."""

    def __init__(self, settings: JudgeSettings, under_test: Sequence[str] = ()):
        """under_test: names of the models being evaluated (checkpoints and the base model they were
        built on); a judge that is one of them would grade its own replies, so it is refused."""
        if not settings.configured:
            raise ValueError("the judge needs judge.base_url and judge.model in the evaluation settings")
        same = [name for name in under_test if _same_model(settings.model, name)]
        if same:
            raise ValueError(
                f"the judge model {settings.model!r} is the model under test ({same[0]}): a model must not "
                "grade its own replies; point judge.model at another model"
            )
        self.settings = settings
        self.chat = ChatClient(settings)

    @property
    def model_id(self) -> str:
        return f"{self.settings.model} at {self.settings.base_url}"

    def complete(self, messages: list[dict[str, str]], rubric: Rubric | None = None) -> str:
        extra = None
        if rubric is not None and self.settings.guided_json:
            extra = {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": rubric.name, "schema": rubric.schema(), "strict": True},
                }
            }
        try:
            return self.chat.complete(messages, extra)
        except ChatRequestError as error:
            raise JudgeError(f"judge: {error}") from None


@dataclass
class RubricScores:
    """One rubric's verdicts: per item the field scores, or None when malformed or failed."""

    rubric: Rubric
    per_item: dict[str, dict[str, int] | None]
    malformed: int
    failed: int

    def normalised(self, metric_name: str) -> dict[str, float]:
        """Per-item 0..1 value of one metric (items without a verdict left out)."""
        return {
            item: self.rubric.normalise(metric_name, scores)
            for item, scores in self.per_item.items()
            if scores is not None
        }

    def metrics(self) -> list[Metric]:
        """One metric per rubric metric: mean over items, clustered by prompt (item key `id#epoch`);
        unmeasured below the coverage floor (evals.metrics.MIN_COVERAGE)."""
        out = []
        note = f"{self.malformed} malformed and {self.failed} failed judge answers of {len(self.per_item)}"
        for metric in self.rubric.metrics.values():
            values = self.normalised(metric.name)
            per_item = [(item.partition("#")[0], values.get(item)) for item in self.per_item]
            raw_scale = self.rubric.raw_range(metric.name)
            out.append(mean_metric(metric.name, per_item, metric.scale, "judge", note, raw_scale))
        return out


def judge_reply(
    client: JudgeClient, rubric: Rubric, conversation: Sequence[Mapping[str, str]], reply: str
) -> tuple[dict[str, int] | None, str]:
    """(field scores, problem) for one reply: a refused request (HTTP 400 content filter, timeout)
    or a prose answer gives (None, why), never an exception."""
    try:
        answer = client.complete(judge_messages(rubric, conversation, reply), rubric)
    except JudgeError as error:
        return None, str(error)
    try:
        return parse_judgement(answer, rubric), ""
    except MalformedJudgement as error:
        return None, f"malformed: {error}"


def score_replies(
    client: JudgeClient, rubric: Rubric, items: Mapping[str, tuple[Sequence[Mapping[str, str]], str]]
) -> RubricScores:
    """items: id -> (conversation before the reply, reply)."""

    def one(item: tuple[str, tuple]) -> tuple[str, dict[str, int] | None, str]:
        key, (conversation, reply) = item
        scores, problem = judge_reply(client, rubric, conversation, reply)
        return key, scores, problem

    results = client.chat.map(one, items.items())
    malformed = sum(problem.startswith("malformed") for _, _, problem in results)
    failed = sum(bool(problem) and not problem.startswith("malformed") for _, _, problem in results)
    for problem in sorted({p for _, _, p in results if p}):
        log.warning("judge %s: %s", rubric.name, problem)  # reasons only, never conversation text
    return RubricScores(rubric, {key: scores for key, scores, _ in results}, malformed, failed)
