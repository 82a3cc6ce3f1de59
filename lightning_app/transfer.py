"""Copies that can be trusted on storage without atomic rename (S3-style mounts).

A copy streams the source once into a new destination file, hashing it on the way; nothing is
read back from the destination or rewritten in place (S3-style mounts refuse "r+b"). A copy cut
short is redone whole: what makes a copy trustworthy is the marker or manifest written after it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

CHUNK_BYTES = 8 << 20


class TransferError(RuntimeError):
    """A copy could not be verified."""


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def describe(path: Path) -> FileEntry:
    return FileEntry(size=path.stat().st_size, sha256=sha256_file(path))


def copy_file(src: Path, dst: Path, expected: FileEntry | None = None) -> FileEntry:
    """Stream `src` into a new `dst` and return src's entry, hashed from the very bytes written.

    `dst` is opened "wb" only (on an S3-style mount: a new object, or a plain overwrite; never the
    read-modify-write "r+b" that such mounts refuse), and nothing is read back: one read of src, one
    write, then a size check. `expected` (src's entry from a manifest) must match what was read:
    a src that changed since it was listed is refused.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK_BYTES):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
    entry = FileEntry(size=size, sha256=digest.hexdigest())
    if dst.stat().st_size != size:
        raise TransferError(f"{dst}: {dst.stat().st_size} bytes after copying {size} from {src}: run again")
    if expected is not None and entry != expected:
        raise TransferError(
            f"{src}: its size/sha256 ({entry.size}, {entry.sha256}) differ from the expected "
            f"({expected.size}, {expected.sha256}): it changed since it was listed, or the copy was corrupted: run again"
        )
    return entry


def read_manifest(path: Path) -> dict[str, FileEntry]:
    """Entries of a manifest; a missing or half-written one (no atomic rename) reads as empty."""
    try:
        files = json.loads(path.read_text())["files"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return {}
    return {name: FileEntry(**entry) for name, entry in files.items()}


def write_manifest(path: Path, entries: dict[str, FileEntry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    files = {name: asdict(entries[name]) for name in sorted(entries)}
    path.write_text(json.dumps({"files": files}, indent=1) + "\n")
