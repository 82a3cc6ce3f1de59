"""Evaluation settings read from evals/evaluate.yaml into dataclasses (the one source of truth)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SETTINGS = Path(__file__).parent / "evaluate.yaml"


# No defaults here: every value comes from evals/evaluate.yaml, the one place they are written.
@dataclass(frozen=True)
class GenerationSettings:
    # 0: greedy decoding (the same reply every sample); above 0: seeded sampling.
    temperature: float
    min_p: float
    repetition_penalty: float
    max_new_tokens: int
    batch_size: int
    seed: int


@dataclass(frozen=True)
class JudgeSettings:
    base_url: str | None
    model: str | None
    api_key_env: str | None
    temperature: float
    max_tokens: int
    timeout_s: float
    max_retries: int
    backoff_s: float
    concurrency: int
    calibration_replies: int
    # Ask for the rubric's JSON schema as `response_format` (vLLM and OpenAI decode to it).
    guided_json: bool

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)


@dataclass(frozen=True)
class ReasoningSettings:
    patterns: tuple[str, ...]
    min_words: int


@dataclass(frozen=True)
class VoiceSettings:
    min_classifier_accuracy: float
    test_fraction: float
    educator_sources: tuple[str, ...]


@dataclass(frozen=True)
class ReplySettings:
    """The reply comparison (evals.compare), gated at every stage."""

    # A prompt is won or lost when relevance (cosine, -1..1) differs by more than this; a tie otherwise.
    margin: float
    # Two replies to different prompts with at least this cosine are the same stock reply.
    near_duplicate: float
    # Collapse: more than this share of prompts answered with a stock reply (and more than the reference).
    max_stock_share: float
    # The mean per-prompt relevance may fall at most this far below the reference's (on the lower
    # bound of its paired 95% interval).
    relevance_tolerance: float


@dataclass(frozen=True)
class Threshold:
    """`>= 0.9` or `> 0.8` (the plan's sign); a bare number in the YAML means `>=`."""

    op: str
    value: float

    @classmethod
    def parse(cls, spec: float | int | str, where: str) -> Threshold:
        text = str(spec).strip()
        op = ">=" if text.startswith(">=") else ">" if text.startswith(">") else ">="
        try:
            value = float(text.lstrip(">=").strip())
        except ValueError:
            raise ValueError(f"{where}: threshold {spec!r} must be a number, '> x' or '>= x'") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{where}: threshold {spec!r} is outside 0..1")
        return cls(op, value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass(frozen=True)
class StageGate:
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    no_regression: tuple[str, ...] = ()
    # Held-out loss of the checkpoint over the baseline's, same batches; None: not gated.
    max_heldout_loss_ratio: float | None = None
    # Loss on an earlier stage's test split over the previous stage's and stage 1's; None: not gated.
    max_forgetting_ratio: float | None = None


@dataclass(frozen=True)
class GateSettings:
    tolerance: float
    stages: dict[int, StageGate]

    def for_stage(self, stage: int) -> StageGate:
        if stage not in self.stages:
            raise ValueError(f"the gate settings have no stage {stage}; stages: {sorted(self.stages)}")
        return self.stages[stage]

    def thresholds(self, stage: int) -> dict[str, Threshold]:
        """The stage's absolute thresholds over stage 1's: stage 1's hold at every later stage."""
        first = self.stages[1].thresholds if 1 in self.stages else {}
        return {**first, **self.for_stage(stage).thresholds}


@dataclass(frozen=True)
class HumanReviewGate:
    """What a stage asks of the blind side-by-side review (stages/review.py, evals/human_review.py)."""

    # Below this many distinct reviewed prompts the human preference is unmeasured.
    min_prompts: int
    # The 95% lower bound of the checkpoint's win rate (tie = 1/2) must be at least this.
    min_win_rate: float
    # Any reply of the checkpoint flagged unsafe by a reviewer means retrain.
    unsafe_means_retrain: bool
    # true: no (or too few) reviews makes the decision `incomplete`; false: reported, not gated.
    required: bool


@dataclass(frozen=True)
class EvalSettings:
    generation: GenerationSettings
    judge: JudgeSettings
    reasoning: ReasoningSettings
    voice: VoiceSettings
    replies: ReplySettings
    gate: GateSettings
    # Samples per prompt (inspect epochs): every metric's interval is over prompts x epochs.
    epochs: int
    # At most this many prompts of each suite, the first in file order (a fixed subset); None: all.
    suite_limit: int | None
    # Stage -> the blind review's gate.
    human_review: dict[int, HumanReviewGate] = field(default_factory=dict)

    def review_gate(self, stage: int) -> HumanReviewGate:
        if stage not in self.human_review:
            raise ValueError(f"the human_review settings have no stage {stage}; stages: {sorted(self.human_review)}")
        return self.human_review[stage]


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """A dataclass from a mapping; an unknown or missing key is an error naming where it sits."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except TypeError as error:
        raise ValueError(f"{where}: {error}") from None


SCALARS = ("epochs", "suite_limit")
SECTIONS = {
    "generation": GenerationSettings,
    "judge": JudgeSettings,
    "reasoning": ReasoningSettings,
    "voice": VoiceSettings,
    "replies": ReplySettings,
}


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"evaluation settings {path} do not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(raw) - set(SECTIONS) - {"gate", "human_review", *SCALARS})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}")
    return raw


def load_settings(path: str | Path = DEFAULT_SETTINGS) -> EvalSettings:
    """The shipped evals/evaluate.yaml, with what `path` names laid over it.

    A section's fields override one by one; a stage's gate (gate.stages.N) is replaced as a whole,
    so a file can loosen or tighten one stage without inheriting thresholds it did not name.
    """
    raw = _read(DEFAULT_SETTINGS)
    where = str(DEFAULT_SETTINGS)
    if Path(path).resolve() != DEFAULT_SETTINGS.resolve():
        override = _read(Path(path))
        where = f"{path} over {DEFAULT_SETTINGS}"
        for name in SECTIONS:
            raw[name] = {**raw.get(name, {}), **(override.get(name) or {})}
        gate = override.get("gate") or {}
        raw["gate"] = {
            **raw["gate"],
            **{k: v for k, v in gate.items() if k != "stages"},
            "stages": {**raw["gate"]["stages"], **(gate.get("stages") or {})},
        }
        for name in SCALARS:
            raw[name] = override.get(name, raw[name])
        review = (override.get("human_review") or {}).get("stages") or {}
        raw["human_review"] = {"stages": {**raw["human_review"]["stages"], **review}}
    gate_raw = dict(raw["gate"])
    stages = {}
    for stage, body in gate_raw.pop("stages").items():
        body = dict(body or {})
        here = f"{where}: gate.stages.{stage}"
        body["thresholds"] = {
            k: Threshold.parse(v, f"{here}.thresholds.{k}") for k, v in (body.get("thresholds") or {}).items()
        }
        stages[int(stage)] = _build(StageGate, body, here)
    sections = {name: _build(cls, raw[name], f"{where}: {name}") for name, cls in SECTIONS.items()}
    gate = _build(GateSettings, {**gate_raw, "stages": stages}, f"{where}: gate")
    if int(raw["epochs"]) < 1:
        raise ValueError(f"{where}: epochs must be at least 1")
    limit = raw["suite_limit"]
    review = {
        int(stage): _build(HumanReviewGate, dict(body or {}), f"{where}: human_review.stages.{stage}")
        for stage, body in (raw["human_review"].get("stages") or {}).items()
    }
    for stage, gate_of_stage in review.items():
        if not 0.0 <= gate_of_stage.min_win_rate <= 1.0 or gate_of_stage.min_prompts < 1:
            raise ValueError(
                f"{where}: human_review.stages.{stage}: min_win_rate must lie in 0..1 and min_prompts be at least 1"
            )
    return EvalSettings(
        **sections,
        gate=gate,
        epochs=int(raw["epochs"]),
        suite_limit=None if limit is None else int(limit),
        human_review=review,
    )


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    """--judge-url and --judge-model, the same for every command that can call the judge."""
    parser.add_argument(
        "--judge-url", help="override judge.base_url (OpenAI-compatible, e.g. http://host:8000/v1)"
    )
    parser.add_argument("--judge-model", help="override judge.model")


def with_judge_arguments(settings: EvalSettings, args: argparse.Namespace) -> EvalSettings:
    """The settings with what --judge-url and --judge-model name laid over the judge section."""
    if not (args.judge_url or args.judge_model):
        return settings
    judge = replace(
        settings.judge,
        base_url=args.judge_url or settings.judge.base_url,
        model=args.judge_model or settings.judge.model,
    )
    return replace(settings, judge=judge)
