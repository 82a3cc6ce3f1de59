"""What a schema reader yields, and the small helpers every reader shares."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamodules.readers.files import Skip


@dataclass(frozen=True)
class Record:
    """One example as the source spells it: turns keep the source's role names (checked later).

    group:    the source's own id of the record's split group (None: grouped by text only).
    question: for a single question and answer, the text that names the question in every source
              (counsel-chat: the question body without its title, as Amod's Context has it);
              None: the user turn itself.
    notes:    cleaning events the reader saw (counted in the source's report under `cleaned`).
    """

    origin: str
    turns: tuple[tuple[Any, Any], ...]
    group: str | None = None
    domain: str | None = None
    question: str | None = None
    notes: tuple[str, ...] = ()


class BadRecord(Exception):
    """Raised while converting one row; becomes a counted Skip with this reason."""


ReaderFn = Callable[[Path, dict[str, Any]], Iterator["Record | Skip"]]


@dataclass(frozen=True)
class Reader:
    """A schema: the function and the options it accepts, with their defaults."""

    read: ReaderFn
    options: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    description: str = ""


def require(row: Any, key: str) -> Any:
    """A field that must be present and not null."""
    if not isinstance(row, dict):
        raise BadRecord(f"record is a {type(row).__name__}, not an object")
    value = row.get(key)
    if value is None:
        raise BadRecord(f"missing field '{key}'")
    return value


def group_of(row: dict[str, Any], options: dict[str, Any]) -> str | None:
    """The record's split group from the `group_key` option. None (no key, or a record without
    one) lets the caller group by the record's text: a missing id costs grouping, not the record."""
    key = options.get("group_key")
    value = row.get(key) if key else None
    return None if value is None or value == "" else str(value)


def domain_of(row: dict[str, Any], options: dict[str, Any]) -> str | None:
    """A per-record domain label from the `domain_field` option (stage-3 voice records carry one)."""
    key = options.get("domain_field")
    if not key:
        return None
    value = row.get(key)
    return str(value) if value not in (None, "") else None


def convert_rows(
    rows: Iterable[tuple[str, Any] | Skip], convert: Callable[[str, Any], Record]
) -> Iterator[Record | Skip]:
    """Apply a per-row converter; a BadRecord becomes a Skip, a file-level Skip passes through."""
    for item in rows:
        if isinstance(item, Skip):
            yield item
            continue
        origin, row = item
        try:
            yield convert(origin, row)
        except BadRecord as err:
            yield Skip(origin, str(err))


def turns_from_list(value: Any, role_key: str, content_key: str) -> tuple[tuple[Any, Any], ...]:
    """[{role_key: ..., content_key: ...}, ...] -> turns; shape errors become BadRecord."""
    if not isinstance(value, list) or not value:
        raise BadRecord("conversation is not a non-empty list of turns")
    turns = []
    for turn in value:
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            raise BadRecord(f"turn without '{role_key}' and '{content_key}'")
        turns.append((turn[role_key], turn[content_key]))
    return tuple(turns)
