"""The callbacks that keep a 12-hour stage alive across preemptions, job limits, kills and bad steps.

One rule makes every resume exact: `last.ckpt`, the only checkpoint a run resumes from, is written
only at a point the uninterrupted run also passes through with the same state: right after an
optimizer step (no half-accumulated gradients), never on an epoch's last batch, and after the
validation due at that step (Lightning resumed from a save made before a due validation skips that
validation, and with it the validation loader's RNG draw, the best checkpoint and early stopping's
count). The timed save, the job time limit and SIGTERM all go through that one writer
(LastCheckpoint), decided together by every rank.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

LAST = "last.ckpt"
BEST_PATTERN = "best-*.ckpt"
TMP_PATTERN = ".*.tmp-*"  # stages.checkpoint_io's temporary files, left behind by a kill mid-write


class JobTimeLimitReached(Exception):
    """This job's wall clock ran out: last.ckpt was saved and the next job resumes from it."""


def last_checkpoint(checkpoint_dir: Path) -> Path:
    return checkpoint_dir / LAST


def validation_follows(trainer: Trainer) -> bool:
    """Whether Lightning validates right after the training batch that just ended.

    Lightning has no public "validation is due" query: this restates the batch-count rule of
    Lightning 2.6's training epoch loop from public trainer and loop state only (no private
    attribute; tests/test_resume_exact.py checks it against Lightning's own decisions, so an
    upgrade that changes the rule fails there first).
    """
    if not trainer.enable_validation:
        return False
    every_n_epochs = trainer.check_val_every_n_epoch
    if every_n_epochs is not None and (trainer.current_epoch + 1) % every_n_epochs != 0:
        return False
    if trainer.should_stop:
        return True
    loop = trainer.fit_loop.epoch_loop
    interval = trainer.val_check_batch
    if interval is None or interval == float("inf"):
        return loop.batch_progress.is_last_batch
    batch = loop.total_batch_idx if every_n_epochs is None else loop.batch_idx
    return (batch + 1) % interval == 0


class LastCheckpoint(Checkpoint):
    """Writes `last.ckpt` every `every_s` seconds, at this job's time limit and on SIGTERM, only at
    points a resumed run continues from exactly (see the module docstring).

    SIGTERM (a preempted machine) is taken over from Lightning, whose own handler stops after the
    current micro-batch, possibly half-way through an accumulation window: here the run finishes
    the optimizer step (and the validation due at it), saves, then raises SIGTERMException. The job
    time limit saves the same way and raises JobTimeLimitReached (a stop without the extra
    validation that `trainer.should_stop` would trigger). Every decision is reduced across ranks,
    so no rank waits in a collective that another rank skipped.
    """

    def __init__(self, checkpoint_dir: Path, every_s: float, job_limit_s: float | None = None) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.every_s = every_s
        self.job_limit_s = job_limit_s
        self.started = time.monotonic()
        self._last_save = time.monotonic()
        self._saved_step = -1
        self._step_at_batch_start = -1
        self._sigterm = False
        self._pending: str | None = None  # a save decided at batch end, waiting for the due validation

    @property
    def path(self) -> Path:
        return last_checkpoint(self.checkpoint_dir)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # the job limit counts training time: loading the base model and preparing data come before
        self.started = self._last_save = time.monotonic()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)  # Lightning restores the old handler at teardown

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        log.warning("SIGTERM: saving at the end of this optimizer step, then stopping")
        self._sigterm = True

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        self._step_at_batch_start = trainer.global_step

    def _resumable_point(self, trainer: Trainer) -> bool:
        stepped = trainer.global_step != self._step_at_batch_start
        return stepped and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch

    def _reason(self, trainer: Trainer) -> str | None:
        """Why to save now, agreed by every rank (each rank has its own clocks and signals)."""
        now = time.monotonic()
        reduce = trainer.strategy.reduce_boolean_decision
        if reduce(self._sigterm, all=False):
            return "sigterm"
        if self.job_limit_s is not None and reduce(now - self.started >= self.job_limit_s, all=False):
            return "job_limit"
        if reduce(now - self._last_save >= self.every_s, all=False):
            return "timed"
        return None

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if not self._resumable_point(trainer):
            return
        reason = self._reason(trainer)
        if reason is None:
            return
        if validation_follows(trainer):
            self._pending = reason
        else:
            self._save(trainer, reason)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending is not None and not trainer.sanity_checking:
            reason, self._pending = self._pending, None
            self._save(trainer, reason)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._saved_step != trainer.global_step:
            self._save(trainer, "end")

    def _save(self, trainer: Trainer, reason: str) -> None:
        trainer.save_checkpoint(self.path)
        self._saved_step, self._last_save = trainer.global_step, time.monotonic()
        if reason == "sigterm":
            log.warning("SIGTERM: saved %s at step %d; run the same command to resume", self.path, trainer.global_step)
            raise SIGTERMException
        if reason == "job_limit":
            log.warning(
                "job time limit of %.0f s reached at step %d: saved %s; run the same command to resume",
                self.job_limit_s,
                trainer.global_step,
                self.path,
            )
            raise JobTimeLimitReached(f"job time limit reached at step {trainer.global_step}")


class BestCheckpoint(ModelCheckpoint):
    """The best-by-val_loss checkpoint, consistent with `last.ckpt` after any kill.

    A kill between a new best file and the next last.ckpt leaves a best file the resumed run does not
    know about (it redoes that validation and writes the same file again): at the start of training
    every best-*.ckpt other than the one the restored state names is deleted, and so are temporary
    files a kill left mid-write.
    """

    # The optimizer step of this run's last validation (None: none yet in this process); the steps
    # after it are trained on but not yet weighed (stages.final weighs them before choosing).
    validated_step: int | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.is_global_zero and self.dirpath:
            remove_stale_checkpoints(Path(self.dirpath), keep=self.best_model_path)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self.validated_step = trainer.global_step


def remove_stale_checkpoints(checkpoint_dir: Path, keep: str | None) -> list[Path]:
    stale = [p for p in checkpoint_dir.glob(BEST_PATTERN) if not keep or p.resolve() != Path(keep).resolve()]
    stale += list(checkpoint_dir.glob(TMP_PATTERN))
    for path in stale:
        path.unlink(missing_ok=True)
        log.warning("removed %s: no resumable state refers to it", path)
    return stale


class RngState(Callback):
    """Puts the torch, CUDA, numpy and Python RNG states into every checkpoint and restores them.

    Lightning checkpoints hold no RNG state, so dropout after a resume would draw other masks than
    the uninterrupted run. Two rules make the resumed run draw exactly the same numbers:
    - validation leaves the RNG as the last training batch left it: the state is taken at the end of
      every training batch, because creating the validation loader's iterator draws a seed before
      any validation hook runs; it is put back at validation end, before any checkpoint is written;
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

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        self._before_validation = capture_rng()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._before_validation is None:  # the sanity check, before any training batch
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
