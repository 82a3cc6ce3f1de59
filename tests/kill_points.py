"""A callback that SIGKILLs its own process at a chosen moment of a fit (test only).

Added on the command line, so the fit under test is the real `python -m stages.fit`:
    --trainer.callbacks+=tests.kill_points.KillAt --trainer.callbacks.where=validation --trainer.callbacks.step=6
where: "train" (after a micro-batch of that step, before its optimizer step completes when
accumulating), "validation" (after the first batch of the first validation at or after that step),
"save" (half-way through writing the first best checkpoint at or after that step, the moment when
last.ckpt is older than the best file: the temporary file is left behind, as a real kill leaves it).

`die_in_publish_at(k)` does the same to lightning_app.checkpoints' publishing: every write and delete
it makes on storage is a kill point, and the k-th one kills the process (a write half-way through).
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(Callback):
    def __init__(self, where: str, step: int) -> None:
        if where not in ("train", "validation", "save"):
            raise ValueError(f"where must be train, validation or save, got {where!r}")
        self.where, self.step = where, step

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        if self.where != "save":
            return
        real_save, step = torch.save, self.step

        def save_then_die(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            name = os.path.basename(getattr(f, "name", ""))
            if isinstance(obj, dict) and obj.get("global_step", -1) >= step and name.startswith(".best-"):
                f.write(b"half a checkpoint")
                f.flush()
                _die()
            real_save(obj, f, *args, **kwargs)

        torch.save = save_then_die

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        # the first micro-batch of optimizer step `step` has run when the second one starts
        if self.where == "train" and trainer.global_step == self.step and trainer.fit_loop.epoch_loop.batch_idx >= 0:
            self._seen = getattr(self, "_seen", 0) + 1
            if self._seen == 2:
                _die()

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if self.where == "train" and trainer.global_step > self.step:
            _die()  # a one-micro-batch step: die right after it

    def on_validation_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if self.where == "validation" and not trainer.sanity_checking and trainer.global_step >= self.step:
            _die()


class _PublishKillPoints:
    """Counts storage operations of lightning_app.checkpoints; SIGKILL at number `at`."""

    def __init__(self, at: int) -> None:
        self.at, self.seen = at, 0

    def point(self, half_write: tuple[Path, bytes] | None = None) -> None:
        if self.seen == self.at:
            if half_write is not None:
                path, data = half_write
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data[: len(data) // 2])
            _die()
        self.seen += 1


def die_in_publish_at(at: int) -> None:
    """From now on, SIGKILL this process at the `at`-th storage operation of a publish: before each
    copy, half-way through it, before each marker write, half-way through it, before each delete."""
    from lightning_app import checkpoints

    points = _PublishKillPoints(at)
    real_copy, real_write, real_unlink, real_rmtree = checkpoints.copy_file, Path.write_text, Path.unlink, shutil.rmtree

    def copy_file(src: Path, dst: Path, expected: Any = None) -> Any:
        points.point()
        points.point(half_write=(dst, Path(src).read_bytes()))
        return real_copy(src, dst, expected)

    def write_text(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        points.point()
        points.point(half_write=(self, data.encode()))
        return real_write(self, data, *args, **kwargs)

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.exists():
            points.point()
        real_unlink(self, missing_ok=missing_ok)

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        points.point()
        real_rmtree(path, *args, **kwargs)

    checkpoints.copy_file = copy_file
    Path.write_text = write_text
    Path.unlink = unlink
    checkpoints.shutil.rmtree = rmtree
