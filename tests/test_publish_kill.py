"""A SIGKILL at every storage operation of a publish (lightning_app.checkpoints.push_stage) leaves a
trusted last checkpoint on storage once one was published, and the retry resumes from it."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_app import checkpoints
from tests.kill_points import die_in_publish_at


def trainer(max_steps: int) -> Trainer:
    return Trainer(max_steps=max_steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)  # fmt: skip


def stage_folder(root: Path, step: int, ckpt: Path) -> Path:
    """A stage folder as stages.fit leaves it, at `step` (every item differs between steps)."""
    (root / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, root / "checkpoints" / "last.ckpt")
    shutil.copy(ckpt, root / "checkpoints" / f"best-step={step}.ckpt")
    (root / "checkpoint-final").mkdir()
    (root / "checkpoint-final" / "adapter.safetensors").write_bytes(os.urandom(500 + step))
    (root / "checkpoint-final" / "adapter_config.json").write_text(f'{{"step": {step}}}')
    (root / "config.yaml").write_text(f"step: {step}\n")
    return root


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """The stage at step 4 and at step 8 (real Lightning checkpoints of one run)."""
    root = tmp_path_factory.mktemp("stages")
    first = trainer(4)
    first.fit(BoringModel())
    first.save_checkpoint(root / "step4.ckpt")
    second = trainer(8)
    second.fit(BoringModel(), ckpt_path=root / "step4.ckpt")
    second.save_checkpoint(root / "step8.ckpt")
    return stage_folder(root / "old", 4, root / "step4.ckpt"), stage_folder(root / "new", 8, root / "step8.ckpt")


def killed_publish(local: Path, remote: Path, at: int) -> bool:
    """push_stage in a forked child that dies at storage operation `at`; False when it finished first."""
    pid = os.fork()
    if pid == 0:
        try:
            die_in_publish_at(at)
            checkpoints.push_stage(local, remote)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        assert os.WEXITSTATUS(status) == 0
        return False
    assert os.WTERMSIG(status) == signal.SIGKILL
    return True


def resumed_step(ckpt: Path) -> int:
    """Resume a fit from `ckpt` for one more step; the step it started from."""
    start = torch.load(ckpt, weights_only=False)["global_step"]
    fit = trainer(start + 1)
    fit.fit(BoringModel(), ckpt_path=ckpt)
    assert fit.global_step == start + 1
    return start


@pytest.mark.parametrize("first_publish", [True, False], ids=["first", "update"])
def test_a_kill_at_any_point_of_a_publish_leaves_a_trusted_checkpoint_and_the_retry_resumes(stages, tmp_path, first_publish):
    old, new = stages
    template = tmp_path / "template"
    if not first_publish:
        checkpoints.push_stage(old, template)
    resumed: set[int] = set()
    at = 0
    while True:
        remote = tmp_path / f"store-{at}"
        shutil.copytree(template, remote) if template.exists() else remote.mkdir()
        if not killed_publish(new, remote, at):
            break
        pulled = tmp_path / f"pulled-{at}"
        names = checkpoints.pull(remote / "checkpoints", pulled)  # fetch checks every sha256
        if not first_publish:
            assert "last.ckpt" in names, f"kill point {at}: no trusted last.ckpt on storage"
            assert checkpoints.is_complete(remote / "checkpoint-final"), f"kill point {at}"
        if "last.ckpt" in names:
            step = torch.load(pulled / "last.ckpt", weights_only=False)["global_step"]
            assert step in (4, 8), f"kill point {at}"
            if step not in resumed:
                assert resumed_step(pulled / "last.ckpt") == step
                resumed.add(step)

        checkpoints.push_stage(new, remote)  # the retry
        again = tmp_path / f"again-{at}"
        assert sorted(checkpoints.pull(remote / "checkpoints", again)) == ["best-step=8.ckpt", "last.ckpt"]
        assert (again / "last.ckpt").read_bytes() == (new / "checkpoints" / "last.ckpt").read_bytes()
        checkpoints.fetch(remote / "checkpoint-final", again / "final")
        assert (again / "final" / "adapter.safetensors").read_bytes() == (new / "checkpoint-final" / "adapter.safetensors").read_bytes()
        for folder in (remote, remote / "checkpoints"):  # one trusted version per item, no leftovers
            items = [p for p in folder.iterdir() if not p.name.endswith(checkpoints.MARKER_SUFFIX) and p.name != "checkpoints"]
            assert all(checkpoints.marker_path(p).is_file() for p in items), f"kill point {at}: {sorted(folder.iterdir())}"
            assert len(items) == len(checkpoints.remote_names(folder) - {"checkpoints"}), f"kill point {at}"
        at += 1
    # kill points: before and half-way through each of 5 file copies and 4 marker writes, and (update)
    # before each of the 8 deletes of the old versions' markers and data
    assert at == (18 if first_publish else 26)
    if not first_publish:
        assert resumed == {4, 8}  # kills before the new marker leave the old checkpoint, after it the new
    assert checkpoints.push_stage(new, remote) == []  # an unchanged stage is not copied again
