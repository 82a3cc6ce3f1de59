"""File formats: yield `(origin, row)` per record, or a `Skip` for a record the file itself spoils.

Why not `datasets.load_dataset`: it stops at the first malformed JSON line and cannot say which
`file:line` a bad record came from; bad records here are counted and skipped one by one.
Rows keep the file's own field names; the schema readers turn them into turns. Every origin is
`file:line` (JSON, JSON Lines, CSV: the line the record starts on) or `file:row N` (parquet).
Invalid UTF-8 costs one record, not the file: text is decoded with `surrogateescape`, and a record
that still holds an escaped byte is skipped.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


class FileFormatError(Exception):
    """The whole file is unreadable (not one bad record): the caller names the source and the fix."""


@dataclass(frozen=True)
class Skip:
    """A record that is counted and left out, with the reason it is left out."""

    origin: str
    reason: str


_BAD_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of an undecodable byte


def has_bad_bytes(text: str) -> bool:
    """True when decoded text still carries an undecodable byte."""
    return _BAD_BYTE.search(text) is not None


def iter_json_records(path: Path) -> Iterator[tuple[str, Any] | Skip]:
    """A JSON array file or JSON Lines, whatever the extension says (Amod's `.json` is JSON Lines)."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    start = len(text) - len(text.lstrip())
    if text[start : start + 1] == "[":
        yield from _json_array(path, text, start)
    else:
        yield from _json_lines(path, text)


def _json_lines(path: Path, text: str) -> Iterator[tuple[str, Any] | Skip]:
    # split("\n"), not splitlines(): JSON strings may hold U+2028 or \x0c, which splitlines breaks on.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        origin = f"{path}:{number}"
        if has_bad_bytes(line):
            yield Skip(origin, "invalid UTF-8")
            continue
        try:
            yield origin, json.loads(line)
        except json.JSONDecodeError:
            yield Skip(origin, "malformed JSON")


def _json_array(path: Path, text: str, start: int) -> Iterator[tuple[str, Any] | Skip]:
    """Element by element, so each record knows its line; a broken array is a file error."""
    decoder = json.JSONDecoder()
    pos, end = start + 1, len(text)
    line, line_pos = 1, 0
    while True:
        while pos < end and text[pos] in " \t\r\n,":
            pos += 1
        if pos < end and text[pos] == "]":
            return
        if pos >= end:
            raise FileFormatError(f"{path}: the JSON array is not closed (truncated file?)")
        line += text.count("\n", line_pos, pos)
        line_pos = pos
        begin = pos
        try:
            row, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise FileFormatError(
                f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno}); "
                "a JSON array cannot be read past a broken element: repair the file"
            ) from err
        origin = f"{path}:{line}"
        yield (origin, row) if not has_bad_bytes(text[begin:pos]) else Skip(origin, "invalid UTF-8")


def iter_csv_rows(path: Path, required: set[str]) -> Iterator[tuple[str, dict[str, str]] | Skip]:
    """CSV with quoted multi-line fields (the csv module, which knows the line each row starts on)."""
    csv.field_size_limit(sys.maxsize)  # therapist-sft rows are whole conversations
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        if not required <= columns:
            raise FileFormatError(
                f"{path}: expected columns {sorted(required)}, found {sorted(columns)}; "
                "is the schema in the registry right for this file?"
            )
        start = reader.line_num + 1
        try:
            for row in reader:
                origin = f"{path}:{start}"
                start = reader.line_num + 1
                if None in row or None in row.values():
                    yield Skip(origin, "CSV row has a different number of fields than the header")
                elif any(map(has_bad_bytes, row.values())):
                    yield Skip(origin, "invalid UTF-8")
                else:
                    yield origin, row
        except csv.Error as err:
            raise FileFormatError(
                f"{path}:{reader.line_num}: unreadable CSV ({err}); repair the file"
            ) from err


def iter_parquet_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Parquet in record batches, so a large file never sits in memory as Python objects at once."""
    parquet = pq.ParquetFile(path)
    index = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            yield f"{path}:row {index}", row
            index += 1


def parquet_columns(path: Path) -> list[str]:
    return list(pq.ParquetFile(path).schema_arrow.names)


def iter_rows(path: Path, csv_columns: set[str]) -> Iterator[tuple[str, Any] | Skip]:
    """Rows of a flat file by its type: CSV (needs `csv_columns`), parquet, else JSON / JSON Lines."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return iter_csv_rows(path, csv_columns)
    if suffix == ".parquet":
        return iter_parquet_rows(path)
    return iter_json_records(path)
