"""Before a job is submitted: is everything it reads on the job's storage?

A job that starts on an H100 and dies at minute 3 on a missing file costs a machine start-up and
the queue; this check costs a few `stat` calls. A data file counts when it is on the storage (with
the manifest's size, when the manifest lists it) or, when the storage is not visible from the
submitting machine, when the upload manifest lists it.
"""

from __future__ import annotations

from pathlib import Path

from lightning_app.checkpoints import is_complete, marker_path
from lightning_app.transfer import FileEntry, read_manifest
from lightning_app.upload import MANIFEST_NAME


class PreflightError(RuntimeError):
    """What the job would miss, one line each, and how to fix it."""


def missing_data(files_by_source: dict[str, list[str]], data_dir: Path, manifest: dict[str, FileEntry]) -> list[str]:
    storage_visible = data_dir.is_dir()
    lines = []
    for source, files in files_by_source.items():
        for rel in files:
            path, entry = data_dir / rel, manifest.get(rel)
            if path.is_file():
                if entry is not None and path.stat().st_size != entry.size:
                    lines.append(
                        f"source {source}: {path} has {path.stat().st_size} bytes, "
                        f"the upload manifest says {entry.size} (an interrupted upload)"
                    )
            elif storage_visible or entry is None:
                lines.append(f"source {source}: {rel} is neither at {path} nor in the upload manifest")
    return lines


def missing_inputs(
    files_by_source: dict[str, list[str]],
    data_dir: Path,
    previous_checkpoint: Path | None,
    manifest_path: Path | None = None,
) -> list[str]:
    """One line per input of the job that is not on its storage."""
    manifest = read_manifest(manifest_path or data_dir / MANIFEST_NAME)
    lines = missing_data(files_by_source, data_dir, manifest)
    if previous_checkpoint is not None and not is_complete(previous_checkpoint):
        lines.append(
            f"previous stage's checkpoint: {previous_checkpoint} is not complete "
            f"(no version of it with a valid {marker_path(previous_checkpoint).name} beside it)"
        )
    return lines


def preflight_message(stage: str, lines: list[str], upload_hint: str) -> str:
    fixes = []
    if any(line.startswith("source ") for line in lines):
        fixes.append(f"upload the stage's data: {upload_hint}")
    if any(line.startswith("previous stage") for line in lines):
        fixes.append("finish the previous stage first (its job copies checkpoint-final there when it ends)")
    return (
        f"{stage} cannot start, missing on the job's storage:\n"
        + "\n".join(f"  - {line}" for line in lines)
        + "\nfix:\n"
        + "\n".join(f"  - {fix}" for fix in fixes)
    )


def check_job_inputs(
    stage: str,
    files_by_source: dict[str, list[str]],
    data_dir: Path,
    previous_checkpoint: Path | None,
    upload_hint: str,
    manifest_path: Path | None = None,
) -> None:
    """Raise PreflightError listing every missing input of `stage`'s job, and the fixes."""
    lines = missing_inputs(files_by_source, data_dir, previous_checkpoint, manifest_path)
    if lines:
        raise PreflightError(preflight_message(stage, lines, upload_hint))
