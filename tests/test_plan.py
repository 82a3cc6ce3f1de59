"""The training step on fake tensors (moe.plan, benchmarks.step_on_paper) and the checkpointing plan
chosen from it: figures that add up, recompute counted apart, the fp32 check able to fail, shallow
extrapolation equal to the full depth, and the choice under a memory budget."""

import json
import logging

import pytest

from benchmarks import step_on_paper
from moe import plan
from moe.base_model import tiny_config
from moe.lightning_module import MoELoRAModule

TINY = plan.base_config_for("tiny")


def step(**settings) -> plan.StepFigures:
    return plan.measure_step(TINY, plan.StepSettings(**{"micro_batch": 2, "seq_len": 128, **settings}))


def test_the_tiny_step_on_paper_adds_up_and_counts_recompute_apart():
    full, none = step(checkpointing=1), step(checkpointing=None)
    real = MoELoRAModule(base_model="tiny")
    real.configure_model()
    trainable = sum(p.numel() for p in real.model.parameters() if p.requires_grad)
    for figures in (full, none):
        assert figures.trainable_params == trainable
        assert sum(figures.memory_bytes.values()) == figures.peak_bytes
        assert all(v > 0 for v in figures.memory_bytes.values()), figures.memory_bytes
        # bf16 base: 2 bytes a frozen parameter (plus rotary buffers)
        frozen = sum(p.numel() for p in real.model.parameters() if not p.requires_grad)
        assert 2 * frozen <= figures.memory_bytes["frozen_base"] < 2 * frozen * 1.1
    assert none.hardware_flops_per_token == none.model_flops_per_token
    assert full.hardware_flops_per_token > 1.2 * full.model_flops_per_token
    # Checkpointing keeps fewer activations; without it the model work is no larger.
    assert full.memory_bytes["kept_activations"] < none.memory_bytes["kept_activations"]
    assert none.model_flops_per_token <= full.model_flops_per_token


def test_the_fp32_check_finds_the_unchunked_loss_logits_and_none_when_chunked():
    unchunked = step(checkpointing=None, loss_chunk_tokens=None)
    assert unchunked.wide_fp32 and {w["where"].split(":")[0] for w in unchunked.wide_fp32} == {"losses.py"}
    assert unchunked.wide_fp32[0]["shape"] == [256, TINY.vocab_size]
    assert step(checkpointing=None, loss_chunk_tokens=64).wide_fp32 == []


def test_shallow_copies_extrapolate_to_the_full_depth():
    deep = tiny_config(TINY.vocab_size)
    deep.num_hidden_layers = 12
    for every in (None, 2):
        settings = plan.StepSettings(micro_batch=2, seq_len=64, checkpointing=every)
        full, guess = plan.measure_step(deep, settings), plan.extrapolated(deep, settings)
        assert guess.trainable_params == full.trainable_params
        assert guess.peak_bytes == pytest.approx(full.peak_bytes, rel=0.01)
        assert guess.hardware_flops_per_token == pytest.approx(full.hardware_flops_per_token, rel=1e-6)


def test_four_bit_counts_the_frozen_linears_at_about_a_quarter():
    bf16, nf4 = step(checkpointing=1), step(checkpointing=1, load_in_4bit=True)
    saved = bf16.memory_bytes["frozen_base"] - nf4.memory_bytes["frozen_base"]
    assert saved == bf16.peak_bytes - nf4.peak_bytes > 0
    linears = 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128)  # 2 layers: q, o, k, v, gate/up/down
    assert saved == pytest.approx(linears * (2 - plan.NF4_BYTES_PER_WEIGHT), rel=1e-6)


