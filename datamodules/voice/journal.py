"""Append-only JSONL journal of generated client messages: what makes a build resumable.

Line 1 is a header with the generator's identity; every later line is one finished unit
`{"key", "lecture_id", "clients"}`. Lines are flushed and fsynced per round, so a killed build loses
at most the round in flight; a torn last line is ignored (and counted), never fatal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class JournalMismatch(ValueError):
    pass


class Journal:
    def __init__(self, path: Path, header: dict):
        self.path = Path(path)
        self.header = header
        self.records: dict[str, dict] = {}
        self.torn_lines = 0
        if self.path.exists() and self.path.stat().st_size:
            self.load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.write([{"header": header}])

    def load(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            stored = json.loads(lines[0])["header"]
        except (ValueError, KeyError, TypeError):
            raise JournalMismatch(
                f"{self.path} is not a voice build journal: delete it or set --journal"
            ) from None
        if stored != self.header:
            changed = sorted(
                k for k in stored.keys() | self.header.keys() if stored.get(k) != self.header.get(k)
            )
            raise JournalMismatch(
                f"{self.path} was written by another generator setting ({', '.join(changed)} differ): "
                "delete it to start over, or set --journal to a new file"
            )
        for line in lines[1:]:
            try:
                record = json.loads(line)
                self.records.setdefault(record["key"], record)
            except (ValueError, KeyError, TypeError):
                self.torn_lines += 1

    def write(self, records: list[dict]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            if self.path.stat().st_size and not self.ends_with_newline():
                handle.write("\n")  # a torn line from a killed run stays on its own line
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def add(self, records: list[dict]) -> None:
        fresh = [r for r in records if r["key"] not in self.records]
        if fresh:
            self.write(fresh)
            self.records.update((r["key"], r) for r in fresh)
