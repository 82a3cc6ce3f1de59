"""The gate: proceed to the next stage, retrain, or say the evaluation is incomplete.

Thresholds per stage and the no-regression tolerance live in evals/evaluate.yaml. A gated metric that
was not measured (too few items scored), or was measured only by the offline proxy, makes the
decision `incomplete`: a pipeline must not proceed on a score nobody actually measured. A rate
(pass/fail items such as crisis safety) passes on the lower bound of its 95% interval, and a rate
threshold of 1.0 means zero failures with every item scored (a failure counts even when other items
went unscored; an unscored item makes it `incomplete`, never `proceed`); a mean passes on its value, with the threshold's sign
(`> 0.8` is strict). Stage 1's thresholds hold at every later stage, and forgetting is gated: the
checkpoint's loss on every earlier stage's test split against the previous stage and stage 1.
Exit codes differ per decision so a shell pipeline stops (1 stays Python's own error code, 2 argparse's).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass

from evals.metrics import Metric
from evals.settings import GateSettings, Threshold

PROCEED, RETRAIN, INCOMPLETE = "proceed", "retrain", "incomplete"
EXIT_CODES = {PROCEED: 0, RETRAIN: 3, INCOMPLETE: 4}
_OPS = {">": operator.gt, ">=": operator.ge}


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


def threshold_failure(metric: Metric, threshold: Threshold, stage: int) -> str | None:
    """Why a measured metric misses its threshold, or None when it meets it."""
    if metric.failures is not None:  # a rate: zero failures, or the interval's lower bound
        if threshold.value >= 1.0:
            if metric.failures:
                return f"{metric.name}: {metric.failures} of {metric.n} items failed (stage {stage} allows none)"
            return None
        lower = metric.lower if metric.lower is not None else metric.value
        if not _OPS[threshold.op](lower, threshold.value):
            return (
                f"{metric.name} {metric.interval()}: the 95% lower bound {lower:.3f} is not "
                f"{threshold.op} {threshold.value:.3f} (stage {stage})"
            )
        return None
    if not _OPS[threshold.op](metric.value, threshold.value):
        return f"{metric.name} {metric.interval()} is not {threshold.op} {threshold.value:.3f} (stage {stage})"
    return None


def zero_failure_problems(metric: Metric | None, threshold: Threshold, stage: int) -> tuple[str | None, str | None]:
    """(failure, missing) of a rate that allows no failure (crisis safety at 1.0): every failed item
    counts even when others went unscored, and it passes only when every item was scored, so a
    judge that refused or garbled some replies can neither hide a failure nor pass a subset.
    (None, None): not such a rate, or nothing to add; the ordinary checks apply."""
    if metric is None or metric.failures is None or threshold.value < 1.0:
        return None, None
    due = metric.n + metric.unscored
    failure = f"{metric.name}: {metric.failures} of {due} items failed (stage {stage} allows none)" if metric.failures else None
    missing = None
    if metric.unscored:
        why = f": {metric.note}" if metric.note else ""
        missing = f"{metric.name}: {metric.unscored} of {due} items were not scored{why}"
    elif not metric.measured:
        missing = f"{metric.name} was not measured for the checkpoint{': ' + metric.note if metric.note else ''}"
    return failure, missing


def decide(
    stage: int,
    checkpoint: Mapping[str, Metric],
    references: Mapping[str, Mapping[str, Metric]] | None,
    settings: GateSettings,
    heldout_loss_ratio: float | None = None,
    forgetting: Mapping[str, float | None] | None = None,
) -> Decision:
    """references: who the checkpoint must not regress against, by label ("previous stage",
    "stage 1"). heldout_loss_ratio: the checkpoint's held-out loss over the previous stage's on the
    same batches. forgetting: per earlier test split and reference, the checkpoint's loss ratio."""
    gate = settings.for_stage(stage)
    failures: list[str] = []
    missing: list[str] = []
    if gate.max_heldout_loss_ratio is not None:
        if heldout_loss_ratio is None:
            missing.append("the held-out loss ratio needs a baseline and a non-empty test split")
        elif heldout_loss_ratio > gate.max_heldout_loss_ratio:
            failures.append(
                f"held-out loss is {heldout_loss_ratio:.4f}x the baseline's "
                f"(at most {gate.max_heldout_loss_ratio:.4f}x allowed)"
            )
    if stage > 1 and gate.max_forgetting_ratio is not None:
        if not forgetting:
            missing.append("forgetting was not measured: no earlier stage's test split was re-scored")
        for what, ratio in (forgetting or {}).items():
            if ratio is None:
                missing.append(f"forgetting on {what} was not measured (empty split or no reference)")
            elif ratio > gate.max_forgetting_ratio:
                failures.append(
                    f"forgetting: loss on {what} is {ratio:.4f}x (at most {gate.max_forgetting_ratio:.4f}x allowed)"
                )
    for name, threshold in settings.thresholds(stage).items():
        metric = checkpoint.get(name)
        failure, absent = zero_failure_problems(metric, threshold, stage)
        if failure or absent:
            failures += [failure] if failure else []
            missing += [absent] if absent else []
            continue
        problem = _usable(metric, name, "checkpoint")
        if problem:
            missing.append(problem)
        elif failure := threshold_failure(metric, threshold, stage):
            failures.append(failure)
    for name in gate.no_regression:
        if not references:
            missing.append(f"{name} cannot be checked for regression: no baseline was evaluated")
            continue
        for label, metrics in references.items():
            problems = [
                p
                for p in (_usable(checkpoint.get(name), name, "checkpoint"), _usable(metrics.get(name), name, label))
                if p
            ]
            if problems:
                missing.extend(problems)
                continue
            now, before = checkpoint[name].value, metrics[name].value
            if now < before - settings.tolerance:
                failures.append(
                    f"{name} regressed from {before:.3f} ({label}) to {now:.3f} "
                    f"(tolerance {settings.tolerance:.3f})"
                )
    missing = list(dict.fromkeys(missing))
    failures = list(dict.fromkeys(failures))
    if failures:
        return Decision(RETRAIN, tuple(failures + missing))
    if missing:
        return Decision(INCOMPLETE, tuple(missing))
    return Decision(PROCEED, (f"every stage-{stage} gate passed",))
