"""Checkpoints on storage without atomic rename (an S3-style mount): write locally, copy, then mark.

A checkpoint item (a file like `last.ckpt`, or a folder like `checkpoint-final/`) on storage is
trusted only when its marker `NAME.complete.json` exists and lists every file with the size found
there. Publishing removes the marker first, so a copy cut short is never trusted, and writes it
last, with each file's size and sha256.

    python -m lightning_app.checkpoints push-stage LOCAL_STAGE_DIR STORAGE_STAGE_DIR  # after a fit
    python -m lightning_app.checkpoints pull STORAGE_DIR LOCAL_DIR   # a stage's checkpoints, to resume
    python -m lightning_app.checkpoints fetch STORAGE_ITEM LOCAL_ITEM  # e.g. the previous checkpoint-final
    python -m lightning_app.checkpoints publish LOCAL_ITEM STORAGE_ITEM  # e.g. a report folder

A stage folder (stages.fit's `run.output_root/run.name`) holds `checkpoints/` (last.ckpt, best-*.ckpt:
published one by one, so that replacing one never leaves the others untrusted), `checkpoint-final/`
and the run's config and logs (each published as one item).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from lightning_app.transfer import FileEntry, copy_verified

MARKER_SUFFIX = ".complete.json"


def marker_path(item: Path) -> Path:
    return item.with_name(item.name + MARKER_SUFFIX)


def _files(item: Path) -> dict[str, Path]:
    """Files of a checkpoint item by path relative to it ("" for a single file)."""
    if item.is_file():
        return {"": item}
    return {str(p.relative_to(item)): p for p in sorted(item.rglob("*")) if p.is_file()}


def read_marker(item: Path) -> dict[str, FileEntry] | None:
    try:
        files = json.loads(marker_path(item).read_text())["files"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None
    return {name: FileEntry(**entry) for name, entry in files.items()}


def is_complete(item: Path) -> bool:
    """The marker exists and every file it lists is there with its size (cheap: no hashing)."""
    entries = read_marker(item)
    if entries is None:
        return False
    for rel, entry in entries.items():
        path = item / rel if rel else item
        if not path.is_file() or path.stat().st_size != entry.size:
            return False
    return True


def publish(local: Path, remote: Path) -> dict[str, FileEntry]:
    """Copy a local checkpoint item to storage, verified, then write its completion marker."""
    marker_path(remote).unlink(missing_ok=True)
    local_files = _files(local)
    if not local_files:
        raise FileNotFoundError(f"{local}: no checkpoint files to publish")
    if local.is_dir():
        if remote.is_file():
            remote.unlink()
        for rel, stale in _files(remote).items() if remote.is_dir() else ():
            if rel not in local_files:
                stale.unlink()
    elif remote.is_dir():
        shutil.rmtree(remote)
    entries = {rel: copy_verified(src, remote / rel if rel else remote) for rel, src in local_files.items()}
    files = {rel: {"size": e.size, "sha256": e.sha256} for rel, e in entries.items()}
    marker_path(remote).write_text(json.dumps({"files": files}, indent=1) + "\n")
    return entries


def fetch(remote: Path, local: Path) -> None:
    """Copy a complete item from storage, checked against its marker's sha256."""
    entries = read_marker(remote)
    if entries is None or not is_complete(remote):
        raise FileNotFoundError(f"{remote}: not a complete checkpoint (no valid {marker_path(remote).name})")
    for rel, entry in entries.items():
        copy_verified(remote / rel if rel else remote, local / rel if rel else local, expected=entry)


def complete_items(directory: Path) -> list[Path]:
    """The checkpoint items directly in `directory` that are complete."""
    if not directory.is_dir():
        return []
    return [
        marker.with_name(marker.name.removesuffix(MARKER_SUFFIX))
        for marker in sorted(directory.glob("*" + MARKER_SUFFIX))
        if is_complete(marker.with_name(marker.name.removesuffix(MARKER_SUFFIX)))
    ]


def pull(remote_dir: Path, local_dir: Path) -> list[str]:
    """Fetch every complete item of `remote_dir` (a previous attempt's checkpoints, for resuming)."""
    names = []
    for item in complete_items(remote_dir):
        fetch(item, local_dir / item.name)
        names.append(item.name)
    return names


def _signature(item: Path) -> tuple:
    return tuple((rel, p.stat().st_size, p.stat().st_mtime_ns) for rel, p in _files(item).items())


def push(local_dir: Path, remote_dir: Path, published: dict[str, tuple] | None = None) -> list[str]:
    """Publish each item of `local_dir` that changed since `published` (updated in place).

    Hidden names (a checkpoint being written to `.NAME.tmp-PID`) are skipped.
    """
    published = {} if published is None else published
    names = []
    for item in sorted(local_dir.iterdir()) if local_dir.is_dir() else ():
        if item.name.startswith("."):
            continue
        signature = _signature(item)
        if published.get(item.name) != signature and signature:
            publish(item, remote_dir / item.name)
            published[item.name] = signature
            names.append(item.name)
    return names


CHECKPOINTS = "checkpoints"  # stages.fit's RunConfig.checkpoint_dir, inside the stage folder


def push_stage(local_stage: Path, remote_stage: Path) -> list[str]:
    """Publish a stage folder: its checkpoints item by item, everything else as one item each."""
    names = [f"{CHECKPOINTS}/{n}" for n in push(local_stage / CHECKPOINTS, remote_stage / CHECKPOINTS)]
    for item in sorted(local_stage.iterdir()) if local_stage.is_dir() else ():
        if item.name != CHECKPOINTS and not item.name.startswith(".") and _files(item):
            publish(item, remote_stage / item.name)
            names.append(item.name)
    return names


class MirrorCheckpoints(Callback):
    """Publishes what the fit saves in `local_dir` to `remote_dir`, so a preempted job's successor
    resumes from storage. Runs between training hooks (after a save, never during one), on rank 0."""

    def __init__(self, local_dir: str, remote_dir: str) -> None:
        self.local_dir = Path(local_dir)
        self.remote_dir = Path(remote_dir)
        self._published: dict[str, tuple] = {}

    @rank_zero_only
    def sync(self) -> None:
        push(self.local_dir, self.remote_dir, self._published)

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        self.sync()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.sync()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.sync()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.sync()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.checkpoints", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["push-stage", "pull", "fetch", "publish"])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.action in ("fetch", "publish"):
        (fetch if args.action == "fetch" else publish)(args.source, args.dest)
        names = [args.source.name]
    else:
        names = (push_stage if args.action == "push-stage" else pull)(args.source, args.dest)
    print(f"{args.action}: {', '.join(names) or 'nothing'} ({args.source} -> {args.dest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
