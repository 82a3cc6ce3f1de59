"""The gate: proceed to the next stage, retrain, or say the evaluation is incomplete.

Thresholds per stage and the no-regression tolerance live in evals/evaluate.yaml. A gated metric that
was not measured (too few items scored), or was measured only by the offline proxy, makes the
decision `incomplete`: a pipeline must not proceed on a score nobody actually measured. Rates and
means alike pass on the lower bound of their 95% interval (clustered by prompt, evals.metrics), and
a rate threshold of 1.0 means zero failures with every item scored (a failure counts even when other
items went unscored; an unscored item makes it `incomplete`, never `proceed`); the threshold's sign
holds (`> 0.8` is strict).
No-regression pairs the two models prompt by prompt. Stage 1's thresholds hold at every later stage;
a later stage without its previous stage (and, at stage 3, stage 1) measured is incomplete.
Forgetting is gated per source of every earlier test split. The replies are compared prompt by
prompt with the previous stage's (the base model's at stage 1) at every stage (evals.compare):
replies that clearly lose, are less relevant to the prompts beyond the tolerance, or collapse
onto stock replies do not proceed whatever the loss did; a stage whose gate sets
`replies_must_improve` must also show them better (a stage that only keeps them as they were, with
a lower loss, has not made the model better).
Exit codes differ per decision so a shell pipeline stops (1 stays Python's own error code, 2 argparse's).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass

from evals.metrics import Metric, paired_difference
from evals.settings import GateSettings, Threshold

PROCEED, RETRAIN, INCOMPLETE = "proceed", "retrain", "incomplete"
EXIT_CODES = {PROCEED: 0, RETRAIN: 3, INCOMPLETE: 4}
_OPS = {">": operator.gt, ">=": operator.ge}
# The references each stage must have measured: who it must not regress against.
REQUIRED_REFERENCES = {2: ("previous stage",), 3: ("previous stage", "stage 1")}


@dataclass(frozen=True)
class Decision:
    decision: str
    reasons: tuple[str, ...]
    # Every check the gate made, with its numbers and its outcome (what the decision rests on).
    checks: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]


@dataclass(frozen=True)
class ReplyCheck:
    """The reply comparison against the previous stage (the base model at stage 1), evals.compare:
    each check as (what was measured, why it fails or None)."""

    checks: tuple[tuple[str, str | None], ...] = ()
    missing: str | None = None  # why the comparison could not be made (then the gate is incomplete)

    @property
    def failures(self) -> list[str]:
        return [failure for _, failure in self.checks if failure]


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
    if metric.failures is not None and threshold.value >= 1.0:
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


def regression(name: str, label: str, now: Metric, before: Metric, tolerance: float) -> tuple[str | None, str | None]:
    """(failure, check line): a regression unless the paired difference's lower bound is within the tolerance."""
    diff = paired_difference(now.per_prompt or {}, before.per_prompt or {})
    if diff is None:
        return None, None
    line = f"{name} against the {label}: per-prompt difference {diff} (lower bound at least -{tolerance:.3f})"
    return (f"{name} may have regressed: {line}" if diff.lower < -tolerance else None), line
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
    replies: ReplyCheck | None = None,
) -> Decision:
    """references: who the checkpoint must not regress against, by label ("previous stage",
    "stage 1"). heldout_loss_ratio: the checkpoint's held-out loss over the previous stage's on the
    same batches. forgetting: per earlier test split, source and reference, the checkpoint's loss
    ratio. replies: the reply comparison against the previous stage (stages.evaluate always passes one;
    its `missing` says why it could not be made, which makes the decision incomplete)."""
    gate = settings.for_stage(stage)
    failures: list[str] = []
    missing: list[str] = []
    checks: list[str] = []

    def check(line: str, failure: str | None) -> None:
        checks.append(f"{line}: {'FAIL' if failure else 'pass'}")
        if failure:
            failures.append(failure)

    for label in REQUIRED_REFERENCES.get(stage, ()):
        if label not in (references or {}):
            missing.append(
                f"the {label} was not evaluated: stage {stage} is judged against it (pass --baseline"
                f"{' and --first-stage' if label == 'stage 1' else ''})"
            )
    if replies is not None and replies.missing:
        missing.append(replies.missing)
    elif replies is not None:
        for line, failure in replies.checks:
            check(line, failure)
    if gate.max_heldout_loss_ratio is not None:
        if heldout_loss_ratio is None:
            missing.append("the held-out loss ratio needs a baseline and a non-empty test split")
        else:
            line = f"held-out loss {heldout_loss_ratio:.4f}x the baseline's (at most {gate.max_heldout_loss_ratio:.4f}x)"
            check(line, f"held-out loss is {heldout_loss_ratio:.4f}x the baseline's "
                        f"(at most {gate.max_heldout_loss_ratio:.4f}x allowed)"
                  if heldout_loss_ratio > gate.max_heldout_loss_ratio else None)
    if stage > 1 and gate.max_forgetting_ratio is not None:
        if not forgetting:
            missing.append("forgetting was not measured: no earlier stage's test split was re-scored")
        for what, ratio in (forgetting or {}).items():
            if ratio is None:
                missing.append(f"forgetting on {what} was not measured (empty split or no reference)")
                continue
            check(f"forgetting on {what}: {ratio:.4f}x (at most {gate.max_forgetting_ratio:.4f}x)",
                  f"forgetting: loss on {what} is {ratio:.4f}x (at most {gate.max_forgetting_ratio:.4f}x allowed)"
                  if ratio > gate.max_forgetting_ratio else None)
    for name, threshold in settings.thresholds(stage).items():
        metric = checkpoint.get(name)
        failure, absent = zero_failure_problems(metric, threshold, stage)
        if failure or absent:
            if failure:
                check(f"{name}: zero failures required", failure)
            missing += [absent] if absent else []
            continue
        problem = _usable(metric, name, "checkpoint")
        if problem:
            missing.append(problem)
        else:
            check(f"{name} {metric.interval()} {threshold}", threshold_failure(metric, threshold, stage))
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
            failure, line = regression(name, label, checkpoint[name], metrics[name], settings.tolerance)
            if line is None:
                missing.append(f"{name} cannot be paired prompt by prompt with the {label} (fewer than 2 prompts in common)")
            else:
                check(line, failure)
    missing = list(dict.fromkeys(missing))
    failures = list(dict.fromkeys(failures))
    if failures:
        return Decision(RETRAIN, tuple(failures + missing), tuple(checks))
    if missing:
        return Decision(INCOMPLETE, tuple(missing), tuple(checks))
    return Decision(PROCEED, (f"every stage-{stage} gate passed",), tuple(checks))
