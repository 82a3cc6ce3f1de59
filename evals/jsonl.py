"""The JSON Lines reader of evaluation's files (prompt suites, the crisis calibration set, a report's
replies and reviews): one JSON object a line, blank lines skipped, a bad line an error naming the
file, the line and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_jsonl(
    path: Path, error: type[ValueError] = ValueError, fix: str = "write one JSON object per line"
) -> list[tuple[str, dict[str, Any]]]:
    """Each non-blank line's object with where it stands (`path:line`, for the caller's own checks).
    A line that is not a JSON object raises `error` naming the file, the line and `fix`."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as bad:
            raise error(f"{where}: not valid JSON ({bad.msg}); {fix}") from None
        if not isinstance(record, dict):
            raise error(f"{where}: expected a JSON object; {fix}")
        records.append((where, record))
    return records
