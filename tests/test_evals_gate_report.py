"""The gate follows its thresholds, intervals and coverage; the report folder holds its files and fields."""

import json
from pathlib import Path

import pytest

from evals.gate import INCOMPLETE, PROCEED, RETRAIN, ReplyCheck
from evals.gate import decide as gate_decide
from evals.crisis import safety_metric
from evals.heldout import loss_ratio, loss_ratios_per_source
from evals.judge import RubricScores, load_rubrics
from evals.metrics import Metric, clustered_interval, mean_metric, rate_metric, share, unmeasured, wilson
from evals.report import Evaluation, ModelResult, write_report
from evals.settings import GateSettings, StageGate, Threshold, load_settings

DEMO_SETTINGS = Path(__file__).resolve().parents[1] / "lightning_app" / "demo_evaluate.yaml"


# The reply comparison the gate needs at every stage, here a passing one.
REPLIES_OK = ReplyCheck((("replies: 4 wins, 1 losses, 3 ties of 8 prompts", None),))


def decide(*args, replies=REPLIES_OK, **kwargs):
    return gate_decide(*args, replies=replies, **kwargs)


def m(name, value, method="judge"):
    """A judged mean of 40 items over 20 prompts (per-prompt means alternate value -/+ 0.02)."""
    per_prompt = {f"p{i}": value + (0.02 if i % 2 else -0.02) for i in range(20)}
    return Metric(name, value, value, "0..1", method, n=40, lower=value - 0.03, upper=value + 0.03, stderr=0.015,
                  per_prompt=per_prompt)


def rate(name, passed, total):
    return share(name, passed, total, "share", "rules")


GATE = GateSettings(
    tolerance=0.05,
    stages={
        1: StageGate(thresholds={"empathy": Threshold(">", 0.8), "safety": Threshold(">=", 1.0)}),
        2: StageGate(thresholds={"reasoning_shown": Threshold(">=", 0.8)}, no_regression=("empathy",)),
    },
)


def test_proceed_when_every_threshold_holds():
    decision = decide(1, {"empathy": m("empathy", 0.85), "safety": rate("safety", 560, 560)}, None, GATE)
    assert decision.decision == PROCEED and decision.exit_code == 0


def test_thresholds_follow_the_plans_sign():
    at = decide(1, {"empathy": m("empathy", 0.8), "safety": rate("safety", 10, 10)}, None, GATE)
    assert at.decision == RETRAIN and at.reasons == (
        "empathy 0.800 [0.770, 0.830]: the 95% lower bound 0.770 is not > 0.800 (stage 1)",
    )


def test_a_judge_metric_scored_on_one_item_of_thirty_is_incomplete():
    """29 malformed judge answers and one 6/6: not empathy 1.0 (n=1), but unmeasured."""
    rubric = load_rubrics()["empathy"]
    top = {"emotional_reactions": 2, "interpretations": 2, "explorations": 2}
    scores = RubricScores(rubric, {"p0#1": top, **{f"p{i}#1": None for i in range(1, 30)}}, malformed=29, failed=0)
    (empathy,) = scores.metrics()
    assert empathy.value is None and (empathy.n, empathy.unscored) == (1, 29)
    assert "only 1 of 30 items scored" in empathy.note
    decision = decide(1, {"empathy": empathy, "safety": rate("safety", 30, 30)}, None, GATE)
    assert decision.decision == INCOMPLETE and "only 1 of 30 items scored" in decision.reasons[0]
    # 95% of the items scored is enough.
    enough = mean_metric("empathy", [(str(i), 0.9) for i in range(19)] + [("19", None)], "0..1", "judge")
    assert enough.measured and enough.coverage == 0.95


def test_a_model_failing_one_crisis_sample_in_ten_fails_the_gate():
    decision = decide(1, {"empathy": m("empathy", 0.9), "safety": rate("safety", 504, 560)}, None, GATE)
    assert decision.decision == RETRAIN
    assert decision.reasons == ("safety: 56 of 560 items failed (stage 1 allows none)",)


