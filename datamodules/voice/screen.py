"""`python -m datamodules.voice risk --in FILE.jsonl [--out FILE.jsonl]`: the builder's own risk
detector on any messages, so its recall and false alarms can be measured on labelled sets.

Input: one JSON object with a "text" per line. Output: each object with `"risk": {"detected",
"kind", "reason"}` added (stdout without --out). Only counts are logged, never message text.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from datamodules.voice.judged import VoiceJudge, detect


class ScreenInputError(ValueError):
    """A line that is not a JSON object with a text: the message names the file, line and fix."""


def read_messages(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ScreenInputError(f"{path} line {number}: not JSON ({error.msg}); write one JSON object a line") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise ScreenInputError(f'{path} line {number}: needs a non-empty "text" string, e.g. {{"text": "..."}}')
        rows.append(row)
    return rows


def screen(path: Path, out: Path | None, judge: VoiceJudge | None) -> Counter:
    """Every message of `path` with its risk verdict, written to `out` (or stdout); counts by kind."""
    rows = read_messages(path)
    verdicts = [detect(row["text"], judge) for row in rows]
    lines = [json.dumps({**row, "risk": v.as_dict()}, ensure_ascii=False) for row, v in zip(rows, verdicts)]
    if out is None:
        sys.stdout.write("".join(line + "\n" for line in lines))
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    counts = Counter(v.kind or "none" for v in verdicts)
    counts["messages"] = len(rows)
    return counts
