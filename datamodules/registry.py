"""The source registry: `registry.yaml` plus a stage YAML's `sources:` overrides, as SourceSpecs."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

REGISTRY_PATH = Path(__file__).with_name("registry.yaml")
DEFAULT_DATA_ROOT = "/mnt/gdrive/datasets"


@dataclass(frozen=True)
class SourceSpec:
    """One registry entry. `path` is relative to `root` (None: data_root) unless absolute.

    files: glob patterns inside the `path` folder, each of which must match; an item that is itself
    a list names alternatives, most preferred first: only the first that matches is read (one
    dataset in either of two layouts, never both copies).
    """

    name: str
    path: str
    schema: str
    stage: int
    domain: str
    language: str = "en"
    licence: str = "unstated"
    files: tuple[str | tuple[str, ...], ...] | None = None
    root: str | None = None
    weight: float = 1.0
    cap: int | None = None
    enabled: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def resolved_path(self, data_root: str | Path) -> Path:
        """Where the source lives on this machine."""
        base = Path(self.root if self.root is not None else data_root).expanduser()
        return base / Path(self.path).expanduser()  # an absolute `path` wins over the base

    def warnings(self) -> list[str]:
        """Language and licence facts a user must see before training on this source."""
        out = []
        if self.language != "en":
            out.append(
                f"source {self.name!r} is in language {self.language!r}, not English; turn it off with "
                f"`data: {{sources: {{{self.name}: {{enabled: false}}}}}}` in the stage YAML"
            )
        if re.search(r"\bNC\b|non-?commercial", self.licence, re.IGNORECASE):
            out.append(
                f"source {self.name!r} has a non-commercial licence ({self.licence}): no commercial use"
            )
        elif self.licence.startswith("unstated"):
            out.append(f"source {self.name!r} states no licence: check its terms before any use beyond research")
        return out


_FIELDS = {f.name for f in fields(SourceSpec)} - {"name"}


def load_registry(
    overrides: dict[str, dict[str, Any]] | None = None, registry_path: str | Path | None = None
) -> dict[str, SourceSpec]:
    """Read the registry and apply a stage YAML's `sources:` mapping.

    An override for a known name replaces the fields it gives (`options` is merged key by key); an
    override for a new name adds a source and must give at least path, schema, stage and domain.
    """
    path = Path(registry_path) if registry_path is not None else REGISTRY_PATH
    entries: dict[str, dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = copy.deepcopy(entries)
    for name, change in (overrides or {}).items():
        if not isinstance(change, dict):
            raise ValueError(f"sources override {name!r} must be a mapping of fields, got {change!r}")
        entry = entries.setdefault(name, {})
        for key, value in change.items():
            if key == "options" and isinstance(value, dict):
                entry["options"] = {**entry.get("options", {}), **value}
            else:
                entry[key] = value
    return {name: _spec(name, entry, path) for name, entry in entries.items()}


def _spec(name: str, entry: dict[str, Any], registry_path: Path) -> SourceSpec:
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ValueError(
            f"source {name!r} ({registry_path} or its stage overrides): unknown field(s) {sorted(unknown)}; "
            f"known fields are {sorted(_FIELDS)}"
        )
    missing = [key for key in ("path", "schema", "stage", "domain") if entry.get(key) is None]
    if missing:
        raise ValueError(f"source {name!r} lacks required field(s) {missing}; a new source needs all four")
    entry = {**entry, "options": dict(entry.get("options") or {})}
    if entry.get("files") is not None:
        entry["files"] = tuple(
            tuple(item) if isinstance(item, (list, tuple)) else item for item in entry["files"]
        )
    if entry.get("cap") is not None and int(entry["cap"]) < 1:
        raise ValueError(f"source {name!r}: cap must be a positive number of conversations or null")
    if float(entry.get("weight", 1.0)) <= 0:
        raise ValueError(f"source {name!r}: weight must be > 0 (set enabled: false to drop a source)")
    return SourceSpec(name=name, **entry)


def stage_sources(specs: dict[str, SourceSpec], stage: int) -> dict[str, SourceSpec]:
    """The enabled sources of one stage, in registry order (dedup keeps the first copy it sees)."""
    return {name: spec for name, spec in specs.items() if spec.enabled and spec.stage == stage}