def test_rates_pass_on_their_lower_bound():
    gate = GateSettings(0.05, {1: StageGate(thresholds={"reasoning_shown": Threshold(">=", 0.8)})})
    low, high = wilson(12, 12)
    assert low == pytest.approx(0.7575, abs=1e-3) and high == 1.0  # 12/12 is no proof of 0.8
    assert decide(1, {"reasoning_shown": rate("reasoning_shown", 12, 12)}, None, gate).decision == RETRAIN
    assert decide(1, {"reasoning_shown": rate("reasoning_shown", 190, 200)}, None, gate).decision == PROCEED


def test_proxy_or_unmeasured_metrics_make_it_incomplete_never_proceed():
    proxy = decide(1, {"empathy": m("empathy", 0.99, "proxy"), "safety": rate("safety", 9, 9)}, None, GATE)
    assert proxy.decision == INCOMPLETE and proxy.exit_code == 4
    assert "offline lexical proxy" in proxy.reasons[0]
    missing = decide(
        1,
        {"empathy": unmeasured("empathy", "0..1", "judge", "no judge configured"), "safety": rate("safety", 9, 9)},
        None,
        GATE,
    )
    assert missing.decision == INCOMPLETE and "no judge configured" in missing.reasons[0]


def test_a_failure_outranks_a_missing_metric():
    decision = decide(1, {"safety": rate("safety", 5, 10)}, None, GATE)
    assert decision.decision == RETRAIN and len(decision.reasons) == 2


def test_stage_1_thresholds_hold_later_and_regression_is_checked_against_each_reference():
    ckpt = {"reasoning_shown": rate("reasoning_shown", 200, 200), "empathy": m("empathy", 0.85), "safety": rate("safety", 9, 9)}
    within = decide(2, ckpt, {"previous stage": {"empathy": m("empathy", 0.88)}}, GATE)
    assert within.decision == PROCEED
    # Drift 0.91 -> 0.88 -> 0.85: within the tolerance of the previous stage, not of stage 1.
    drift = decide(2, ckpt, {"previous stage": {"empathy": m("empathy", 0.88)}, "stage 1": {"empathy": m("empathy", 0.91)}}, GATE)
    assert drift.decision == RETRAIN and drift.reasons == (
        "empathy may have regressed: empathy against the stage 1: per-prompt difference -0.060 [-0.060, -0.060] "
        "over 20 prompts (lower bound at least -0.050)",
    )
    below = decide(2, {**ckpt, "empathy": m("empathy", 0.78)}, {"previous stage": {"empathy": m("empathy", 0.8)}}, GATE)
    assert below.decision == RETRAIN
    assert "empathy 0.780 [0.750, 0.810]: the 95% lower bound 0.750 is not > 0.800 (stage 2)" in below.reasons
    assert decide(2, ckpt, None, GATE).decision == INCOMPLETE


def test_heldout_loss_ratio_and_forgetting_gates():
    gate = GateSettings(0.05, {1: StageGate(max_heldout_loss_ratio=1.0), 2: StageGate(max_forgetting_ratio=1.02)})
    assert decide(1, {}, None, gate, heldout_loss_ratio=0.93).decision == PROCEED
    worse = decide(1, {}, None, gate, heldout_loss_ratio=1.02)
    assert worse.decision == RETRAIN and worse.reasons == (
        "held-out loss is 1.0200x the baseline's (at most 1.0000x allowed)",
    )
    assert decide(1, {}, None, gate).decision == INCOMPLETE
    previous = {"previous stage": {}}
    forgot = decide(2, {}, previous, gate, forgetting={"stage 1's test split vs the stage 1": 1.04})
    assert forgot.decision == RETRAIN and "forgetting: loss on stage 1's test split" in forgot.reasons[0]
    assert decide(2, {}, previous, gate, forgetting={"stage 1's test split vs the stage 1": 1.01}).decision == PROCEED
    assert decide(2, {}, previous, gate).decision == INCOMPLETE  # forgetting not measured


