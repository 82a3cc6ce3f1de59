"""lightning_app.fit_job: SIGTERM reaches the fit, the hard limit, and retries that never repeat a
permanent failure. The "fit" here is a tiny Python child, so each case takes a second."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_app import checkpoints, fit_job

pytestmark = pytest.mark.slow  # each wrapper start imports torch and Lightning (~20 s on 2 shared cores)

CHILD = """
import signal, sys, time
from pathlib import Path
stage = Path(sys.argv[1])
def term(*args):
    (stage / "checkpoints").mkdir(parents=True, exist_ok=True)
    (stage / "checkpoints" / "last.ckpt").write_text("saved on SIGTERM")
    sys.exit(143)
signal.signal(signal.SIGTERM, term)
(stage / "started").parent.mkdir(parents=True, exist_ok=True)
(stage / "started").write_text("yes")
if len(sys.argv) > 2:
    sys.exit(int(sys.argv[2]))
time.sleep(60)
"""


def wrapper(tmp_path: Path, *child_args: str, timeout_s: float = 60, job: str = "stage1-fit-1") -> list[str]:
    return [
        sys.executable, "-m", "lightning_app.fit_job", "--local-stage", str(tmp_path / "local"),
        "--remote-stage", str(tmp_path / "remote"), "--timeout-s", str(timeout_s), "--job-name", job,
        "--", sys.executable, "-c", CHILD, str(tmp_path / "local"), *child_args,
    ]  # fmt: skip


def test_sigterm_to_the_job_reaches_the_fit_and_its_checkpoint_is_published(tmp_path):
    job = subprocess.Popen(wrapper(tmp_path), cwd=Path(__file__).parents[1])
    deadline = time.monotonic() + 60
    while not (tmp_path / "local" / "started").exists():
        assert time.monotonic() < deadline and job.poll() is None
        time.sleep(0.1)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=60) == 143  # non-zero: the platform retries a preempted job
    remote = checkpoints.current(tmp_path / "remote" / "checkpoints" / "last.ckpt")
    assert remote.read_text() == "saved on SIGTERM"
    assert checkpoints.marker_path(remote).is_file()


def test_a_config_error_is_not_repeated_by_a_retry_of_the_same_job(tmp_path):
    assert subprocess.run(wrapper(tmp_path, "2"), cwd=Path(__file__).parents[1]).returncode == 2
    marker = fit_job.failure_marker(tmp_path / "remote", "stage1-fit-1")
    assert json.loads(marker.read_text()) == {"code": 2, "reason": "config or data error"}
    (tmp_path / "local" / "started").unlink()
    retry = subprocess.run(wrapper(tmp_path, "2"), cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert retry.returncode == 2 and "not repeating it" in retry.stderr
    assert not (tmp_path / "local" / "started").exists()  # the fit did not run again
    fresh = subprocess.run(wrapper(tmp_path, "0", job="stage1-fit-2"), cwd=Path(__file__).parents[1])
    assert fresh.returncode == 0  # a new job (after a fix) is not held back


def test_the_hard_limit_sends_sigterm_then_reports_a_timeout(tmp_path):
    result = subprocess.run(wrapper(tmp_path, timeout_s=3), cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert result.returncode == fit_job.EXIT_TIMEOUT and "time limit of 3 s" in result.stderr
    assert checkpoints.current(tmp_path / "remote" / "checkpoints" / "last.ckpt").read_text() == "saved on SIGTERM"
