"""Exact resume: a seeded fit SIGKILLed at several moments and rerun until done ends with the
uninterrupted run's adapter bit for bit, and leaves no stale checkpoint files.

The kills are real SIGKILLs of real `python -m stages.fit` processes, at moments drawn from a seeded
RNG: during a training step (mid-accumulation), during a validation, and half-way through writing a
checkpoint (a best checkpoint at a validation step: the case where `last.ckpt` is older than it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.demos.boring_classes import BoringModel
from safetensors.torch import load_file

from stages.callbacks import validation_follows

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "datamodules" / "samples"
STAGE = "therapeutic_moe_stage1"
MAX_STEPS = 10
VAL_EVERY = 2  # optimizer steps; 2 micro-batches each, 3 micro-batches per epoch


def fit_command(out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "stages.fit",
        "--config", "stages/stage1.yaml", "--config", "stages/demo.yaml",
        "--data.data_root", str(SAMPLES), "--data.cache_dir", str(cache),
        "--data.sources", json.dumps({"voice": {"root": str(SAMPLES)}}),
        "--run.output_root", str(out),
        "--trainer.max_steps", str(MAX_STEPS), "--trainer.max_epochs", "1000",
        "--trainer.accumulate_grad_batches", "2", "--run.val_every_n_steps", str(VAL_EVERY),
        "--run.early_stopping_patience", "1000", "--run.checkpoint_every_minutes", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


def run_fit(out: Path, cache: Path, *extra: str) -> int:
    env = os.environ | {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(fit_command(out, cache, *extra), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(result.stderr[-3000:])
    return result.returncode


def kill_plan(seed: int) -> list[tuple[str, int]]:
    """Three kills at increasing steps: mid-training, mid-validation, mid-save of a best checkpoint."""
    rng = random.Random(seed)
    train = rng.randint(1, 3)
    validation = rng.randint(train + 1, 5)
    save = rng.randint(validation + 1, MAX_STEPS - 3)
    return [("train", train), ("validation", validation), ("save", save)]


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_to_the_uninterrupted_adapter(tmp_path):
    cache = tmp_path / "cache"
    assert run_fit(tmp_path / "whole", cache) == 0
    out = tmp_path / "killed"
    plan = kill_plan(seed=int(os.environ.get("RESUME_TEST_SEED", "13")))
    for where, step in plan:
        code = run_fit(out, cache, "--trainer.callbacks+=tests.kill_points.KillAt",
                       f"--trainer.callbacks.where={where}", f"--trainer.callbacks.step={step}")  # fmt: skip
        assert code == -signal.SIGKILL, f"the run meant to die at {where} {step} finished"
        assert not (out / STAGE / "checkpoint-final").exists()
    assert list((out / STAGE / "checkpoints").glob(".*.tmp-*")), "the save kill left no half-written file"
    assert run_fit(out, cache) == 0
    whole, again = (load_file(o / STAGE / "checkpoint-final" / "adapter.safetensors") for o in (tmp_path / "whole", out))
    assert whole.keys() == again.keys()
    differ = [k for k in whole if not torch.equal(whole[k], again[k])]
    assert not differ, f"kills {plan}: {len(differ)} tensors differ, e.g. {differ[:2]}"
    metrics = [json.loads((o / STAGE / "checkpoint-final" / "metrics.json").read_text()) for o in (tmp_path / "whole", out)]
    assert metrics[0]["best_checkpoint"].split("/")[-1] == metrics[1]["best_checkpoint"].split("/")[-1]
    assert metrics[0]["val_loss"] == metrics[1]["val_loss"]
    left = sorted(p.name for p in (out / STAGE / "checkpoints").iterdir())
    assert left == sorted(p.name for p in (tmp_path / "whole" / STAGE / "checkpoints").iterdir())
    assert len([n for n in left if n.startswith("best-")]) == 1 and "last.ckpt" in left


class _Recorder(Callback):
    def __init__(self) -> None:
        self.predicted: list[int] = []
        self.validated: list[int] = []

    def on_train_batch_end(self, trainer: Trainer, *args) -> None:
        if validation_follows(trainer):
            self.predicted.append(trainer.fit_loop.epoch_loop.total_batch_idx)

    def on_validation_start(self, trainer: Trainer, *args) -> None:
        if not trainer.sanity_checking:
            self.validated.append(trainer.fit_loop.epoch_loop.total_batch_idx)


@pytest.mark.parametrize("check_every_n_epoch, interval", [(None, 4), (1, 2), (1, 1.0)])
def test_validation_follows_agrees_with_lightning(check_every_n_epoch, interval):
    recorder = _Recorder()
    trainer = Trainer(
        max_steps=9, accumulate_grad_batches=2, limit_train_batches=5, limit_val_batches=1,
        val_check_interval=interval, check_val_every_n_epoch=check_every_n_epoch, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder],
    )  # fmt: skip
    trainer.fit(BoringModel())
    assert recorder.validated and recorder.predicted == recorder.validated
