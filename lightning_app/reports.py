"""The stages' evaluation reports side by side (the notebook's comparison): one column per stage.

A stage's report folder is the one stages.evaluate wrote (report.json), locally (`pipeline --local`'s
`reports/NAME`) or on storage (`pipeline --cloud`'s `reports/NAME`, as published versions).
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning_app.checkpoints import current


def read_reports(folder: Path) -> dict[str, dict]:
    """report.json of every stage under `folder`, by stage folder name (published or plain)."""
    if not folder.is_dir():
        return {}
    names = sorted({p.name.split("~")[0] for p in folder.iterdir() if not p.name.startswith(".")} - {""})
    reports = {}
    for name in names:
        found = current(folder / name) or folder / name
        path = found / "report.json"
        if path.is_file():
            reports[name] = json.loads(path.read_text())
    return reports


def _checkpoint_row(report: dict) -> dict[str, str]:
    """The evaluated checkpoint's figures (the report's first model): held-out loss and every metric."""
    models = report.get("models") or {}
    if not models:
        return {}
    model = next(iter(models.values()))
    row = {}
    loss = ((model.get("heldout") or {}).get("overall") or {}).get("loss")
    if loss is not None:
        row["held-out loss"] = f"{loss:.4f}"
    for name, metric in sorted((model.get("metrics") or {}).items()):
        value = metric.get("value")
        row[name] = "n/a" if value is None else f"{value:.3f}"
    return row


def side_by_side(reports: dict[str, dict]) -> str:
    """A plain-text table: decision, held-out loss and each metric (rows) per stage (columns)."""
    if not reports:
        return "no reports yet"
    columns = list(reports)
    rows = {name: {"decision": str(report.get("decision")), **_checkpoint_row(report)} for name, report in reports.items()}
    keys = list(dict.fromkeys(k for row in rows.values() for k in row))
    width = max(len(k) for k in keys) + 2
    cell = max(12, *(len(c) + 2 for c in columns))
    lines = ["".ljust(width) + "".join(c.ljust(cell) for c in columns)]
    for key in keys:
        lines.append(key.ljust(width) + "".join(rows[c].get(key, "-").ljust(cell) for c in columns))
    return "\n".join(lines)
