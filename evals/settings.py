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
class StageGate:
    thresholds: dict[str, float] = field(default_factory=dict)
    no_regression: tuple[str, ...] = ()
    # Held-out loss of the checkpoint over the baseline's, same batches; None: not gated.
    max_heldout_loss_ratio: float | None = None


@dataclass(frozen=True)
class GateSettings:
    tolerance: float
    stages: dict[int, StageGate]

    def for_stage(self, stage: int) -> StageGate:
        if stage not in self.stages:
            raise ValueError(f"the gate settings have no stage {stage}; stages: {sorted(self.stages)}")
        return self.stages[stage]


@dataclass(frozen=True)
class EvalSettings:
    generation: GenerationSettings
    judge: JudgeSettings
    reasoning: ReasoningSettings
    voice: VoiceSettings
    gate: GateSettings
    samples_per_suite: int


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


SECTIONS = {
    "generation": GenerationSettings,
    "judge": JudgeSettings,
    "reasoning": ReasoningSettings,
    "voice": VoiceSettings,
}


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"evaluation settings {path} do not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(raw) - set(SECTIONS) - {"gate", "samples_per_suite"})
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
        raw["samples_per_suite"] = override.get("samples_per_suite", raw["samples_per_suite"])
    gate_raw = dict(raw["gate"])
    stages = {
        int(stage): _build(StageGate, body or {}, f"{where}: gate.stages.{stage}")
        for stage, body in gate_raw.pop("stages").items()
    }
    for stage, gate in stages.items():
        bad = {k: v for k, v in gate.thresholds.items() if not 0.0 <= float(v) <= 1.0}
        if bad:
            raise ValueError(f"{where}: gate.stages.{stage}.thresholds {bad} are outside 0..1")
    sections = {name: _build(cls, raw[name], f"{where}: {name}") for name, cls in SECTIONS.items()}
    gate = _build(GateSettings, {**gate_raw, "stages": stages}, f"{where}: gate")
    return EvalSettings(**sections, gate=gate, samples_per_suite=int(raw["samples_per_suite"]))
