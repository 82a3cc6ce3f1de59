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
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint

from lightning_app.transfer import FileEntry, TransferError, copy_file

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".complete.json"
LAST = "last.ckpt"  # stages.callbacks.LAST: a checkpoint folder that holds it is a live one


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
    entries = {rel: copy_file(src, remote / rel if rel else remote) for rel, src in local_files.items()}
    files = {rel: {"size": e.size, "sha256": e.sha256} for rel, e in entries.items()}
    marker_path(remote).write_text(json.dumps({"files": files}, indent=1) + "\n")
    return entries


def fetch(remote: Path, local: Path) -> None:
    """Copy a complete item from storage, checked against its marker's sha256."""
    entries = read_marker(remote)
    if entries is None or not is_complete(remote):
        raise FileNotFoundError(f"{remote}: not a complete checkpoint (no valid {marker_path(remote).name})")
    for rel, entry in entries.items():
        try:
            copy_file(remote / rel if rel else remote, local / rel if rel else local, expected=entry)
        except TransferError as error:
            raise TransferError(f"{remote}: does not match its marker: {error}") from None


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
    """Publish each item of `local_dir` that changed since `published` (updated in place), then
    delete the remote items the local side deleted (an old best-*.ckpt), so that storage holds what
    a resume needs and no more.

    Hidden names (a checkpoint being written to `.NAME.tmp-PID`) are skipped. Deleting needs a live
    local folder (one that holds last.ckpt): an empty or missing one never empties the storage.
    """
    published = {} if published is None else published
    names = []
    local_items = [p for p in sorted(local_dir.iterdir()) if not p.name.startswith(".")] if local_dir.is_dir() else []
    for item in local_items:
        signature = _signature(item)
        if published.get(item.name) != signature and signature:
            publish(item, remote_dir / item.name)
            published[item.name] = signature
            names.append(item.name)
    if (local_dir / LAST).is_file():
        for gone in sorted(remote_names(remote_dir) - {p.name for p in local_items}):
            remove(remote_dir / gone)
            published.pop(gone, None)
            names.append(f"-{gone}")
    return names


def remote_names(directory: Path) -> set[str]:
    """Item names in a storage folder: files and folders, with or without a marker."""
    if not directory.is_dir():
        return set()
    return {p.name.removesuffix(MARKER_SUFFIX) for p in directory.iterdir() if not p.name.startswith(".")}


def remove(item: Path) -> None:
    """Delete a published item: its marker first, so a half-deleted item is never trusted."""
    marker_path(item).unlink(missing_ok=True)
    if item.is_dir():
        shutil.rmtree(item)
    else:
        item.unlink(missing_ok=True)


CHECKPOINTS = "checkpoints"  # stages.fit's RunConfig.checkpoint_dir, inside the stage folder


def push_stage(local_stage: Path, remote_stage: Path) -> list[str]:
    """Publish a stage folder: its checkpoints item by item, everything else as one item each."""
    names = [f"{CHECKPOINTS}/{n}" for n in push(local_stage / CHECKPOINTS, remote_stage / CHECKPOINTS)]
    for item in sorted(local_stage.iterdir()) if local_stage.is_dir() else ():
        if item.name != CHECKPOINTS and not item.name.startswith(".") and _files(item):
            publish(item, remote_stage / item.name)
            names.append(item.name)
    return names


class MirrorCheckpoints(Checkpoint):
    """Publishes what the fit saves in `local_dir` to `remote_dir`, so a preempted job's successor
    resumes from storage; deletes there what the fit deleted.

    A Checkpoint callback, listed after the fit's own savers (stages.fit), so at every hook it runs
    after the saves, the SIGTERM save included. Off the training step's critical path: each publish
    runs in a background thread; the next one first waits for it (a 1 GB last.ckpt every 30 minutes
    never waits in practice), and the end of the fit, normal or by exception, waits for the last one.
    Rank 0 only (it alone writes checkpoints).
    """

    def __init__(self, local_dir: str, remote_dir: str) -> None:
        self.local_dir = Path(local_dir)
        self.remote_dir = Path(remote_dir)
        self._published: dict[str, tuple] = {}
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def sync(self, trainer: Trainer, wait: bool = False) -> None:
        if not trainer.is_global_zero:
            return
        self.join()
        self._thread = threading.Thread(target=self._push, name="publish-checkpoints", daemon=True)
        self._thread.start()
        if wait:
            self.join()

    def _push(self) -> None:
        try:
            push(self.local_dir, self.remote_dir, self._published)
        except BaseException as error:  # re-raised in the training thread by join()
            self._error = error

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if self._changed():
            self.sync(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and self._changed():
            self.sync(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.sync(trainer, wait=True)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.sync(trainer, wait=True)

    def _changed(self) -> bool:
        """Cheap (stat only): whether the local folder differs from what was published."""
        if self._thread is not None and self._thread.is_alive():
            return False  # still publishing: look again after it
        if not self.local_dir.is_dir():
            return False
        local = {p.name: _signature(p) for p in self.local_dir.iterdir() if not p.name.startswith(".")}
        return local != self._published


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.checkpoints", description=__doc__.split("\n")[0], allow_abbrev=False)
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
