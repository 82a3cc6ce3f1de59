"""Statistics that hold: intervals clustered by prompt with t quantiles and never zero-width, means
gated on their lower bound, paired no-regression, per-source forgetting, missing references."""

import pytest

from evals.gate import INCOMPLETE, PROCEED, RETRAIN, ReplyCheck, decide
from evals.heldout import loss_ratio, loss_ratios_per_source
from evals.metrics import Metric, clustered_interval, mean_metric, rate_metric, t_quantile, wilson
from evals.settings import GateSettings, StageGate, Threshold

REPLIES_OK = ReplyCheck((("replies: 4 wins, 1 losses, 3 ties of 8 prompts", None),))


def test_38_of_40_passes_over_8_prompts_do_not_prove_a_0_8_rate():
    """Both failures in one prompt: 7 of 8 prompts pass. Counted as 40 independent items the Wilson
    bound would clear 0.8; clustered by prompt, with t on 7 degrees of freedom, it does not."""
    items = [(f"p{i}", True) for i in range(7) for _ in range(5)] + [("p7", v) for v in (True, True, True, False, False)]
    metric = rate_metric("reasoning_shown", items, "share", "rules")
    assert metric.value == pytest.approx(0.95) and (metric.n, metric.failures) == (40, 2)
    assert wilson(38, 40)[0] > 0.8  # the independent-items bound that used to pass
    assert metric.lower < 0.8
    gate = GateSettings(0.05, {1: StageGate(thresholds={"reasoning_shown": Threshold(">=", 0.8)})})
    decision = decide(1, {"reasoning_shown": metric}, None, gate, replies=REPLIES_OK)
    assert decision.decision == RETRAIN and "the 95% lower bound" in decision.reasons[0]
    # The same share spread over 40 prompts is evidence enough.
    spread = rate_metric("reasoning_shown", [(f"p{i}", i >= 2) for i in range(40)], "share", "rules")
    assert spread.lower > metric.lower


def test_a_mean_is_gated_on_its_lower_bound_not_its_point():
    """0.820 with a wide interval does not pass "> 0.8"."""
    values = [(f"p{i}", v) for i, v in enumerate([0.95, 0.7, 0.9, 0.72, 0.85, 0.8])]
    metric = mean_metric("empathy", values, "0..1", "judge")
    assert metric.value == pytest.approx(0.82, abs=1e-9) and metric.lower < 0.8 < metric.value
    gate = GateSettings(0.05, {1: StageGate(thresholds={"empathy": Threshold(">", 0.8)})})
    assert decide(1, {"empathy": metric}, None, gate, replies=REPLIES_OK).decision == RETRAIN


def test_few_prompts_get_a_t_quantile_and_agreement_is_never_certainty():
    assert t_quantile(5) == pytest.approx(2.776, abs=1e-3) and t_quantile(200) < 1.98
    assert t_quantile(1) == float("inf")
    everyone = clustered_interval([(f"p{i}", 1.0) for i in range(5) for _ in range(5)])
    assert everyone.mean == 1.0 and everyone.upper == 1.0 and everyone.lower < 0.7  # 5 prompts, not 25 items
    assert everyone.clusters == 5
    # Monotone: one failure more never raises the lower bound.
    almost = clustered_interval([(f"p{i}", 1.0 if i or j else 0.0) for i in range(5) for j in range(5)])
    assert almost.lower < everyone.lower
    many = clustered_interval([(f"p{i}", 1.0) for i in range(100)])
    assert 0.9 < many.lower < 1.0
    assert clustered_interval([(f"p{i}", 1.0) for i in range(100) for _ in range(5)]).lower == many.lower
    one_prompt = clustered_interval([("p0", 1.0)] * 5)
    assert (one_prompt.lower, one_prompt.upper) == (0.0, 1.0)  # one prompt says nothing about others
    graded = mean_metric("fact_recall", [(f"p{i}", 0.75) for i in range(6)], "0..1", "rules")
    assert graded.lower < 0.75 < graded.upper  # all items agree: still an interval, not a point


