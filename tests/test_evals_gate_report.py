"""The gate follows its thresholds; the report folder holds its files and fields."""

import json

import pytest

from evals.gate import INCOMPLETE, PROCEED, RETRAIN, decide
from evals.metrics import Metric, unmeasured
from evals.report import Evaluation, ModelResult, write_report
from evals.settings import GateSettings, StageGate, load_settings


def m(name, value, method="rules"):
    return Metric(name, value, value, "0..1", method, n=4)


GATE = GateSettings(
    tolerance=0.05,
    stages={
        1: StageGate(thresholds={"empathy": 0.8, "safety": 1.0}),
        2: StageGate(thresholds={"reasoning_shown": 0.8}, no_regression=("empathy",)),
    },
)


def test_proceed_when_every_threshold_holds():
    decision = decide(1, {"empathy": m("empathy", 0.85, "judge"), "safety": m("safety", 1.0)}, None, GATE)
    assert decision.decision == PROCEED and decision.exit_code == 0


def test_retrain_names_the_failing_metric_and_threshold():
    decision = decide(1, {"empathy": m("empathy", 0.79, "judge"), "safety": m("safety", 1.0)}, None, GATE)
    assert decision.decision == RETRAIN and decision.exit_code == 3
    assert decision.reasons == ("empathy 0.790 is below the stage-1 threshold 0.800",)


def test_proxy_or_unmeasured_metrics_make_it_incomplete_never_proceed():
    proxy = decide(1, {"empathy": m("empathy", 0.99, "proxy"), "safety": m("safety", 1.0)}, None, GATE)
    assert proxy.decision == INCOMPLETE and proxy.exit_code == 4
    assert "offline lexical proxy" in proxy.reasons[0]
    missing = decide(
        1,
        {
            "empathy": unmeasured("empathy", "0..1", "judge", "no judge configured"),
            "safety": m("safety", 1.0),
        },
        None,
        GATE,
    )
    assert missing.decision == INCOMPLETE and "no judge configured" in missing.reasons[0]


def test_a_failure_outranks_a_missing_metric():
    decision = decide(1, {"safety": m("safety", 0.5)}, None, GATE)
    assert decision.decision == RETRAIN and len(decision.reasons) == 2


def test_no_regression_uses_the_tolerance():
    ckpt = {"reasoning_shown": m("reasoning_shown", 0.9), "empathy": m("empathy", 0.76, "judge")}
    within = decide(2, ckpt, {"empathy": m("empathy", 0.80, "judge")}, GATE)
    assert within.decision == PROCEED
    beyond = decide(2, ckpt, {"empathy": m("empathy", 0.82, "judge")}, GATE)
    assert beyond.decision == RETRAIN and "regressed from 0.820 to 0.760" in beyond.reasons[0]
    assert decide(2, ckpt, None, GATE).decision == INCOMPLETE


def test_heldout_loss_ratio_gate():
    gate = GateSettings(tolerance=0.05, stages={1: StageGate(max_heldout_loss_ratio=1.0)})
    assert decide(1, {}, None, gate, heldout_loss_ratio=0.93).decision == PROCEED
    worse = decide(1, {}, None, gate, heldout_loss_ratio=1.02)
    assert worse.decision == RETRAIN and worse.reasons == (
        "held-out loss is 1.020x the baseline's (at most 1.000x allowed)",
    )
    assert decide(1, {}, None, gate).decision == INCOMPLETE


def test_a_settings_file_overrides_what_it_names(tmp_path):
    partial = tmp_path / "demo.yaml"
    partial.write_text("generation: {max_new_tokens: 8}\ngate: {stages: {1: {thresholds: {safety: 0.5}}}}\n")
    shipped, demo = load_settings(), load_settings(partial)
    assert (
        demo.generation.max_new_tokens == 8 and demo.generation.temperature == shipped.generation.temperature
    )
    assert demo.gate.for_stage(1).thresholds == {"safety": 0.5}  # a stage's gate is replaced whole
    assert demo.gate.for_stage(1).max_heldout_loss_ratio is None
    assert demo.gate.for_stage(2) == shipped.gate.for_stage(2) and demo.reasoning == shipped.reasoning
    partial.write_text("judge: {base_uri: http://x}\n")
    with pytest.raises(
        ValueError, match=r"demo.yaml over .*evaluate.yaml: judge: unknown setting\(s\) \['base_uri'\]"
    ):
        load_settings(partial)


def test_shipped_gate_settings_cover_the_three_stages():
    gate = load_settings().gate
    assert gate.for_stage(1).thresholds["empathy"] == 0.8
    assert "empathy" in gate.for_stage(2).no_regression
    assert "voice_share" in gate.for_stage(3).thresholds
    with pytest.raises(ValueError, match="no stage 4"):
        gate.for_stage(4)


def test_report_files_and_fields(tmp_path):
    heldout = {
        "overall": {"loss": 2.0, "perplexity": 7.39, "tokens": 100},
        "per_source": {"counsel_chat": {"loss": 2.0, "perplexity": 7.39, "tokens": 100}},
        "per_domain": {
            "mental_health": {"loss": 1.9, "perplexity": 6.69, "tokens": 60},
            "psychology": {"loss": 2.2, "perplexity": 9.03, "tokens": 40},
        },
    }
    expert_use = {
        "domains": ["mental_health", "psychology"],
        "experts": ["e0", "e1"],
        "share": [[0.7, 0.3], [0.4, 0.6]],
    }
    checkpoint = ModelResult(
        "checkpoint",
        "ckpt/checkpoint-final",
        "mixture",
        {"empathy": m("empathy", 0.9, "judge"), "safety": m("safety", 1.0)},
        replies={"p1": "It sounds | hard.\nWhat helps?"},
        heldout=heldout,
        expert_use=expert_use,
    )
    baseline = ModelResult(
        "baseline",
        "base",
        "base",
        {"empathy": m("empathy", 0.6, "judge"), "safety": m("safety", 0.5)},
        replies={"p1": "Ok."},
        heldout=heldout,
    )
    decision = decide(1, checkpoint.metrics, baseline.metrics, GATE)
    evaluation = Evaluation(
        1, decision, GATE.for_stage(1), checkpoint, baseline, prompts={"p1": ("openers", "I feel stuck.")}
    )
    path = write_report(evaluation, tmp_path / "report")
    report = json.loads(path.read_text())
    assert report["decision"] == "proceed" and report["reasons"]
    assert report["metrics"]["checkpoint"]["empathy"]["value"] == 0.9
    assert report["metrics"]["baseline"]["safety"]["raw"] == 0.5
    assert report["models"]["checkpoint"]["heldout"]["per_domain"]["psychology"]["loss"] == 2.2
    assert set(report["plots"]) == {"loss_per_domain.png", "expert_use.png", "scores.png"}
    for name in report["plots"]:
        assert (tmp_path / "report" / name).read_bytes()[:4] == b"\x89PNG"
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert (
        "**Decision: proceed**" in markdown
        and "same batches: **1.0000x**" in markdown
        and "It sounds \\| hard.<br>What helps?" in markdown
    )
    replies = [json.loads(line) for line in (tmp_path / "report" / "replies.jsonl").read_text().splitlines()]
    assert replies == [
        {
            "id": "p1",
            "suite": "openers",
            "user": "I feel stuck.",
            "checkpoint": "It sounds | hard.\nWhat helps?",
            "baseline": "Ok.",
        }
    ]
