"""Checkpoints on storage without atomic rename (an S3-style mount): write locally, copy, then mark.

A checkpoint item (a file like `last.ckpt`, or a folder like `checkpoint-final/`) lives on storage as
versions: `NAME~N` (N = 1, 2, ...; a plain `NAME` from before versions counts as version 0), each
trusted only when its marker `NAME~N.complete.json` exists and lists every file with the size found
there. The item's current version is its newest trusted one. Publishing never touches a trusted
version: it copies into a new version, writes that version's marker last (with each file's size and
sha256), and only then removes the older versions (marker first). So once an item was published,
a kill at any moment leaves storage with a trusted version of it, the previous or the new one.
An item whose current version's marker already lists the local files (size and sha256) is not
copied again, so a second publish after a SIGTERM copies only what changed.

    python -m lightning_app.checkpoints push-stage LOCAL_STAGE_DIR STORAGE_STAGE_DIR  # after a fit
    python -m lightning_app.checkpoints pull STORAGE_DIR LOCAL_DIR   # a stage's checkpoints, to resume
    python -m lightning_app.checkpoints fetch STORAGE_ITEM LOCAL_ITEM  # e.g. the previous checkpoint-final
    python -m lightning_app.checkpoints publish LOCAL_ITEM STORAGE_ITEM  # e.g. a report folder

STORAGE_ITEM is the item's name (`.../stage1/checkpoint-final`); `current()` finds its version.
A stage folder (stages.fit's `run.output_root/run.name`) holds `checkpoints/` (last.ckpt, best-*.ckpt:
published one by one, so that replacing one never leaves the others untrusted), `checkpoint-final/`
and the run's config and logs (each published as one item).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint

from lightning_app.transfer import FileEntry, TransferError, copy_file, describe

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".complete.json"
LAST = "last.ckpt"  # stages.callbacks.LAST: a checkpoint folder that holds it is a live one
VERSION_SEP = "~"
_VERSION = re.compile(r"^(?P<name>.+?)(?:~(?P<n>[0-9]+))?$")


def marker_path(version: Path) -> Path:
    return version.with_name(version.name + MARKER_SUFFIX)


def _files(item: Path) -> dict[str, Path]:
    """Files of a checkpoint item by path relative to it ("" for a single file)."""
    if item.is_file():
        return {"": item}
    return {str(p.relative_to(item)): p for p in sorted(item.rglob("*")) if p.is_file()}


def _split(name: str) -> tuple[str, int]:
    """`last.ckpt~3` -> ("last.ckpt", 3); `last.ckpt` -> ("last.ckpt", 0); markers by their version."""
    match = _VERSION.match(name.removesuffix(MARKER_SUFFIX))
    return match["name"], int(match["n"] or 0)


def versions(item: Path) -> dict[int, Path]:
    """Every version of `item` on storage (trusted or not: a marker, its data, or both) by number."""
    if not item.parent.is_dir():
        return {}
    found = {}
    for path in item.parent.iterdir():
        name, n = _split(path.name)
        if name == item.name:
            found[n] = item if n == 0 else item.with_name(f"{item.name}{VERSION_SEP}{n}")
    return dict(sorted(found.items()))


def read_marker(version: Path) -> dict[str, FileEntry] | None:
    try:
        files = json.loads(marker_path(version).read_text())["files"]
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, KeyError, TypeError):
        return None
    return {name: FileEntry(**entry) for name, entry in files.items()}


def _trusted(version: Path) -> dict[str, FileEntry] | None:
    """The version's marker entries when every file it lists is there with its size (cheap: no hashing)."""
    entries = read_marker(version)
    if entries is None:
        return None
    for rel, entry in entries.items():
        path = version / rel if rel else version
        if not path.is_file() or path.stat().st_size != entry.size:
            return None
    return entries


def current(item: Path) -> Path | None:
    """The newest trusted version of `item`, or None."""
    for version in reversed(versions(item).values()):
        if _trusted(version) is not None:
            return version
    return None


def is_complete(item: Path) -> bool:
    """`item` has a trusted version on storage."""
    return current(item) is not None


def _matches(local_files: dict[str, Path], entries: dict[str, FileEntry]) -> bool:
    """The local files are exactly those the marker lists (sizes first, sha256 only when they agree)."""
    if set(local_files) != set(entries) or any(p.stat().st_size != entries[r].size for r, p in local_files.items()):
        return False
    return all(describe(p) == entries[r] for r, p in local_files.items())


def publish(local: Path, remote: Path) -> Path | None:
    """Publish a local checkpoint item as a new version of `remote`, then drop its older versions.

    Returns the new version, or None when the current one already holds these files (nothing copied).
    """
    local_files = _files(local)
    if not local_files:
        raise FileNotFoundError(f"{local}: no checkpoint files to publish")
    existing = current(remote)
    if existing is not None and _matches(local_files, _trusted(existing) or {}):
        _drop_versions(remote, keep=existing)
        return None
    number = max(versions(remote), default=0) + 1
    version = remote.with_name(f"{remote.name}{VERSION_SEP}{number}")
    entries = {rel: copy_file(src, version / rel if rel else version) for rel, src in local_files.items()}
    files = {rel: {"size": e.size, "sha256": e.sha256} for rel, e in entries.items()}
    marker_path(version).write_text(json.dumps({"files": files}, indent=1) + "\n")
    _drop_versions(remote, keep=version)
    return version


