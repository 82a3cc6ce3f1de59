"""Evaluation settings read from evals/evaluate.yaml into dataclasses (the one source of truth)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SETTINGS = Path(__file__).parent / "evaluate.yaml"


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = 0.8
    min_p: float = 0.025
    repetition_penalty: float = 1.05
    max_new_tokens: int = 400
    batch_size: int = 8
    seed: int = 1234


@dataclass(frozen=True)
class JudgeSettings:
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = "JUDGE_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 300
    timeout_s: float = 60
    max_retries: int = 2
    concurrency: int = 4
    calibration_replies: int = 24

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)


@dataclass(frozen=True)
class ReasoningSettings:
    patterns: tuple[str, ...] = ("<think>(.*?)</think>",)
    min_words: int = 15


@dataclass(frozen=True)
class VoiceSettings:
    min_classifier_accuracy: float = 0.75
    test_fraction: float = 0.25
    educator_sources: tuple[str, ...] = ("voice",)


@dataclass(frozen=True)
class StageGate:
    thresholds: dict[str, float] = field(default_factory=dict)
    no_regression: tuple[str, ...] = ()
    # Held-out loss of the checkpoint over the baseline's, same batches; None: not gated.
    max_heldout_loss_ratio: float | None = None


@dataclass(frozen=True)
class GateSettings:
    tolerance: float = 0.05
    stages: dict[int, StageGate] = field(default_factory=dict)

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
    samples_per_suite: int = 3


def _build(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """A dataclass from a mapping; an unknown key is an error naming where it sits."""
    values = values or {}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


SECTIONS = {
    "generation": GenerationSettings,
    "judge": JudgeSettings,
    "reasoning": ReasoningSettings,
    "voice": VoiceSettings,
}


def load_settings(path: str | Path = DEFAULT_SETTINGS) -> EvalSettings:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluation settings {path} do not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(raw) - set(SECTIONS) - {"gate", "samples_per_suite"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}")
    gate_raw = dict(raw.get("gate") or {})
    stages = {
        int(stage): _build(StageGate, body, f"{path}: gate.stages.{stage}")
        for stage, body in (gate_raw.pop("stages", None) or {}).items()
    }
    for stage, gate in stages.items():
        bad = {k: v for k, v in gate.thresholds.items() if not 0.0 <= float(v) <= 1.0}
        if bad:
            raise ValueError(f"{path}: gate.stages.{stage}.thresholds {bad} are outside 0..1")
    sections = {name: _build(cls, raw.get(name), f"{path}: {name}") for name, cls in SECTIONS.items()}
    gate = _build(GateSettings, gate_raw, f"{path}: gate")
    return EvalSettings(
        **sections,
        gate=GateSettings(tolerance=gate.tolerance, stages=stages),
        samples_per_suite=int(raw.get("samples_per_suite", 3)),
    )