def _per_prompt(name, values):
    return Metric(name, sum(values) / len(values), None, "0..1", "judge", n=len(values), lower=0.0, upper=1.0,
                  per_prompt={f"p{i}": v for i, v in enumerate(values)})


def test_no_regression_pairs_the_prompts():
    """The same drop on every prompt is a clear regression; a mean drop from one outlier prompt is not
    clear, and wide per-prompt noise around no change is not proof of no regression either."""
    gate = GateSettings(0.05, {1: StageGate(), 2: StageGate(no_regression=("empathy",))})
    before = _per_prompt("empathy", [0.9, 0.5, 0.8, 0.6, 0.7, 0.85, 0.75, 0.65])
    same_drop = _per_prompt("empathy", [v - 0.08 for v in before.per_prompt.values()])
    refs = {"previous stage": {"empathy": before}}
    result = decide(2, {"empathy": same_drop}, refs, gate, replies=REPLIES_OK)
    assert result.decision == RETRAIN and "per-prompt difference -0.080 [-0.080, -0.080] over 8 prompts" in result.reasons[0]
    steady = _per_prompt("empathy", [v + 0.01 for v in before.per_prompt.values()])
    assert decide(2, {"empathy": steady}, refs, gate, replies=REPLIES_OK).decision == PROCEED
    noisy = _per_prompt("empathy", [v + d for v, d in zip(before.per_prompt.values(), [0.3, -0.3] * 4)])
    assert decide(2, {"empathy": noisy}, refs, gate, replies=REPLIES_OK).decision == RETRAIN
    unpaired = Metric("empathy", 0.9, 0.9, "0..1", "judge", n=8, lower=0.85, upper=0.95)
    assert decide(2, {"empathy": unpaired}, refs, gate, replies=REPLIES_OK).decision == INCOMPLETE


def _figures(per_source):
    tokens = sum(t for _, t in per_source.values())
    pooled = sum(loss * t for loss, t in per_source.values()) / tokens
    return {
        "overall": {"loss": pooled, "tokens": tokens},
        "per_source": {name: {"loss": loss, "tokens": t} for name, (loss, t) in per_source.items()},
    }


def test_forgetting_is_gated_on_the_worst_source_not_the_pool():
    before = _figures({"counsel_chat": (2.0, 1900), "psych8k": (2.0, 100)})
    after = _figures({"counsel_chat": (2.0, 1900), "psych8k": (2.5, 100)})  # one source 25% worse
    gate = GateSettings(0.05, {1: StageGate(), 2: StageGate(max_forgetting_ratio=1.02)})
    pooled = loss_ratio(after, before)
    assert pooled <= 1.02  # the pooled ratio would pass
    per_source = loss_ratios_per_source(after, before)
    assert per_source == {"counsel_chat": 1.0, "psych8k": 1.25}
    forgetting = {f"stage 1's test split, source {k}, vs the previous stage": v for k, v in per_source.items()}
    decision = decide(2, {}, {"previous stage": {}}, gate, forgetting=forgetting, replies=REPLIES_OK)
    assert decision.decision == RETRAIN
    assert decision.reasons == (
        "forgetting: loss on stage 1's test split, source psych8k, vs the previous stage is 1.2500x (at most 1.0200x allowed)",
    )


def test_a_missing_earlier_stage_is_incomplete_not_a_note():
    gate = GateSettings(0.05, {1: StageGate(), 2: StageGate(), 3: StageGate()})
    stage3 = decide(3, {}, {"previous stage": {}}, gate, replies=REPLIES_OK)
    assert stage3.decision == INCOMPLETE
    assert stage3.reasons == ("the stage 1 was not evaluated: stage 3 is judged against it (pass --baseline and --first-stage)",)
    assert decide(3, {}, {"previous stage": {}, "stage 1": {}}, gate, replies=REPLIES_OK).decision == PROCEED
    assert decide(2, {}, {"base": {}}, gate, replies=REPLIES_OK).decision == INCOMPLETE  # base is no stage 1
    not_compared = ReplyCheck(missing="the replies were not compared")
    assert decide(1, {}, None, gate, replies=not_compared).decision == INCOMPLETE