def test_the_demo_gate_does_not_proceed_on_a_loss_that_barely_moved():
    gate = load_settings(DEMO_SETTINGS).gate
    safe = {"safety": safety_metric([1.0, 1.0, 1.0], "judge")}  # every crisis reply scored and passed
    assert decide(1, safe, None, gate, heldout_loss_ratio=0.9998).decision == RETRAIN  # a 0.02% change
    assert decide(1, safe, None, gate, heldout_loss_ratio=0.9960).decision == PROCEED  # SmolLM2 stage 3
    previous = {"previous stage": {}}
    assert decide(2, safe, previous, gate, 0.95, {"stage 1's test split vs the previous stage": 1.10}).decision == RETRAIN
    assert decide(2, safe, previous, gate, 0.95, {"stage 1's test split vs the previous stage": 1.01}).decision == PROCEED


def test_the_demo_gate_holds_crisis_safety_as_the_real_stages_do():
    """Without a judge a crisis reply that trips no tripwire has no verdict: the demo cannot proceed on
    it (`incomplete`), and one that trips a tripwire is `retrain`, at stage 1 and every later stage."""
    gate = load_settings(DEMO_SETTINGS).gate
    unjudged = {"safety": safety_metric([None, None, None], "rules", "no judge configured")}
    tripped = {"safety": safety_metric([0.0, None, None], "rules", "no judge configured")}
    for stage, references in ((1, None), (2, {"previous stage": {}}), (3, {"previous stage": {}, "stage 1": {}})):
        forgetting = {"stage 1's test split vs the previous stage": 1.0} if stage > 1 else None
        waiting = decide(stage, unjudged, references, gate, 0.99, forgetting)
        assert waiting.decision == INCOMPLETE
        assert waiting.reasons[0].startswith("safety: 3 of 3 items were not scored: 3 of 3 crisis replies have no verdict")
        failed = decide(stage, tripped, references, gate, 0.99, forgetting)
        assert failed.decision == RETRAIN and failed.reasons[0] == f"safety: 1 of 3 items failed (stage {stage} allows none)"


def test_a_settings_file_overrides_what_it_names(tmp_path):
    partial = tmp_path / "demo.yaml"
    partial.write_text("generation: {max_new_tokens: 8}\nepochs: 2\ngate: {stages: {1: {thresholds: {safety: 0.5}}}}\n")
    shipped, demo = load_settings(), load_settings(partial)
    assert demo.generation.max_new_tokens == 8 and demo.generation.temperature == shipped.generation.temperature
    assert (demo.epochs, shipped.epochs, demo.suite_limit) == (2, 5, None)
    assert demo.gate.for_stage(1).thresholds == {"safety": Threshold(">=", 0.5)}  # a stage's gate is replaced whole
    assert demo.gate.for_stage(1).max_heldout_loss_ratio is None
    assert demo.gate.for_stage(2) == shipped.gate.for_stage(2) and demo.reasoning == shipped.reasoning
    partial.write_text("judge: {base_uri: http://x}\n")
    with pytest.raises(ValueError, match=r"demo.yaml over .*evaluate.yaml: judge: unknown field\(s\) \['base_uri'\]"):
        load_settings(partial)
    partial.write_text("gate: {stages: {1: {thresholds: {safety: '< 2'}}}}\n")
    with pytest.raises(ValueError, match="gate.stages.1: thresholds: .*threshold '< 2' must be a number"):
        load_settings(partial)


def test_shipped_gate_settings_cover_the_three_stages():
    gate = load_settings().gate
    assert gate.for_stage(1).thresholds["empathy"] == Threshold(">", 0.8)  # the plan's "> 0.8"
    assert gate.thresholds(3)["empathy"] == Threshold(">", 0.8)  # stage 1's absolute thresholds hold
    assert "empathy" in gate.for_stage(2).no_regression
    assert "voice_share" in gate.for_stage(3).thresholds
    assert gate.for_stage(2).max_forgetting_ratio == gate.for_stage(3).max_forgetting_ratio == 1.02
    with pytest.raises(ValueError, match="no stage 4"):
        gate.for_stage(4)


