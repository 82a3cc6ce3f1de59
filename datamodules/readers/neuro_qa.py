"""neuro_qa_SFT_Trainer (wesley7137/neuro_qa_SFT_Trainer): a JSON array whose shape is unverified,
so each record may be either `{"text": [{"role", "content"}, ...]}` (ShareGPT's `{"from", "value"}`
turns also accepted) or `{"question", "answer"}`. A record that is neither is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datamodules.readers.base import BadRecord, Reader, Record, convert_rows, group_of, turns_from_list
from datamodules.readers.files import Skip, iter_json_records


def read_neuro_qa(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
    def convert(origin: str, row: Any) -> Record:
        if not isinstance(row, dict):
            raise BadRecord(f"record is a {type(row).__name__}, not an object")
        text = row.get("text")
        if isinstance(text, list):
            first = text[0] if text and isinstance(text[0], dict) else {}
            keys = ("from", "value") if "from" in first else ("role", "content")
            turns = turns_from_list(text, *keys)
        elif row.get("question") is not None and row.get("answer") is not None:
            turns = (("user", row["question"]), ("assistant", row["answer"]))
        else:
            raise BadRecord("neither 'text' as a list of turns nor 'question'/'answer'")
        return Record(origin, turns, group_of(row, options))

    return convert_rows(iter_json_records(path), convert)


READERS = {"neuro_qa": Reader(read_neuro_qa, {"group_key": None}, description=__doc__)}
