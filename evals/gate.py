"""The gate: proceed to the next stage, retrain, or say the evaluation is incomplete.

Thresholds per stage and the no-regression tolerance live in evals/evaluate.yaml. A gated metric that
was not measured, or was measured only by the offline proxy, makes the decision `incomplete`: a
pipeline must not proceed on a score nobody actually measured. Exit codes differ per decision so a
shell pipeline stops (1 stays Python's own error code, 2 argparse's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from evals.metrics import Metric
from evals.settings import GateSettings

PROCEED, RETRAIN, INCOMPLETE = "proceed", "retrain", "incomplete"
EXIT_CODES = {PROCEED: 0, RETRAIN: 3, INCOMPLETE: 4}


@dataclass(frozen=True)
class Decision:
    decision: str
    reasons: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]


def _usable(metric: Metric | None, name: str, who: str) -> str | None:
    """Why a metric cannot be used for a gate, or None when it can."""
    if metric is None or not metric.measured:
        why = f": {metric.note}" if metric is not None and metric.note else ""
        return f"{name} was not measured for the {who}{why}"
    if metric.method == "proxy":
        return f"{name} for the {who} comes only from the offline lexical proxy (configure a judge)"
    return None


def decide(
    stage: int,
    checkpoint: Mapping[str, Metric],
    baseline: Mapping[str, Metric] | None,
    settings: GateSettings,
    heldout_loss_ratio: float | None = None,
) -> Decision:
    """heldout_loss_ratio: the checkpoint's held-out loss over the baseline's on the same batches."""
    gate = settings.for_stage(stage)
    failures: list[str] = []
    missing: list[str] = []
    if gate.max_heldout_loss_ratio is not None:
        if heldout_loss_ratio is None:
            missing.append("the held-out loss ratio needs a baseline and a non-empty test split")
        elif heldout_loss_ratio > gate.max_heldout_loss_ratio:
            failures.append(
                f"held-out loss is {heldout_loss_ratio:.3f}x the baseline's "
                f"(at most {gate.max_heldout_loss_ratio:.3f}x allowed)"
            )
    for name, threshold in gate.thresholds.items():
        metric = checkpoint.get(name)
        problem = _usable(metric, name, "checkpoint")
        if problem:
            missing.append(problem)
        elif metric.value < threshold:
            failures.append(f"{name} {metric.value:.3f} is below the stage-{stage} threshold {threshold:.3f}")
    for name in gate.no_regression:
        if baseline is None:
            missing.append(f"{name} cannot be checked for regression: no baseline was evaluated")
            continue
        problems = [
            p
            for p in (
                _usable(checkpoint.get(name), name, "checkpoint"),
                _usable(baseline.get(name), name, "baseline"),
            )
            if p
        ]
        if problems:
            missing.extend(problems)
            continue
        now, before = checkpoint[name].value, baseline[name].value
        if now < before - settings.tolerance:
            failures.append(
                f"{name} regressed from {before:.3f} to {now:.3f} (tolerance {settings.tolerance:.3f})"
            )
    missing = list(dict.fromkeys(missing))
    if failures:
        return Decision(RETRAIN, tuple(failures + missing))
    if missing:
        return Decision(INCOMPLETE, tuple(missing))
    return Decision(PROCEED, (f"every stage-{stage} gate passed",))
