"""Only Lightning's public API: no module of ours reads a private (underscore) attribute or method
that Lightning defines, so a Lightning upgrade breaks only what its changelog announces."""

import re
from pathlib import Path

import lightning

ROOT = Path(__file__).resolve().parents[1]
OURS = ("moe", "datamodules", "stages", "lightning_app", "evals", "benchmarks")
# `self._x = ...`, `self._x: T`, `def _x(`, a class or module level `_x = ...` / `_x: T`
DEFINED = re.compile(r"self\.(_[A-Za-z]\w*)\s*(?::[^=\n]*)?=(?!=)|def (_[A-Za-z]\w*)\(|^\s*(_[A-Za-z]\w*)\s*[:=]", re.M)
READ = re.compile(r"\.(_[A-Za-z]\w*)\b")


def defined_names(paths) -> set[str]:
    names = set()
    for path in paths:
        for match in DEFINED.finditer(path.read_text(encoding="utf-8")):
            names.add(next(group for group in match.groups() if group))
    return {n for n in names if not n.startswith("__")}


def our_files() -> list[Path]:
    return sorted(p for folder in OURS for p in (ROOT / folder).rglob("*.py"))


def test_no_private_lightning_attribute_is_read():
    lightning_private = defined_names(Path(lightning.__file__).parent.rglob("*.py"))
    ours = defined_names(our_files())
    suspects = lightning_private - ours
    found = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: .{match.group(1)}"
        for path in our_files()
        for text in [path.read_text(encoding="utf-8")]
        for match in READ.finditer(text)
        if match.group(1) in suspects
    ]
    assert found == []


def test_the_check_sees_a_private_read(tmp_path):
    """The names the old code read are in Lightning's private set, so the grep would catch them."""
    lightning_private = defined_names(Path(lightning.__file__).parent.rglob("*.py"))
    assert {"_duration", "_get", "_should_check_val_fx"} <= lightning_private - defined_names(our_files())
