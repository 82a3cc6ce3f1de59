"""Multi-GPU strategy YAMLs (.lightning/strategies/): what can be checked without a GPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, Strategy
from transformers.models.mistral.modeling_mistral import MistralDecoderLayer

from moe.base_model import TINY, load_base_model
from moe.config import MoELoRAConfig
from moe.model import attach_moe_lora

REPO_ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = REPO_ROOT / ".lightning" / "strategies"


def strategy_from_yaml(name: str) -> Strategy:
    """The trainer.strategy of a strategy YAML, parsed and built as LightningCLI does."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(Strategy, "strategy")
    node = yaml.safe_load((STRATEGIES / f"{name}.yaml").read_text())["trainer"]["strategy"]
    return parser.instantiate_classes(parser.parse_object({"strategy": node})).strategy


def fsdp_unit_dtypes(model: torch.nn.Module, wrap: set[type]) -> dict[str, set[torch.dtype]]:
    """The dtypes in each FSDP1 unit: a parameter belongs to its nearest wrapped ancestor (else the root)."""
    units: dict[str, set[torch.dtype]] = {}
    for name, param in model.named_parameters():
        parts = name.split(".")[:-1]
        owner = ""
        for depth in range(len(parts), 0, -1):
            if type(model.get_submodule(".".join(parts[:depth]))) in wrap:
                owner = ".".join(parts[:depth])
                break
        units.setdefault(owner, set()).add(param.dtype)
    return units


@pytest.fixture(scope="module")
def bf16_base_with_fp32_adapters():
    model = load_base_model(TINY, dtype=torch.bfloat16)
    return attach_moe_lora(model, MoELoRAConfig(adapter_dtype="float32"))


def test_fsdp_units_hold_one_dtype_each(bf16_base_with_fp32_adapters):
    strategy = strategy_from_yaml("fsdp")
    assert isinstance(strategy, FSDPStrategy)
    wrap = set(strategy.kwargs["auto_wrap_policy"]._module_classes)
    units = fsdp_unit_dtypes(bf16_base_with_fp32_adapters, wrap)
    mixed = {unit: dtypes for unit, dtypes in units.items() if len(dtypes) > 1}
    assert mixed == {}
    assert {torch.float32} in units.values() and {torch.bfloat16} in units.values()


def test_wrapping_decoder_layers_alone_would_mix_dtypes(bf16_base_with_fp32_adapters):
    """The check above can fail: FSDP1 refuses exactly this layout."""
    units = fsdp_unit_dtypes(bf16_base_with_fp32_adapters, {MistralDecoderLayer})
    assert any(len(dtypes) > 1 for dtypes in units.values())


def test_ddp_yaml_builds_the_strategy():
    strategy = strategy_from_yaml("ddp")
    assert isinstance(strategy, DDPStrategy)
    assert strategy._ddp_kwargs["find_unused_parameters"] is False


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(tmp_path):
    """stages.fit with ddp.yaml and two CPU processes on the tiny model: each rank trains on its own
    batches and both end with the same adapter weights (gradients are all-reduced)."""
    probe = tmp_path / "probe"
    command = [
        sys.executable, "-m", "stages.fit",
        "--config", "stages/stage1.yaml", "--config", "stages/demo.yaml", "--config", ".lightning/strategies/ddp.yaml",
        "--trainer.devices", "2", "--trainer.max_steps", "2", f"--run.output_root={tmp_path}",
        f"--data.cache_dir={tmp_path / 'cache'}",
        "--trainer.callbacks+=ddp_probe.RankProbe", f"--trainer.callbacks.out_dir={probe}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}  # ddp_probe, in every spawned rank
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == 4  # 2 steps x 2 accumulated micro-batches
    assert not set(ranks[0]["batches"]) & set(ranks[1]["batches"])
    assert ranks[0]["initial"] == ranks[1]["initial"] != ranks[0]["weights"] == ranks[1]["weights"]
    assert (tmp_path / "therapeutic_moe_stage1" / "checkpoint-final" / "adapter.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("what, code", [("sigterm", 143), ("nan", 3)])
def test_a_stop_seen_by_one_rank_stops_both(tmp_path, what, code):
    """SIGTERM to rank 1 alone, or a NaN loss on rank 1 alone: both ranks agree and stop (a rank
    stopping alone would leave the other waiting in a collective until the job's time runs out)."""
    command = [
        sys.executable, "-m", "stages.fit",
        "--config", "stages/stage1.yaml", "--config", "stages/demo.yaml", "--config", ".lightning/strategies/ddp.yaml",
        "--trainer.devices", "2", "--trainer.max_steps", "8", f"--run.output_root={tmp_path}",
        f"--data.cache_dir={tmp_path / 'cache'}", "--run.checkpoint_every_minutes", "1000",
        # one row per step: several steps per epoch on each rank, so there are points to save at
        "--data.micro_batch_size", "1", "--trainer.accumulate_grad_batches", "1",
        "--trainer.callbacks+=ddp_probe.OneRankStops", f"--trainer.callbacks.what={what}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == code, result.stderr[-3000:]
    last = tmp_path / "therapeutic_moe_stage1" / "checkpoints" / "last.ckpt"
    if what == "sigterm":  # saved by rank 0 at the first step boundary after the signal, both ranks agreeing
        state = torch.load(last, weights_only=False)
        assert 2 <= state["global_step"] < 8
        assert not state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["is_last_batch"]
    else:
        assert not last.exists() and "training loss is nan" in result.stderr


def probe_losses(out: Path, devices: int) -> list[list[float]]:
    """Each process's micro-batch losses from tests/fsdp_probe.py (per rank, in step order)."""
    command = [sys.executable, str(Path(__file__).parent / "fsdp_probe.py"), str(out), str(devices)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text())["losses"] for r in range(devices)]


@pytest.mark.slow
def test_fsdp_trains_two_steps_on_two_cpu_processes_to_the_single_process_losses(tmp_path):
    """fsdp.yaml's strategy (FULL_SHARD, its wrap policy) on two gloo processes with a bf16 base, fp32
    adapters and bf16-mixed (FSDP casts the gathered adapters to bf16): both optimizer steps run, and
    every micro-batch loss equals the one-process run that accumulates the same two micro-batches per
    step. Step 2's losses come after step 1's update, so the sharded update is the same update."""
    (single,) = probe_losses(tmp_path / "single", 1)
    ranks = probe_losses(tmp_path / "fsdp", 2)
    # One process: Lightning reports each accumulated micro-batch loss divided by the 2 micro-batches.
    single = [2 * loss for loss in single]
    for step in range(2):
        sharded = sorted(rank[step] for rank in ranks)
        alone = sorted(single[2 * step : 2 * step + 2])
        assert sharded == pytest.approx(alone, rel=2e-3), (step, sharded, alone)
    assert ranks[0][1] != pytest.approx(ranks[0][0], rel=1e-4)  # the losses moved: a real update
