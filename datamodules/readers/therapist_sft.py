"""therapist-sft-format (wesley7137/therapist-sft-format): a CSV whose `text` column is a whole
conversation with `human:` / `gpt:` speaker markers, in any letter case (`Human:`, `GPT:`, ...).

A marker counts at the start of the text or after whitespace, so "gpt:" inside a word never splits
a turn. Text before the first marker, or a text with no marker, is a skipped record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datamodules.readers.base import BadRecord, Reader, Record, convert_rows, group_of, require
from datamodules.readers.files import Skip, iter_csv_rows

MARKER = re.compile(r"(?:^|(?<=\s))(human|gpt)\s*:", re.IGNORECASE)


def split_speakers(text: str) -> tuple[tuple[str, str], ...]:
    """'human: hi gpt: hello' -> (('human', 'hi'), ('gpt', 'hello')); roles lower-cased."""
    parts = MARKER.split(text)
    if len(parts) == 1:
        raise BadRecord("no human:/gpt: speaker markers")
    if parts[0].strip():
        raise BadRecord("text before the first human:/gpt: marker")
    return tuple((role.lower(), content) for role, content in zip(parts[1::2], parts[2::2]))


def read_therapist_sft(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
    def convert(origin: str, row: dict[str, str]) -> Record:
        return Record(origin, split_speakers(require(row, "text")), group_of(row, options))

    return convert_rows(iter_csv_rows(path, {"text"}), convert)


READERS = {"therapist_sft": Reader(read_therapist_sft, {"group_key": None}, description=__doc__)}
