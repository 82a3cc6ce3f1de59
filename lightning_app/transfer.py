"""Copies that can be trusted on storage without atomic rename (S3-style mounts).

Every copy is verified by sha256 after it is written. A partly written file is resumed from its
length and re-verified; a file whose prefix does not match is copied again from the start.
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


def _append_from(src: Path, dst: Path, offset: int) -> None:
    with open(src, "rb") as fin, open(dst, "r+b" if offset else "wb") as fout:
        fin.seek(offset)
        fout.seek(offset)
        fout.truncate()
        while chunk := fin.read(CHUNK_BYTES):
            fout.write(chunk)


def copy_verified(src: Path, dst: Path, expected: FileEntry | None = None) -> FileEntry:
    """Copy `src` to `dst`, resuming a partial `dst`, and check dst's sha256 against src's.

    `expected` (src's entry, when the caller already hashed it) saves one read of src.
    """
    expected = expected or describe(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.stat().st_size if dst.exists() else 0
    offset = partial if partial <= expected.size else 0
    _append_from(src, dst, offset)
    if sha256_file(dst) == expected.sha256:
        return expected
    if offset:  # the resumed prefix was not src's: start over once
        _append_from(src, dst, 0)
        if sha256_file(dst) == expected.sha256:
            return expected
    raise TransferError(
        f"{dst}: sha256 after copy does not match {src} ({expected.sha256}); "
        "the destination storage corrupted the write or src changed during the copy: run again"
    )


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
