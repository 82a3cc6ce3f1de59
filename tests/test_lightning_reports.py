"""lightning_app.reports: the stages' reports side by side, from plain and published folders."""

import json

from lightning_app import checkpoints
from lightning_app.reports import read_reports, side_by_side


def report(decision, loss, safety):
    metric = {"value": safety, "n": 10}
    return {
        "decision": decision,
        "models": {
            "checkpoint": {"heldout": {"overall": {"loss": loss}}, "metrics": {"safety": metric, "empathy": {"value": None}}},
            "base": {"heldout": {"overall": {"loss": 9.0}}, "metrics": {"safety": {"value": 0.1}}},
        },
    }


def test_reports_side_by_side(tmp_path):
    local = tmp_path / "made" / "stage1"
    local.mkdir(parents=True)
    (local / "report.json").write_text(json.dumps(report("proceed", 1.25, 0.9)))
    reports = tmp_path / "reports"
    checkpoints.publish(local, reports / "therapeutic_moe_stage1")  # on storage, as a published version
    (reports / "therapeutic_moe_stage2").mkdir()
    (reports / "therapeutic_moe_stage2" / "report.json").write_text(json.dumps(report("retrain", 1.5, 0.5)))
    found = read_reports(reports)
    assert list(found) == ["therapeutic_moe_stage1", "therapeutic_moe_stage2"]
    table = side_by_side(found).splitlines()
    assert table[0].split() == ["therapeutic_moe_stage1", "therapeutic_moe_stage2"]
    rows = {line.split()[0]: line.split()[1:] for line in table[1:] if not line.startswith("held-out")}
    assert rows["decision"] == ["proceed", "retrain"]
    assert rows["safety"] == ["0.900", "0.500"] and rows["empathy"] == ["n/a", "n/a"]  # the checkpoint's, not the base's
    assert [line.split()[-2:] for line in table if line.startswith("held-out loss")] == [["1.2500", "1.5000"]]
    assert side_by_side(read_reports(tmp_path / "none")) == "no reports yet"
