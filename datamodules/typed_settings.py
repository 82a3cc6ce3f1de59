"""Settings mappings as frozen dataclasses, read one way: the registry, the evaluation settings and
the job settings (the stage configs are LightningCLI's, which parses with the same jsonargparse).

jsonargparse checks every value against the dataclass's type hints, converts it (a YAML list to a
tuple, a `1:` key to an int, a registered type such as a gate threshold from its text) and builds
the instances, running each dataclass's own checks (`__post_init__`). The key check here runs first
because jsonargparse lets two slips through quietly: a missing `X | None` field becomes None, and an
unknown key whose value is an empty mapping is dropped; it also names the keys that are known. A
mapping of dataclasses (a gate's stages) is built entry by entry, so an error names the entry.
Every error is a ValueError that starts with where the values came from and the key's path.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields, is_dataclass
from functools import cache
from types import NoneType, UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from jsonargparse import ArgumentError, ArgumentParser
from jsonargparse.typing import register_type

T = TypeVar("T")
_ROOT = "settings"
_TEXT_TYPES: set[type] = set()
_BUILT: dict[Any, Any] = {}


def register_text_type(cls: type, parse: Callable[[Any], Any]) -> None:
    """`cls` (a dataclass or not) is written as one value in a file, read by `parse`, shown by str."""
    register_type(cls, serializer=str, deserializer=parse)
    _TEXT_TYPES.add(cls)


def is_section(hint: Any) -> bool:
    """A dataclass written as a mapping of its fields (not a registered text type)."""
    return is_dataclass(hint) and hint not in _TEXT_TYPES


def build(cls: type[T], values: Any, where: str, key: str = "") -> T:
    """`values` (a mapping) as a `cls`; otherwise ValueError("WHERE: KEY: what is wrong").

    jsonargparse takes tens of milliseconds per instance, and a registry of twenty sources is built
    by every command and test that prepares data, so the same values give a copy of the first build.
    """
    try:
        memo = (cls, where, key, json.dumps(values, sort_keys=True, default=repr))
    except TypeError:  # keys of mixed types cannot be sorted: built afresh
        memo = None
    if memo is None:
        return _build(cls, values, where, key)
    if memo not in _BUILT:
        _BUILT[memo] = _build(cls, values, where, key)
    return copy.deepcopy(_BUILT[memo])


def _build(cls: type[T], values: Any, where: str, key: str) -> T:
    values = _checked(cls, values, where, key)
    parser = _parser(cls)
    try:
        return getattr(parser.instantiate(parser.parse_object({_ROOT: values})), _ROOT)
    except (ArgumentError, TypeError, ValueError) as error:
        raise ValueError(f"{_at(where, key)}: {_plain(str(error))}") from None


def entries_of(hint: Any) -> type | None:
    """The dataclass a `dict[K, Dataclass]` hint maps to; None for any other hint."""
    if get_origin(hint) is dict and len(get_args(hint)) == 2 and is_section(get_args(hint)[1]):
        return get_args(hint)[1]
    return None


def _section(hint: Any) -> type | None:
    """The dataclass a field holds as a mapping of its fields, also where it may be null (`X | None`)."""
    options = [a for a in get_args(hint) if a is not NoneType] if get_origin(hint) in (Union, UnionType) else [hint]
    return options[0] if len(options) == 1 and is_section(options[0]) else None


@cache
def _parser(cls: type) -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, _ROOT)
    return parser


def _at(where: str, key: str) -> str:
    return f"{where}: {key}" if key else where


def _plain(message: str) -> str:
    """jsonargparse's message without our parser's root key or its nesting banners."""
    message = message.replace(f"{_ROOT}.", "")
    message = re.sub(r'Parser key "([^"]+)":\s*', r"\1: ", message)
    return re.sub(r"\s*\n\s*", " ", message).strip()


def _checked(cls: type, values: Any, where: str, key: str) -> dict[str, Any]:
    """`values` with unknown and missing keys refused, nested sections checked the same way and
    the entries of a mapping of dataclasses built (each named by its key)."""
    known = [f.name for f in fields(cls) if f.init]
    if not isinstance(values, Mapping):
        raise ValueError(f"{_at(where, key)}: expected a mapping of {known}, got {values!r}")
    unknown = sorted(set(values) - set(known), key=str)
    if unknown:
        raise ValueError(f"{_at(where, key)}: unknown field(s) {unknown}; known: {sorted(known)}")
    required = [f.name for f in fields(cls) if f.init and f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in values]
    if missing:
        raise ValueError(f"{_at(where, key)}: lacks required field(s) {missing}")
    hints = get_type_hints(cls)
    out = dict(values)
    for name, value in values.items():
        inner = f"{key}.{name}" if key else name
        section, entry = _section(hints[name]), entries_of(hints[name])
        if section is not None and value is not None:
            out[name] = _checked(section, value, where, inner)
        elif entry is not None and isinstance(value, Mapping):
            out[name] = {k: build(entry, v, where, f"{inner}.{k}") for k, v in value.items()}
    return out
