"""Evaluation settings read from evals/evaluate.yaml into dataclasses (the one source of truth)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
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
    unknown = sorted(set(raw) - set(SECTIONS) - {"gate", *SCALARS})
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
    return EvalSettings(
        **sections,
        gate=gate,
        epochs=int(raw["epochs"]),
        suite_limit=None if limit is None else int(limit),
    )