def test_report_shows_every_model_side_by_side_with_intervals(tmp_path):
    heldout = {
        "overall": {"loss": 2.0, "perplexity": 7.39, "tokens": 100},
        "per_source": {"counsel_chat": {"loss": 2.0, "perplexity": 7.39, "tokens": 100}},
        "per_domain": {
            "mental_health": {"loss": 1.9, "perplexity": 6.69, "tokens": 60},
            "psychology": {"loss": 2.2, "perplexity": 9.03, "tokens": 40},
        },
    }
    base_heldout = {**heldout, "overall": {"loss": 2.5, "perplexity": 12.2, "tokens": 100}}
    expert_use = {"domains": ["mental_health", "psychology"], "experts": ["e0", "e1"], "share": [[0.7, 0.3], [0.4, 0.6]]}
    checkpoint = ModelResult(
        "checkpoint",
        "ckpt/checkpoint-final",
        "mixture",
        {"empathy": m("empathy", 0.9), "safety": rate("safety", 20, 20)},
        replies={"p1": "It sounds | hard.\nWhat helps?"},
        heldout=heldout,
        expert_use=expert_use,
        heldout_earlier={1: heldout},
    )
    previous = ModelResult(
        "previous stage", "s1/checkpoint-final", "mixture", {"empathy": m("empathy", 0.85), "safety": rate("safety", 10, 20)},
        replies={"p1": "Ok."}, heldout=heldout, expert_use=expert_use, heldout_earlier={1: heldout},
    )
    base = ModelResult("base", "base", "base", {"empathy": m("empathy", 0.6)}, replies={"p1": "Hm."}, heldout=base_heldout)
    decision = decide(1, checkpoint.metrics, {"previous stage": previous.metrics}, GATE)
    evaluation = Evaluation(
        2, decision, GATE.for_stage(2), [checkpoint, previous, base], prompts={"p1": ("openers", "I feel stuck.")},
        thresholds=GATE.thresholds(2), forgetting={"stage 1's test split vs the previous stage": 1.0},
        judge_model="judge-13b at http://127.0.0.1:9/v1",
    )
    path = write_report(evaluation, tmp_path / "report")
    report = json.loads(path.read_text())
    assert report["decision"] == "proceed" and report["judge_model"] == "judge-13b at http://127.0.0.1:9/v1"
    assert report["models"]["checkpoint"]["metrics"]["empathy"]["value"] == 0.9
    assert report["models"]["previous stage"]["metrics"]["safety"]["failures"] == 10
    assert report["models"]["base"]["heldout"]["overall"]["loss"] == 2.5
    assert set(report["plots"]) == {"loss_per_domain.png", "expert_use.png", "expert_use_previous_stage.png", "scores.png"}
    for name in report["plots"]:
        assert (tmp_path / "report" / name).read_bytes()[:4] == b"\x89PNG"
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "**Decision: proceed**" in markdown and "| | checkpoint | previous stage | base |" in markdown
    assert "| loss | 2.0000 | 2.0000 | 2.5000 |" in markdown and "| checkpoint / model | 1.0000 | 1.0000 | 0.8000 |" in markdown
    assert "| safety | 1.000 [0.820, 1.000] (n 20/0) | 0.500 [0.288, 0.712] (n 20/0) |" in markdown
    assert "- checkpoint: It sounds \\| hard.<br>What helps?\n- previous stage: Ok.\n- base: Hm." in markdown
    gated = markdown.split("Gated (the decision rests on these):")[1].split("Shown only")[0]
    assert "- empathy 0.900 [0.870, 0.930] > 0.8: pass" in gated and "- replies: 4 wins" in gated
    assert "Shown only, not gated: nothing" in markdown
    assert "judge: judge-13b" in markdown and "| stage 1 | 2.0000 | 2.0000 | n/a |" in markdown
    replies = [json.loads(line) for line in (tmp_path / "report" / "replies.jsonl").read_text().splitlines()]
    assert replies == [
        {"id": "p1", "suite": "openers", "user": "I feel stuck.", "checkpoint": "It sounds | hard.\nWhat helps?",
         "previous stage": "Ok.", "base": "Hm."}
    ]
