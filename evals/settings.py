"""Evaluation settings read from evals/evaluate.yaml into dataclasses (the one source of truth),
type-checked and built by jsonargparse (datamodules.typed_settings)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_type_hints

import yaml
from datamodules.typed_settings import build, entries_of, is_section, register_text_type

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
    def parse(cls, spec: float | int | str) -> Threshold:
        text = str(spec).strip()
        op = ">=" if text.startswith(">=") else ">" if text.startswith(">") else ">="
        try:
            value = float(text.lstrip(">=").strip())
        except ValueError:
            raise ValueError(f"threshold {spec!r} must be a number, '> x' or '>= x'") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"threshold {spec!r} is outside 0..1")
        return cls(op, value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


register_text_type(Threshold, Threshold.parse)  # written "> 0.8" in the YAML


@dataclass(frozen=True)
class StageGate:
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    no_regression: tuple[str, ...] = ()
    # Held-out loss of the checkpoint over the baseline's, same batches; None: not gated.
    max_heldout_loss_ratio: float | None = None
    # Loss on an earlier stage's test split over the previous stage's and stage 1's; None: not gated.
    max_forgetting_ratio: float | None = None
    # true: the stage must show its replies better than the previous stage's (stage 1: the base
    # model's), not only no worse: the share of prompts won has its 95% lower bound above 0.5.
    replies_must_improve: bool = False


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

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_win_rate <= 1.0 or self.min_prompts < 1:
            raise ValueError("min_win_rate must lie in 0..1 and min_prompts be at least 1")


@dataclass(frozen=True)
class HumanReviewSettings:
    """Stage -> the blind review's gate."""

    stages: dict[int, HumanReviewGate] = field(default_factory=dict)


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
    human_review: HumanReviewSettings = field(default_factory=HumanReviewSettings)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be at least 1")

    def review_gate(self, stage: int) -> HumanReviewGate:
        stages = self.human_review.stages
        if stage not in stages:
            raise ValueError(f"the human_review settings have no stage {stage}; stages: {sorted(stages)}")
        return stages[stage]


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"evaluation settings {path} do not exist")
    return yaml.safe_load(path.read_text()) or {}


def overlay(cls: type, base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` laid over `base` by `cls`'s structure: a section (a dataclass) field by field, a
    mapping of dataclasses (a gate's stages) entry by entry with each entry replaced whole, any
    other value replaced."""
    hints = get_type_hints(cls)
    out = dict(base)
    for name, value in top.items():
        hint, below = hints.get(name), base.get(name)
        if isinstance(value, Mapping) and isinstance(below, Mapping) and is_section(hint):
            out[name] = overlay(hint, below, value)
        elif isinstance(value, Mapping) and isinstance(below, Mapping) and entries_of(hint) is not None:
            out[name] = {**below, **value}
        else:
            out[name] = value
    return out


def load_settings(path: str | Path = DEFAULT_SETTINGS) -> EvalSettings:
    """The shipped evals/evaluate.yaml, with what `path` names laid over it.

    A section's fields override one by one; a stage's gate (gate.stages.N) or review gate
    (human_review.stages.N) is replaced as a whole, so a file can loosen or tighten one stage
    without inheriting thresholds it did not name.
    """
    raw, where = _read(DEFAULT_SETTINGS), str(DEFAULT_SETTINGS)
    if Path(path).resolve() != DEFAULT_SETTINGS.resolve():
        raw, where = overlay(EvalSettings, raw, _read(Path(path))), f"{path} over {DEFAULT_SETTINGS}"
    return build(EvalSettings, raw, where)


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
