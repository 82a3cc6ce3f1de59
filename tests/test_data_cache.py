"""lightning_app.data_cache: a job's tokenized data kept on storage, prepared on its own disk."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from lightning_app import checkpoints, data_cache, fit_job
from lightning_app.jobs_config import load_jobs_config
from lightning_app.pipeline import StageStep, evaluation_job_command
from lightning_app.stage_config import read_stage

ENTRY = "stage1-0123456789abcdef"


def entry(folder: Path, name: str, complete: bool = True) -> Path:
    path = folder / name
    (path / "train").mkdir(parents=True)
    (path / "train" / "data.arrow").write_bytes(b"tokens" * 100)
    if complete:
        (path / data_cache.COMPLETE).write_text("{}")
    return path


def test_only_finished_entries_are_published_and_only_the_asked_stages_fetched(tmp_path):
    local, store = tmp_path / "local", tmp_path / "store"
    entry(local, ENTRY)
    entry(local, f"{ENTRY}.k2j3_x")  # a staging folder left by a killed build (prepare renames it)
    entry(local, "stage2-fedcba9876543210", complete=False)
    assert data_cache.push(local, store) == [ENTRY]
    assert checkpoints.is_complete(store / ENTRY) and [p.name for p in checkpoints.complete_items(store)] == [ENTRY]
    assert data_cache.push(local, store) == []  # entries never change: nothing to copy again
    fresh = tmp_path / "next-job"
    assert data_cache.pull(store, fresh, [2, 3]) == []
    assert data_cache.pull(store, fresh, [1]) == [ENTRY]
    assert (fresh / ENTRY / "train" / "data.arrow").read_bytes() == b"tokens" * 100
    assert data_cache.pull(store, fresh, [1]) == []  # already here


CHILD = """
import sys
from pathlib import Path
cache, seen = Path(sys.argv[1]), Path(sys.argv[2])
entry = cache / "stage1-0123456789abcdef"
seen.write_text("found" if (entry / "report.json").is_file() else "built")
(entry / "train").mkdir(parents=True, exist_ok=True)
(entry / "train" / "data.arrow").write_bytes(b"tokens")
(entry / "report.json").write_text("{}")
"""


def run_job(tmp_path: Path, job: str) -> str:
    cache, seen = tmp_path / job / "data_cache", tmp_path / job / "seen"
    seen.parent.mkdir()
    argv = [
        "--local-stage", str(tmp_path / job / "stage"), "--remote-stage", str(tmp_path / "store" / "stage"),
        "--timeout-s", "120", "--job-name", job, "--data-cache", str(tmp_path / "store" / "data_cache"), str(cache),
        "--stage", "1", "--", sys.executable, "-c", CHILD, str(cache), str(seen),
    ]  # fmt: skip
    assert fit_job.main(argv) == 0
    return seen.read_text()


def test_a_later_job_finds_the_data_the_first_one_prepared(tmp_path):
    assert run_job(tmp_path, "first") == "built"
    assert checkpoints.is_complete(tmp_path / "store" / "data_cache" / ENTRY)
    assert run_job(tmp_path, "second") == "found"  # fetched onto its own disk before the fit


def test_jobs_copy_the_data_cache_from_and_to_storage_by_default():
    jobs = load_jobs_config()  # .lightning/jobs.yaml
    stored, local = jobs.caches.data, jobs.cache_dirs()["data"]
    assert stored.startswith("/teamspace/") and local.startswith(jobs.scratch)  # prepared on local disk
    configs = ["stages/stage2.yaml", "stages/demo.yaml"]
    lines = evaluation_job_command(StageStep(configs), read_stage(configs), None, jobs, [], "reports").splitlines()
    pull = f"python -m lightning_app.data_cache pull {shlex.quote(stored)} {shlex.quote(local)} --stages 1 2 || true"
    [evaluate] = [line for line in lines if "stages.evaluate" in line]
    assert lines.index(pull) < lines.index(evaluate) and f"--data.cache_dir {shlex.quote(local)}" in evaluate
    assert f"  python -m lightning_app.data_cache push {shlex.quote(local)} {shlex.quote(stored)} || true" in lines
