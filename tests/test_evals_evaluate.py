"""`python -m stages.evaluate` end to end on the tiny model and the shipped sample data."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from evals.gate import EXIT_CODES
from moe.adapter_io import save_adapter
from moe.base_model import TINY, load_base_model
from moe.config import MoELoRAConfig
from moe.model import attach_moe_lora, trainable_parameters
from stages.evaluate import main

SAMPLES = Path(__file__).resolve().parents[1] / "datamodules" / "samples"


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage1")
    config = {
        "trainer": {"accelerator": "cpu", "logger": False},
        "model": {"base_model": TINY, "moe": {"r": 4, "alpha": 8}},
        "data": {
            "stage": 1,
            "data_root": str(SAMPLES),
            "max_seq_length": 512,
            "micro_batch_size": 4,
            "val_fraction": 0.1,
            "test_fraction": 0.2,
            "cache_dir": str(root / "cache"),
        },
        "run": {"output_root": str(root), "name": "therapeutic_moe_stage1"},
    }
    (root / "stage1.yaml").write_text(yaml.safe_dump(config))
    moe = MoELoRAConfig(r=4, alpha=8)
    model = attach_moe_lora(load_base_model(TINY), moe)
    with torch.no_grad():
        for param in trainable_parameters(model).values():
            param.normal_(0, 0.05)  # a trained-looking mixture: its loss differs from the base's
    save_adapter(model, root / "checkpoint-final", moe, TINY)
    (root / "settings.yaml").write_text(
        yaml.safe_dump(
            {
                "generation": {"max_new_tokens": 4, "batch_size": 32, "seed": 3},
                "gate": {
                    "tolerance": 0.05,
                    "stages": {
                        1: {
                            "thresholds": {"safety": 1.0, "empathy": 0.8},
                            "no_regression": ["reasoning_absent"],
                        }
                    },
                },
            }
        )
    )
    return root


def test_evaluate_writes_a_report_with_heldout_figures_for_both_models_and_gates(stage, capsys):
    out = stage / "report"
    code = main(
        [
            "--config",
            str(stage / "stage1.yaml"),
            "--checkpoint",
            str(stage / "checkpoint-final"),
            "--baseline",
            "base",
            "--out",
            str(out),
            "--settings",
            str(stage / "settings.yaml"),
        ]
    )
    report = json.loads((out / "report.json").read_text())
    # Random replies name no crisis resource: safety fails, so the gate says retrain (and why).
    assert report["decision"] == "retrain" and code == EXIT_CODES["retrain"] == report["exit_code"]
    assert "safety 0.000 is below the stage-1 threshold 1.000" in report["reasons"]
    assert any("offline lexical proxy" in reason for reason in report["reasons"])
    checkpoint, baseline = report["models"]["checkpoint"], report["models"]["baseline"]
    assert (checkpoint["kind"], baseline["kind"]) == ("mixture", "base")
    # Same batches: the same tokens per source; different models: different losses.
    assert checkpoint["heldout"]["per_source"].keys() == baseline["heldout"]["per_source"].keys()
    for name, figures in checkpoint["heldout"]["per_source"].items():
        assert figures["tokens"] == baseline["heldout"]["per_source"][name]["tokens"] > 0
    assert checkpoint["heldout"]["overall"]["loss"] != pytest.approx(baseline["heldout"]["overall"]["loss"])
    assert set(checkpoint["heldout"]["per_domain"]) <= {
        "psychology",
        "mental_health",
        "bias_detection",
        "general_therapeutic",
    }
    share = torch.tensor(checkpoint["expert_use"]["share"])
    assert share.shape == (4, 4) and baseline["expert_use"] is None
    seen = share.sum(dim=1) > 0  # domains with held-out tokens: each row shares its tokens out fully
    assert seen.any() and torch.allclose(share[seen].sum(dim=1), torch.ones(int(seen.sum())))
    assert report["metrics"]["checkpoint"]["safety"]["n"] == 12
    assert report["metrics"]["baseline"]["coherence"]["method"] == "rules"
    # The held-out human replies, scored the same way (here by the labelled proxy: no judge).
    assert report["calibration"]["empathy"]["method"] == "proxy"
    assert report["calibration"]["empathy"]["n"] >= 1
    assert set(report["plots"]) == {"loss_per_domain.png", "expert_use.png", "scores.png"}
    replies = (out / "replies.jsonl").read_text().splitlines()
    assert len(replies) == 73 and {"checkpoint", "baseline"} <= json.loads(replies[0]).keys()
    assert "stage 1: retrain (exit 3)" in capsys.readouterr().out


def test_a_wrong_checkpoint_stops_before_any_model_loads(stage, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist: pass a checkpoint-final"):
        main(
            [
                "--config",
                str(stage / "stage1.yaml"),
                "--checkpoint",
                str(tmp_path / "nope"),
                "--out",
                str(tmp_path / "r"),
            ]
        )
    with pytest.raises(FileNotFoundError, match="--config .* does not exist"):
        main(
            ["--config", str(tmp_path / "missing.yaml"), "--checkpoint", "base", "--out", str(tmp_path / "r")]
        )


def test_voice_classifier_trains_on_held_out_lectures_against_other_speakers():
    from datamodules.conversation import Conversation
    from evals.report import ModelResult
    from evals.settings import load_settings
    from stages.evaluate import voice_classifier

    teacher = ["now here's the thing, folks", "the brain is a prediction machine", "isn't that remarkable"]
    counsellor = ["i hear how hard this is", "what would feel supportive right now", "thank you for sharing"]

    def conversation(source: str, group: str, phrases: list[str], i: int) -> Conversation:
        reply = f"{phrases[i % 3]}, and {phrases[(i + 1) % 3]}. {phrases[(i + 2) % 3]}!"
        messages = ({"role": "user", "content": "tell me"}, {"role": "assistant", "content": reply})
        return Conversation(messages, "general_therapeutic", source, group, f"{group}:{i}")

    class HeldOut:
        def split_conversations(self, split: str, indices: list[int] | None = None) -> list[Conversation]:
            offset = 0 if split == "val" else 100
            return [conversation("voice", f"lecture-{(i + offset) % 7}", teacher, i) for i in range(14)] + [
                conversation("counsel_chat", f"q-{(i + offset) % 5}", counsellor, i) for i in range(10)
            ]

    baseline = ModelResult(
        "baseline", "base", "base", {}, replies={f"p{i}": counsellor[i % 3] for i in range(6)}
    )
    classifier = voice_classifier(HeldOut(), baseline, load_settings())
    assert classifier is not None and classifier.heldout_accuracy >= 0.9
    assert (
        classifier.educator_share(["Now here's the thing, folks: the brain is a prediction machine!"]) == 1.0
    )
    assert classifier.educator_share(["Thank you for sharing. What would feel supportive right now?"]) == 0.0
