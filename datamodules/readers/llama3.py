"""LLAMA3_Mental_Counseling_Data (Abdo36/LLAMA3_Mental_Counseling_Data): a parquet file whose
columns are unverified. The reader looks at the columns and takes the first layout that fits:
1. `Context` + `Response` columns (Amod's rows, as they are);
2. a `conversations` or `messages` column of turns (`{"from", "value"}` or `{"role", "content"}`);
3. a text column holding Llama-3 prompt text
   (`<|start_header_id|>user<|end_header_id|>\\n\\n...<|eot_id|>`), found by looking for the header token.
When none fits, the source fails, naming the columns found.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from datamodules.readers.base import (
    BadRecord,
    Reader,
    Record,
    convert_rows,
    group_of,
    require,
    turns_from_list,
)
from datamodules.readers.files import FileFormatError, Skip, iter_parquet_rows, parquet_columns

HEADER = "<|start_header_id|>"
TURN = re.compile(
    r"<\|start_header_id\|>\s*(\w+)\s*<\|end_header_id\|>(.*?)(?=<\|eot_id\|>|<\|start_header_id\|>|$)", re.DOTALL
)


def parse_llama3(text: str) -> tuple[tuple[str, str], ...]:
    """Llama-3 prompt text -> turns; the special tokens are dropped."""
    turns = tuple((role, content.replace("<|end_of_text|>", "")) for role, content in TURN.findall(text))
    if not turns:
        raise BadRecord("no Llama-3 header tokens in the text")
    return turns


def read_llama3_parquet(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
    columns = parquet_columns(path)
    if {"Context", "Response"} <= set(columns):

        def convert(origin: str, row: dict[str, Any]) -> Record:
            turns = (("user", require(row, "Context")), ("assistant", require(row, "Response")))
            return Record(origin, turns, group_of(row, options))

    elif chat := next((c for c in ("conversations", "messages") if c in columns), None):

        def convert(origin: str, row: dict[str, Any]) -> Record:
            value = require(row, chat)
            first = value[0] if isinstance(value, list) and value and isinstance(value[0], dict) else {}
            keys = ("from", "value") if "from" in first else ("role", "content")
            return Record(origin, turns_from_list(value, *keys), group_of(row, options))

    elif text := _llama3_text_column(path, columns):

        def convert(origin: str, row: dict[str, Any]) -> Record:
            value = require(row, text)
            if not isinstance(value, str):
                raise BadRecord(f"column '{text}' is not text")
            return Record(origin, parse_llama3(value), group_of(row, options))

    else:
        raise FileFormatError(
            f"{path}: no known layout in columns {columns}; expected Context+Response, conversations/"
            "messages, or a text column with Llama-3 header tokens (<|start_header_id|>)"
        )
    return convert_rows(iter_parquet_rows(path), convert)


def _llama3_text_column(path: Path, columns: list[str]) -> str | None:
    """The first column whose early values carry the Llama-3 header token."""
    head = [row for _, row in islice(iter_parquet_rows(path), 50)]
    for column in columns:
        if any(isinstance(row.get(column), str) and HEADER in row[column] for row in head):
            return column
    return None


READERS = {"llama3_parquet": Reader(read_llama3_parquet, {"group_key": None}, description=__doc__)}
