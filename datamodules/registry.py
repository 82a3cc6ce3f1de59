"""The source registry: `registry.yaml` plus a stage YAML's `sources:` overrides, as SourceSpecs
(type-checked and built by jsonargparse, datamodules.typed_settings)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datamodules.typed_settings import build

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

    def __post_init__(self) -> None:
        if self.cap is not None and self.cap < 1:
            raise ValueError("cap must be a positive number of conversations or null")
        if self.weight <= 0:
            raise ValueError("weight must be > 0 (set enabled: false to drop a source)")

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
    return {
        name: build(SourceSpec, {**entry, "name": name}, f"source {name!r} ({path} or its stage overrides)")
        for name, entry in entries.items()
    }


def stage_sources(specs: dict[str, SourceSpec], stage: int) -> dict[str, SourceSpec]:
    """The enabled sources of one stage, in registry order (dedup keeps the first copy it sees)."""
    return {name: spec for name, spec in specs.items() if spec.enabled and spec.stage == stage}
