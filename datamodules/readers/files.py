"""File formats: yield `(origin, row)` per record, or a `Skip` for a record the file itself spoils.

Why not `datasets.load_dataset`: it stops at the first malformed JSON line and cannot say which
`file:line` a bad record came from; bad records here are counted and skipped one by one.
Rows keep the file's own field names; the schema readers turn them into turns. Every origin is
`file:line` (JSON, JSON Lines, CSV: the line the record starts on) or `file:row N` (parquet).
Invalid UTF-8 costs one record, not the file: text is decoded with `surrogateescape`, and a record
that still holds an escaped byte is skipped. A leading UTF-8 BOM is dropped from every file
(`utf-8-sig`); JSON Lines and CSV are streamed, never read whole.
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


BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark: exported CSV/JSON often start with one
# utf-8-sig drops a leading BOM; surrogateescape keeps undecodable bytes visible (see has_bad_bytes).
ENCODING, ERRORS = "utf-8-sig", "surrogateescape"


def iter_json_records(path: Path) -> Iterator[tuple[str, Any] | Skip]:
    """A JSON file in whichever layout its content shows, whatever the extension says:
    a JSON array, JSON Lines (streamed line by line; Amod's `.json` is JSON Lines), or pandas'
    default `DataFrame.to_json()` column dict `{"column": {"0": value, ...}, ...}`."""
    with path.open("rb") as handle:
        first_line = handle.readline().removeprefix(BOM)
        while first_line and not first_line.strip():
            first_line = handle.readline()
    opening = first_line.lstrip()[:1]
    if opening == b"[":
        yield from _json_array(path, _decode(path.read_bytes()))
        return
    if opening == b"{":
        try:
            head = json.loads(_decode(first_line))
        except json.JSONDecodeError:
            head = None  # a pretty-printed object, or a broken first line of JSON Lines
        if head is None or is_column_dict(head):
            whole = head if head is not None and _only_line(path) else _whole_object(path)
            if whole is not None and is_column_dict(whole):
                yield from _column_rows(path, whole)
                return
    yield from _json_lines(path)


def _decode(data: bytes) -> str:
    return data.decode(ENCODING, errors=ERRORS)


def _only_line(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.readline()
        return not handle.read().strip()


def _whole_object(path: Path) -> Any:
    try:
        return json.loads(_decode(path.read_bytes()))
    except json.JSONDecodeError:
        return None


def is_column_dict(value: Any) -> bool:
    """pandas' column layout: every value a mapping from row index ("0", "1", ...) to a cell."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(column, dict) for column in value.values())
        and all(key.isdigit() for column in value.values() for key in list(column)[:3])
    )


def _column_rows(path: Path, columns: dict[str, dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Rows of a column dict, in the row-index order of its first column (origin `file:row N`)."""
    index: dict[str, None] = {}
    for column in columns.values():
        index.update(dict.fromkeys(column))
    for key in sorted(index, key=int):
        yield f"{path}:row {key}", {name: column.get(key) for name, column in columns.items()}


def _json_lines(path: Path) -> Iterator[tuple[str, Any] | Skip]:
    # Binary lines split on b"\n" only: JSON strings may hold U+2028 or \x0c, which str.splitlines
    # breaks on. A trailing \r (CRLF files) is JSON whitespace. Streamed: a file never sits in memory.
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = _decode(raw.removeprefix(BOM) if number == 1 else raw)
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


def _json_array(path: Path, text: str) -> Iterator[tuple[str, Any] | Skip]:
    """Element by element, so each record knows its line; a broken array is a file error."""
    decoder = json.JSONDecoder()
    start = len(text) - len(text.lstrip())
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
    with path.open(encoding=ENCODING, errors=ERRORS, newline="") as handle:
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
