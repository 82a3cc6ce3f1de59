"""The callbacks that keep a 12-hour stage alive across preemptions, job limits and bad steps.

Every stop here happens at an optimizer-step boundary where it can (gradients of a half-accumulated
step are not in any checkpoint), so a resumed run continues exactly where the stopped one left off.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

LAST = "last.ckpt"


class _StepBoundary(Callback):
    """Knows whether the batch that just ended is a point a resumed run continues from exactly:
    it finished an optimizer step (no half-accumulated gradients), and it was not the epoch's last
    batch (Lightning 2.6 resumed from a checkpoint written there skips the next epoch: seen here)."""

    _step_at_batch_start = -1

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        self._step_at_batch_start = trainer.global_step

    def resumable_point(self, trainer: Trainer) -> bool:
        stepped = trainer.global_step != self._step_at_batch_start
        return stepped and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


class StepCheckpoint(_StepBoundary, ModelCheckpoint):
    """ModelCheckpoint whose train-time saves wait for a resumable point (see _StepBoundary).

    Lightning's own timed save may land after micro-batch 1 of 8: the accumulated gradients are lost
    and the resumed run takes a different optimizer step than the uninterrupted one would have.
    """

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self.resumable_point(trainer):
            super().on_train_batch_end(trainer, pl_module, *args)


def last_checkpoint(checkpoint_dir: Path) -> Path:
    return checkpoint_dir / LAST


class JobTimeLimit(_StepBoundary):
    """Saves `last.ckpt` and stops cleanly when this job's wall clock passes `limit_s`.

    Trainer(max_time) is the stage's total training time across resumes (its timer is checkpointed);
    this is the other clock: one job's budget, counted from the start of this process, so the next job
    resumes from the checkpoint written here.
    """

    def __init__(self, limit_s: float, checkpoint_dir: Path) -> None:
        self.limit_s = limit_s
        self.checkpoint_dir = checkpoint_dir
        self.started = time.monotonic()
        self.stopped = False

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if self.stopped or not self.resumable_point(trainer):
            return
        if time.monotonic() - self.started >= self.limit_s:
            trainer.save_checkpoint(last_checkpoint(self.checkpoint_dir))
            trainer.should_stop = True
            self.stopped = True
            log.warning(
                "job time limit of %.0f s reached at step %d: saved %s; run the same command to resume",
                self.limit_s,
                trainer.global_step,
                last_checkpoint(self.checkpoint_dir),
            )


class SaveOnSigterm(Callback):
    """A preempted machine gets SIGTERM: save `last.ckpt`, then Lightning exits (code 0).

    Lightning notices SIGTERM at the end of the current batch and raises SIGTERMException (a
    SystemExit); the save happens here, in on_exception. If that batch was in the middle of a
    gradient-accumulation window, its partial gradients are lost: the resumed run repeats nothing and
    skips no data, but that one optimizer step sees fewer micro-batches.
    """

    def __init__(self, checkpoint_dir: Path) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.stopped = False

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.global_step > 0:
            trainer.save_checkpoint(last_checkpoint(self.checkpoint_dir))
            self.stopped = True
            saved = last_checkpoint(self.checkpoint_dir)
            log.warning("SIGTERM: saved %s at step %d", saved, trainer.global_step)


class RngState(Callback):
    """Puts the torch, CUDA, numpy and Python RNG states into every checkpoint and restores them.

    Lightning checkpoints hold no RNG state, so dropout after a resume would draw other masks than
    the uninterrupted run. Two rules make the resumed run draw exactly the same numbers:
    - validation leaves the RNG as it found it (creating its data-loader iterator draws a seed), so
      the state saved at a step equals the state at the start of the next training batch;
    - the saved state is restored right before the first training batch after the resume, after
      everything that loading and re-creating the data loader consumed.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._before_validation: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return capture_rng()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        if self._pending is not None:
            restore_rng(self._pending)
            self._pending = None

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._before_validation = capture_rng()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._before_validation is not None:
            restore_rng(self._before_validation)
            self._before_validation = None


def capture_rng() -> dict[str, Any]:
    """Every RNG a training step draws from, as tensors and plain lists (loads with weights_only)."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": _python_state_to_plain(random.getstate()),
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    random.setstate(_python_state_from_plain(state["python"]))


def _python_state_to_plain(state: tuple) -> list:
    """random.getstate() as lists of ints, so the checkpoint loads with torch.load(weights_only=True)."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_plain(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
