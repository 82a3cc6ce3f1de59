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
from lightning.pytorch.strategies import DDPStrategy, Strategy
from transformers.models.mistral.modeling_mistral import MistralDecoderLayer

from moe.base_model import TINY, load_base_model
from moe.config import MoELoRAConfig
from moe.model import attach_moe_lora
from moe.sharding import AdapterFSDP, decoder_units

REPO_ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = REPO_ROOT / ".lightning" / "strategies"


def strategy_from_yaml(name: str) -> Strategy:
    """The trainer.strategy of a strategy YAML, parsed and built as LightningCLI does."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(Strategy, "strategy")
    node = yaml.safe_load((STRATEGIES / f"{name}.yaml").read_text())["trainer"]["strategy"]
    return parser.instantiate_classes(parser.parse_object({"strategy": node})).strategy


def test_fsdp_yaml_builds_fsdp2_over_decoder_layers():
    """FSDP2 (per-parameter shards keep each dtype): the decoder layers are the units, the embedding
    and head stay whole, gradients are reduced in fp32."""
    strategy = strategy_from_yaml("fsdp")
    assert isinstance(strategy, AdapterFSDP) and strategy.reduce_dtype == "float32"
    model = attach_moe_lora(load_base_model(TINY, dtype=torch.bfloat16), MoELoRAConfig(adapter_dtype="float32"))
    root, layers, ignored = decoder_units(model)
    assert root is model.model and layers == list(model.model.layers)
    assert all(isinstance(layer, MistralDecoderLayer) for layer in layers)
    assert ignored == {model.model.embed_tokens.weight, model.lm_head.weight}
    dtypes = {p.dtype for layer in layers for p in layer.parameters()}
    assert dtypes == {torch.bfloat16, torch.float32}  # one unit holds both: FSDP1 could not


def test_ddp_yaml_builds_the_strategy():
    strategy = strategy_from_yaml("ddp")
    assert isinstance(strategy, DDPStrategy)
    assert strategy._ddp_kwargs["find_unused_parameters"] is False


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(tmp_path):
    """stages.fit with ddp.yaml and two CPU processes on the tiny model: each rank trains on its own
    batches and both end with the same adapter weights (gradients are all-reduced); both log to the
    W&B run id that rank 0 chose and kept with the checkpoints."""
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
    # one W&B run id, chosen by rank 0: the one kept with the checkpoints is the logged run's
    kept = (tmp_path / "therapeutic_moe_stage1" / "checkpoints" / "wandb_run_id").read_text().strip()
    assert ranks[0]["wandb_id"] == ranks[1]["wandb_id"] == kept


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
    """fsdp.yaml's strategy (FSDP2 over the decoder layers) on two gloo processes with a bf16 base,
    fp32 adapters and bf16-mixed: both optimizer steps run, and
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


def fit(output_root: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "stages.fit", "--config", "stages/stage1.yaml", "--config", "stages/demo.yaml",
        f"--run.output_root={output_root}", f"--data.cache_dir={output_root / 'cache'}", *extra,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def adapter_shapes(stage: Path) -> tuple[dict, dict, int]:
    """(last.ckpt's state-dict shapes, checkpoint-final's adapter shapes, last.ckpt's step)."""
    from safetensors.torch import load_file

    last = torch.load(stage / "checkpoints" / "last.ckpt", weights_only=False)
    final = load_file(stage / "checkpoint-final" / "adapter.safetensors")
    shapes = lambda tensors: {k: tuple(v.shape) for k, v in tensors.items()}  # noqa: E731
    return shapes(last["state_dict"]), shapes(final), last["global_step"]


@pytest.mark.slow
def test_fsdp_fit_on_two_cpu_processes_checkpoints_the_adapter_and_resumes(tmp_path):
    """The FSDP2 stage fit on two gloo processes: last.ckpt and checkpoint-final hold the adapter keys at
    the shapes of a one-process run (nothing of the frozen base), and a rerun resumes from last.ckpt."""
    fsdp = [
        "--config", ".lightning/strategies/fsdp.yaml", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
        "--trainer.max_epochs", "-1", "--trainer.max_steps", "4",
    ]  # fmt: skip
    # stages/demo.yaml runs one epoch; the step cap alone must decide where each run stops.
    fit(tmp_path / "single", "--trainer.max_epochs", "-1", "--trainer.max_steps", "4")
    fit(tmp_path / "fsdp", *fsdp)
    stage = "therapeutic_moe_stage1"
    single_last, single_final, _ = adapter_shapes(tmp_path / "single" / stage)
    sharded_last, sharded_final, step = adapter_shapes(tmp_path / "fsdp" / stage)
    assert sharded_last == single_last and sharded_final == single_final and step == 4
    assert single_last and all(k.rsplit(".", 2)[-1] in ("lora_A", "lora_B") or ".router." in k for k in single_last)
    assert {f"model.{k}" for k in single_final} == set(single_last)
    again = fit(tmp_path / "fsdp", *fsdp[:-1], "6")
    assert f"resuming {stage} from" in again.stderr
    assert adapter_shapes(tmp_path / "fsdp" / stage)[2] == 6
