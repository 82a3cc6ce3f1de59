"""The private priority_{1,2,3}_FINAL.jsonl files: `{"conversation": [{"role": "client"|"therapist",
"content"}], "source", "priority", "conversation_id", "metadata": {"quality_score", "turn_count"}}`.

Option `min_quality` (default 0.75, as the earlier pipeline kept; null keeps every record): a record
below it, or without a finite `metadata.quality_score` (NaN would pass `score < 0.75`), is skipped
and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datamodules.cleaning import finite_number
from datamodules.readers.base import (
    BadRecord,
    Reader,
    Record,
    convert_rows,
    group_of,
    require,
    turns_from_list,
)
from datamodules.readers.files import Skip, iter_json_records


def read_priority(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
    threshold = options["min_quality"]

    def convert(origin: str, row: Any) -> Record:
        turns = turns_from_list(require(row, "conversation"), "role", "content")
        if threshold is not None:
            metadata = row.get("metadata")
            if not isinstance(metadata, dict) or "quality_score" not in metadata:
                raise BadRecord("missing field 'metadata.quality_score'")
            try:
                score = finite_number(metadata["quality_score"])
            except ValueError as err:
                raise BadRecord(f"metadata.quality_score {err}") from None
            if score < threshold:
                raise BadRecord(f"quality_score below {threshold}")
        return Record(origin, turns, group_of(row, options))

    return convert_rows(iter_json_records(path), convert)


READERS = {
    "priority": Reader(
        read_priority, {"group_key": "conversation_id", "min_quality": 0.75}, description=__doc__
    )
}
