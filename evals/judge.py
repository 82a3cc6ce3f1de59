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
from pathlib import Path

import yaml

from datamodules.openai_client import ChatClient, ChatRequestError
from evals.metrics import Metric, unmeasured
from evals.settings import JudgeSettings

log = logging.getLogger(__name__)
RUBRICS_FILE = Path(__file__).parent / "rubrics.yaml"
SPEAKERS = {"system": "System", "user": "Help-seeker", "assistant": "Assistant"}


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "int" or "yes_no"
    min: int = 0
    max: int = 1


@dataclass(frozen=True)
class RubricMetric:
    name: str
    fields: tuple[str, ...]
    scale: str
    invert: bool = False


@dataclass(frozen=True)
class Rubric:
    name: str
    instructions: str
    fields: dict[str, Field]
    metrics: dict[str, RubricMetric]


def load_rubrics(path: Path = RUBRICS_FILE) -> dict[str, Rubric]:
    rubrics = {}
    for name, body in yaml.safe_load(path.read_text()).items():
        fields = {}
        for field_name, spec in body["fields"].items():
            if spec["kind"] == "yes_no":
                fields[field_name] = Field(field_name, "yes_no", 0, 1)
            elif spec["kind"] == "int":
                fields[field_name] = Field(field_name, "int", int(spec["min"]), int(spec["max"]))
            else:
                raise ValueError(f"{path}: {name}.{field_name}: kind must be int or yes_no")
        metrics = {}
        for metric_name, spec in body["metrics"].items():
            unknown = [f for f in spec["fields"] if f not in fields]
            if unknown:
                raise ValueError(f"{path}: {name}.metrics.{metric_name} names unknown fields {unknown}")
            metrics[metric_name] = RubricMetric(
                metric_name, tuple(spec["fields"]), spec["scale"], bool(spec.get("invert", False))
            )
        rubrics[name] = Rubric(name, body["instructions"].strip(), fields, metrics)
    return rubrics


class MalformedJudgement(ValueError):
    """The judge answered, but not with one JSON object holding the rubric's fields in range."""


def parse_judgement(text: str, rubric: Rubric) -> dict[str, int]:
    match = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if not match:
        raise MalformedJudgement("no JSON object in the answer")
    try:
        answer = json.loads(match.group(0))
    except json.JSONDecodeError as error:
        raise MalformedJudgement(f"invalid JSON: {error.msg}") from None
    if not isinstance(answer, dict):
        raise MalformedJudgement("the answer is not a JSON object")
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


def judge_messages(
    rubric: Rubric, conversation: Sequence[Mapping[str, str]], reply: str
) -> list[dict[str, str]]:
    transcript = "\n\n".join(f"{SPEAKERS[m['role']]}: {m['content']}" for m in conversation)
    keys = ", ".join(
        f'"{f.name}": "yes"|"no"' if f.kind == "yes_no" else f'"{f.name}": integer {f.min}-{f.max}'
        for f in rubric.fields.values()
    )
    return [
        {"role": "system", "content": rubric.instructions},
        {
            "role": "user",
            "content": (
                f"Conversation so far:\n\n{transcript}\n\nReply to rate:\n\n{reply}\n\n"
                f"Answer with only one JSON object: {{{keys}}}"
            ),
        },
    ]


class JudgeError(RuntimeError):
    """The endpoint refused the request or did not answer in the protocol (after retries)."""


class JudgeClient:
    """The shared chat client; any request that did not come back becomes a JudgeError, which
    score_replies counts as a failed verdict."""

    def __init__(self, settings: JudgeSettings):
        if not settings.configured:
            raise ValueError("the judge needs judge.base_url and judge.model in the evaluation settings")
        self.settings = settings
        self.chat = ChatClient(settings)

    def complete(self, messages: list[dict[str, str]]) -> str:
        try:
            return self.chat.complete(messages)
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
        metric = self.rubric.metrics[metric_name]
        low = sum(self.rubric.fields[f].min for f in metric.fields)
        high = sum(self.rubric.fields[f].max for f in metric.fields)
        values = {}
        for item, scores in self.per_item.items():
            if scores is not None:
                value = (sum(scores[f] for f in metric.fields) - low) / (high - low)
                values[item] = 1 - value if metric.invert else value
        return values

    def metrics(self) -> list[Metric]:
        out = []
        unscored = self.malformed + self.failed
        note = f"{self.malformed} malformed and {self.failed} failed judge answers of {len(self.per_item)}"
        for metric in self.rubric.metrics.values():
            scored = [s for s in self.per_item.values() if s is not None]
            if not scored:
                out.append(unmeasured(metric.name, metric.scale, "judge", note, unscored=unscored))
                continue
            raw = sum(sum(s[f] for f in metric.fields) for s in scored) / len(scored)
            values = self.normalised(metric.name)
            value = sum(values.values()) / len(values)
            out.append(
                Metric(
                    metric.name,
                    value,
                    raw,
                    metric.scale,
                    "judge",
                    n=len(scored),
                    unscored=unscored,
                    note=note,
                )
            )
        return out


def score_replies(
    client: JudgeClient, rubric: Rubric, items: Mapping[str, tuple[Sequence[Mapping[str, str]], str]]
) -> RubricScores:
    """items: id -> (conversation before the reply, reply)."""

    def one(item: tuple[str, tuple]) -> tuple[str, dict[str, int] | None, str]:
        key, (conversation, reply) = item
        try:
            answer = client.complete(judge_messages(rubric, conversation, reply))
        except JudgeError as error:
            return key, None, str(error)
        try:
            return key, parse_judgement(answer, rubric), ""
        except MalformedJudgement as error:
            return key, None, f"malformed: {error}"

    results = client.chat.map(one, items.items())
    malformed = sum(problem.startswith("malformed") for _, _, problem in results)
    failed = sum(bool(problem) and not problem.startswith("malformed") for _, _, problem in results)
    for problem in sorted({p for _, _, p in results if p}):
        log.warning("judge %s: %s", rubric.name, problem)  # reasons only, never conversation text
    return RubricScores(rubric, {key: scores for key, scores, _ in results}, malformed, failed)