def test_the_plan_takes_the_fewest_flops_that_fit_and_says_when_nothing_does(tmp_path, monkeypatch):
    monkeypatch.setenv("THERAPEUTIC_MOE_CACHE", str(tmp_path))
    settings = plan.StepSettings(micro_batch=4, seq_len=128)
    roomy = plan.choose(plan.PlanRequest(TINY, settings, budget_gib=1.0, micro_batches=[1, 2, 4]))
    assert (roomy.micro_batch, roomy.checkpointing) == (4, None)
    assert len(roomy.tried) == 1
    none_at_4 = roomy.figures["peak_gib"]
    full_at_4 = plan.measure_step(TINY, plan.StepSettings(micro_batch=4, seq_len=128, checkpointing=1)).peak_gib
    # A budget between the two: no checkpointing only at a smaller micro-batch.
    between = (none_at_4 + full_at_4) / 2
    tight = plan.choose(plan.PlanRequest(TINY, settings, between, micro_batches=[1, 2, 4]))
    assert tight.checkpointing is None and tight.micro_batch < 4
    # The configured micro-batch alone (the runtime `auto`): checkpointing instead.
    alone = plan.choose(plan.PlanRequest(TINY, settings, between))
    assert (alone.micro_batch, alone.checkpointing) == (4, 1)
    with pytest.raises(ValueError, match="fits 0.0 GiB even with full activation checkpointing"):
        plan.choose(plan.PlanRequest(TINY, settings, budget_gib=0.001))
    request = plan.PlanRequest(TINY, settings, 1.0, [1, 2, 4])
    cached = plan.cached_choice(request)
    assert list(tmp_path.glob("plans/*.json")) and plan.cached_choice(request) == cached
    assert roomy.tokens_per_s(989e12, 0.4) == pytest.approx(0.4 * 989e12 / roomy.figures["hardware_flops_per_token"])


def test_checkpointing_settings_and_their_errors():
    assert [plan.checkpoint_every(s) for s in (True, False, {"every_n_layers": 3})] == [1, None, 3]
    for bad in ({"every_n_layers": 0}, {"every": 2}, "sometimes"):
        with pytest.raises(ValueError, match="model.activation_checkpointing"):
            plan.checkpoint_every(bad)


def test_every_n_layers_checkpoints_every_nth_decoder_layer_and_auto_none_off_cuda(caplog):
    module = MoELoRAModule(base_model="tiny", activation_checkpointing={"every_n_layers": 2})
    module.configure_model()
    assert [layer.gradient_checkpointing for layer in module.model.model.layers] == [True, False]
    with caplog.at_level(logging.INFO, logger="moe.lightning_module"):
        auto = MoELoRAModule(base_model="tiny", activation_checkpointing="auto")
        auto.configure_model()
    assert not any(layer.gradient_checkpointing for layer in auto.model.model.layers)
    assert "not on CUDA, no checkpointing" in caplog.text


def test_step_on_paper_prints_a_table_and_one_json_line(capsys):
    result = step_on_paper.main(
        ["--config", "stages/stage1.yaml", "--base-model", "tiny", "--seq-len", "128", "--micro-batch", "2",
         "--activation-checkpointing", "false", "--precision", "32-true"]
    )  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert "peak live tensors" in "\n".join(out)
    assert json.loads(out[-1]) == result
    assert result["settings"] | {"layers": None} == {
        "micro_batch": 2, "seq_len": 128, "checkpointing": "none", "precision": "32-true", "loss_chunk_tokens": 1024,
        "layers": None, "load_in_4bit": False,
    }  # fmt: skip
    assert result["hardware_flops_per_token"] > 0 and result["model_gflop_per_token"] == result["hardware_gflop_per_token"]


@pytest.mark.slow
def test_the_shipped_12b_step_fits_one_h100_with_no_wide_fp32_from_moe():
    result = step_on_paper.main(["--config", "stages/stage1.yaml"])
    assert result["layers"] == 40 and result["trainable_params"] == 80_117_760
    # `auto` as it resolves on one H100 for the shipped micro-batch
    assert (result["settings"]["micro_batch"], result["settings"]["checkpointing"]) == (2, "none")
    assert result["peak_gib"] < plan.DEFAULT_BUDGET_SHARE * plan.GPU_MEMORY_GIB["H100"]
    assert result["wide_fp32_from_moe"] == []
    assert result["hardware_gflop_per_token"] >= result["model_gflop_per_token"] > 40


@pytest.mark.slow
def test_the_shipped_configs_follow_the_plan_for_one_h100(tmp_path, monkeypatch):
    from stages.fit import parse_stage_config

    monkeypatch.setenv("THERAPEUTIC_MOE_CACHE", str(tmp_path))
    result = step_on_paper.main(["--config", "stages/stage1.yaml", "--plan", "--gpu", "H100"])
    config = parse_stage_config(["stages/stage1.yaml"])
    chosen = result["plan"]
    assert config.model.activation_checkpointing == "auto"
    assert (config.data.micro_batch_size, config.trainer.accumulate_grad_batches) == (
        chosen["micro_batch"], chosen["accumulate_grad_batches"]
    )
    assert config.model.throughput_tokens_per_s == pytest.approx(chosen["tokens_per_s_at_target_share"], abs=50)
    assert result["peak_gib"] <= chosen["budget_gib"]
