"""What a Lightning fit job runs: pull, fit under a hard time limit with signals forwarded, publish.

    exec python -m lightning_app.fit_job --local-stage DIR --remote-stage DIR --timeout-s S \
        --job-name NAME [--init-from REMOTE LOCAL] [--data-cache REMOTE LOCAL --stage N] \
        -- python -m stages.fit ...

The job's bash script `exec`s this, so the platform's SIGTERM (preemption, a stop) reaches a Python
process that forwards it to the fit, which saves at the end of its optimizer step and exits
EXIT_PREEMPTED; the wrapper then publishes the stage folder and exits with the fit's code. A bash
script that ran `timeout python ...` itself would die on SIGTERM without passing it on.

Exit codes decide the platform's retries (`max_run_attempts`): a preempted or crashed fit exits
non-zero and is retried, resuming from storage; a config error or a non-finite loss would fail the
same way again, so the first attempt records it on storage (`failed-<job name>.json`) and a retry of
that job exits at once with the same code instead of repeating the failure (a new job is not held back).

With --data-cache, the stage's tokenized data is fetched from storage before the fit and what the
fit built is published after it (lightning_app.data_cache); the fit itself reads and writes the
local copy. A cache that cannot be copied either way is rebuilt, never a reason to fail the job.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lightning_app import data_cache
from lightning_app.checkpoints import fetch, pull, push_stage
from lightning_app.transfer import TransferError
from stages.fit import EXIT_CONFIG, EXIT_NONFINITE, PERMANENT_FAILURES

KILL_AFTER_S = 300  # SIGKILL this long after the time limit's SIGTERM if the fit has not exited
EXIT_TIMEOUT = 124  # as `timeout` reports it
REASONS = {EXIT_CONFIG: "config or data error", EXIT_NONFINITE: "non-finite loss"}


def failure_marker(remote_stage: Path, job_name: str) -> Path:
    return remote_stage / f"failed-{job_name}.json"


def run_fit(command: list[str], timeout_s: float, kill_after_s: float = KILL_AFTER_S) -> int:
    """Run the fit as a child; SIGTERM/SIGINT to this process go to it; past `timeout_s` it gets
    SIGTERM, `kill_after_s` later SIGKILL. Returns its exit code (EXIT_TIMEOUT after the limit)."""
    child = subprocess.Popen(command)
    forward = lambda signum, frame: child.send_signal(signum)  # noqa: E731
    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            return child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            print(f"[fit_job] time limit of {timeout_s:.0f} s: SIGTERM to the fit", file=sys.stderr, flush=True)
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return EXIT_TIMEOUT
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def copy_cache(copy: Callable[[], list[str]], done: str, remote: Path) -> None:
    """Run one data-cache copy; a failure is reported and the data prepared again, not fatal."""
    try:
        names = copy()
    except (OSError, TransferError) as error:
        print(f"[fit_job] data cache {remote}: {error}; the data is prepared again instead", file=sys.stderr, flush=True)
        return
    print(f"[fit_job] data cache: {done} {', '.join(names) or 'nothing'} ({remote})", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        raise SystemExit("usage: python -m lightning_app.fit_job OPTIONS -- FIT COMMAND")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m lightning_app.fit_job", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--local-stage", type=Path, required=True)
    parser.add_argument("--remote-stage", type=Path, required=True)
    parser.add_argument("--timeout-s", type=float, required=True)
    parser.add_argument("--job-name", required=True)
    parser.add_argument("--init-from", nargs=2, type=Path, metavar=("REMOTE", "LOCAL"))
    parser.add_argument("--data-cache", nargs=2, type=Path, metavar=("REMOTE", "LOCAL"))
    parser.add_argument("--stage", type=int, help="with --data-cache: the stage whose cache entries to fetch")
    args = parser.parse_args(argv[:split])
    if args.data_cache and args.stage is None:
        parser.error("--data-cache needs --stage")
    command = argv[split + 1 :]
    marker = failure_marker(args.remote_stage, args.job_name)
    if marker.is_file():
        failed = json.loads(marker.read_text())
        print(f"[fit_job] an earlier attempt of {args.job_name} failed ({failed['reason']}, exit {failed['code']}): "
              f"not repeating it; see {marker}", file=sys.stderr)  # fmt: skip
        return int(failed["code"])
    started = time.monotonic()
    pulled = pull(args.remote_stage / "checkpoints", args.local_stage / "checkpoints")
    print(f"[fit_job] pulled {', '.join(pulled) or 'nothing'} from {args.remote_stage / 'checkpoints'}", flush=True)
    if args.init_from:
        fetch(*args.init_from)
    if args.data_cache:
        copy_cache(lambda: data_cache.pull(*args.data_cache, [args.stage]), "fetched", args.data_cache[0])
    code = run_fit(command, args.timeout_s - (time.monotonic() - started))
    if os.environ.get("NODE_RANK", "0") == "0":  # checkpoints exist on the first machine only
        names = push_stage(args.local_stage, args.remote_stage)
        print(f"[fit_job] published {', '.join(names) or 'nothing'} to {args.remote_stage}", flush=True)
        if args.data_cache:
            remote, local = args.data_cache
            copy_cache(lambda: data_cache.push(local, remote), "published", remote)
        if code in PERMANENT_FAILURES:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"code": code, "reason": REASONS[code]}) + "\n")
    print(f"[fit_job] the fit exited {code}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