def _drop_versions(item: Path, keep: Path | None) -> None:
    """Delete every version of `item` but `keep`, each marker first, so a half-deleted one is never
    trusted (also the leftovers of a publish cut short)."""
    for version in versions(item).values():
        if version != keep:
            marker_path(version).unlink(missing_ok=True)
            if version.is_dir():
                shutil.rmtree(version)
            else:
                version.unlink(missing_ok=True)


def remove(item: Path) -> None:
    """Delete a published item: every version of it."""
    _drop_versions(item, keep=None)


def fetch(remote: Path, local: Path) -> None:
    """Copy the current version of an item from storage, checked against its marker's sha256."""
    version = current(remote)
    if version is None:
        raise FileNotFoundError(f"{remote}: not a complete checkpoint (no trusted version with a valid {remote.name}{MARKER_SUFFIX})")
    for rel, entry in (read_marker(version) or {}).items():
        try:
            copy_file(version / rel if rel else version, local / rel if rel else local, expected=entry)
        except TransferError as error:
            raise TransferError(f"{version}: does not match its marker: {error}") from None


def remote_names(directory: Path) -> set[str]:
    """Item names in a storage folder (every version, trusted or not, under its item's name)."""
    if not directory.is_dir():
        return set()
    return {_split(p.name)[0] for p in directory.iterdir() if not p.name.startswith(".")}


def complete_items(directory: Path) -> list[Path]:
    """The items directly in `directory` (by name) that have a trusted version."""
    return [directory / name for name in sorted(remote_names(directory)) if is_complete(directory / name)]


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
    """Publish each item of `local_dir` that changed since `published` (updated in place) and differs
    from its current version on storage, then delete the remote items the local side deleted (an old
    best-*.ckpt), so that storage holds what a resume needs and no more.

    Hidden names (a checkpoint being written to `.NAME.tmp-PID`) are skipped. Deleting needs a live
    local folder (one that holds last.ckpt): an empty or missing one never empties the storage.
    """
    published = {} if published is None else published
    names = []
    local_items = [p for p in sorted(local_dir.iterdir()) if not p.name.startswith(".")] if local_dir.is_dir() else []
    for item in local_items:
        signature = _signature(item)
        if published.get(item.name) != signature and signature:
            if publish(item, remote_dir / item.name) is not None:
                names.append(item.name)
            published[item.name] = signature
    if (local_dir / LAST).is_file():
        for gone in sorted(remote_names(remote_dir) - {p.name for p in local_items}):
            remove(remote_dir / gone)
            published.pop(gone, None)
            names.append(f"-{gone}")
    return names


def set_aside(folder: Path, now: datetime) -> Path:
    """Rename a stage folder to `NAME.retrain-YYYYmmdd-HHMMSS` beside it, so that the stage trains
    afresh and the old run stays readable (a mount without rename copies, then deletes)."""
    target = folder.with_name(f"{folder.name}.retrain-{now:%Y%m%d-%H%M%S}")
    shutil.move(folder, target)
    return target


CHECKPOINTS = "checkpoints"  # stages.fit's RunConfig.checkpoint_dir, inside the stage folder


def push_stage(local_stage: Path, remote_stage: Path) -> list[str]:
    """Publish a stage folder: its checkpoints item by item, everything else as one item each."""
    names = [f"{CHECKPOINTS}/{n}" for n in push(local_stage / CHECKPOINTS, remote_stage / CHECKPOINTS)]
    for item in sorted(local_stage.iterdir()) if local_stage.is_dir() else ():
        if item.name != CHECKPOINTS and not item.name.startswith(".") and _files(item):
            if publish(item, remote_stage / item.name) is not None:
                names.append(item.name)
    return names


class MirrorCheckpoints(Checkpoint):
    """Publishes what the fit saves in `local_dir` to `remote_dir`, so a preempted job's successor
    resumes from storage; deletes there what the fit deleted.

    A Checkpoint callback, listed after the fit's own savers (stages.fit), so at every hook it runs
    after the saves, the SIGTERM save included. Off the training step's critical path: each publish
    runs in a background thread; the next one first waits for it (a 1 GB last.ckpt every 30 minutes
    never waits in practice), and the end of the fit, normal or by exception, waits for the last one.
    A storage error (OSError, a copy that does not verify) is retried `retries` times, waiting
    `backoff_s`, then twice as long each time, before it ends the fit: an S3 mount's passing hiccup
    must not end a 12 h fit. Rank 0 only (it alone writes checkpoints).
    """

    def __init__(self, local_dir: str, remote_dir: str, retries: int = 5, backoff_s: float = 15.0) -> None:
        self.local_dir = Path(local_dir)
        self.remote_dir = Path(remote_dir)
        self.retries, self.backoff_s = retries, backoff_s
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
            for attempt in range(self.retries + 1):
                try:
                    push(self.local_dir, self.remote_dir, self._published)
                    return
                except (OSError, TransferError) as error:
                    if attempt == self.retries:
                        raise
                    delay = self.backoff_s * 2**attempt
                    log.warning("publishing to %s failed (%s); retry %d/%d in %.0f s", self.remote_dir, error, attempt + 1, self.retries, delay)
                    time.sleep(delay)
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
