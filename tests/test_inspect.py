import json
from pathlib import Path

import pytest
import yaml

from stages import inspect

SAMPLES = Path(__file__).parents[1] / "datamodules" / "samples"
STAGE1 = {
    "seed_everything": 42,
    "trainer": {"max_epochs": 3, "max_time": "00:00:00:02", "accumulate_grad_batches": 1, "devices": 1},
    "model": {
        "base_model": "LatitudeGames/Wayfarer-2-12B",
        "throughput_tokens_per_s": 6000,
        "moe": {
            "num_experts": 4,
            "expert_domains": ["psychology", "mental_health", "bias_detection", "general_therapeutic"],
        },
    },
    "data": {
        "stage": 1,
        "data_root": str(SAMPLES),
        "max_seq_length": 256,
        "micro_batch_size": 1,
        "val_fraction": 0.1,
        "test_fraction": 0.1,
    },
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inspect")
    config = tmp / "stage1.yaml"
    config.write_text(yaml.safe_dump(STAGE1))
    args = [
        "--config",
        str(config),
        "--model.base_model",
        "tiny",
        f"--data.cache_dir={tmp / 'cache'}",
        "--tokens-per-second",
        "1000",
        "--json",
        "--previews",
        "1",
    ]
    return args, tmp


def run(capsys, args):
    inspect.main(args)
    return json.loads(capsys.readouterr().out)


def test_json_figures_on_the_samples(report, capsys):
    args, _ = report
    out = run(capsys, args)
    assert out["base_model"] == "tiny" and out["stage"] == 1
    sources = out["sources"]
    assert set(sources) >= {
        "amod_counseling",
        "counsel_chat",
        "psydt_corpus",
        "psych8k",
        "priority_1",
        "llama3_counseling",
    }
    for name, s in sources.items():
        assert s["read"] >= s["kept"] > 0, name
        assert s["tokens"] > 0, name
        assert set(s) >= {"read", "kept", "skipped", "tokens"}
    # Quirks the samples carry, counted by reason.
    assert sources["priority_1"]["skipped"] == {"quality_score below 0.75": 1}
    assert sources["psych8k"]["skipped"] == {"empty reply": 1}
    assert any(
        reason.startswith("exact duplicate of amod_counseling")
        for reason in sources["llama3_counseling"]["skipped"]
    )
    assert sum(s["tokens"] for s in sources.values()) == sum(s["tokens"] for s in out["splits"].values())
    assert sum(s["share"] for s in sources.values()) == pytest.approx(1.0)
    assert 0 < out["packing_efficiency"] <= 1
    warnings = "\n".join(out["warnings"])
    assert "'psydt_corpus' is in language 'zh'" in warnings and "enabled: false" in warnings
    assert "'psych8k' has a non-commercial licence" in warnings
    assert "expert domain 'bias_detection' gets no training tokens" in warnings
    # 2 s at 1000 tokens/s is 7 steps of 256 tokens; 3 epochs need more.
    assert out["steps_in_time_cap"] == 7
    assert out["steps_per_epoch"] == out["splits"]["train"]["rows"]
    assert "the plan's 3 epochs" in warnings and "only 7 steps" in warnings
    assert out["hours_per_epoch"] == pytest.approx(out["steps_per_epoch"] * 256 / 1000 / 3600)
    [preview] = out["previews"]
    assert inspect.LOSS_OPEN in preview["text"] and preview["text"].endswith(
        "<|im_end|>" + inspect.LOSS_CLOSE + "\n"
    )


def test_data_section_is_validated_like_lightningcli(tmp_path):
    bad = dict(STAGE1, data={**STAGE1["data"], "max_seq_lenght": 256})
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(bad))
    with pytest.raises(SystemExit, match="^error: .*max_seq_lenght"):
        inspect.main(["--config", str(config), "--model.base_model", "tiny"])


def test_missing_data_root_stops_with_the_source_and_path(report, tmp_path):
    args, _ = report
    with pytest.raises(SystemExit, match=r"error: source 'amod_counseling': .*nowhere.* does not exist"):
        inspect.main([*args, f"--data.data_root={tmp_path / 'nowhere'}"])


def test_human_report_renders(report, capsys):
    args, _ = report
    inspect.main([a for a in args if a != "--json"])
    text = capsys.readouterr().out
    assert (
        "amod_counseling" in text
        and "packing on: efficiency" in text
        and "WARNING: the plan's 3 epochs" in text
    )


def test_json_holds_no_conversation_text_unless_previews_are_asked_for(report, capsys):
    args, _ = report
    out = run(capsys, [a for a in args if a not in ("--previews", "1")])
    assert "previews" not in out


def test_the_step_plan_for_one_gpu_is_shown(report, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("THERAPEUTIC_MOE_CACHE", str(tmp_path))
    args, _ = report
    plan = run(capsys, [*args, "--gpu", "A100"])["plan"]
    assert plan["gpu"] == "A100" and plan["checkpointing"] == "none" and plan["micro_batch"] == 1
    assert 0 < plan["peak_gib"] < plan["budget_gib"] == pytest.approx(0.85 * 79.15, abs=0.01)
    assert plan["tokens_per_s_at_target_share"] > 0 and list(tmp_path.glob("plans/*.json"))
    inspect.main([a for a in args if a != "--json"])
    assert "step plan for one H100 (fake tensors, live tensors only): micro-batch 1" in capsys.readouterr().out
    assert "plan" not in run(capsys, [*args, "--no-plan"])
