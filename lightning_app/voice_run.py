"""Inside the voice job: serve the generator with vLLM, run the voice build against it, keep its
outputs on persistent storage.

    python -m lightning_app.voice_run --model NAME --local DIR --remote DIR [--port 8000]
        [--max-model-len N] [--gpu-memory-utilization F] [--timeout-s S] -- BUILD ARGS...

The journal of an earlier attempt is copied from `--remote` first, so the build resumes where the
last one stopped (datamodules/voice/journal.py). The build writes on local disk; its outputs and
journal are copied to `--remote` every `PUBLISH_EVERY_S` and when it ends, fails or is stopped
(SIGTERM), then a `voice.complete` marker when it succeeded (an S3-style mount has no atomic rename:
the marker, written last, says the files are whole). The vLLM command is lightning_app/vllm.py's.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lightning_app.transfer import copy_file
from lightning_app.vllm import ServeSpec, serve_argv

log = logging.getLogger(__name__)

SERVED_NAME = "voice-generator"
COMPLETE = "voice.complete"
PUBLISH_EVERY_S = 600
READY_TIMEOUT_S = 1800  # a 12B model loads in minutes; the first download of its weights takes longer
OUT_NAME = "synthetic_conversations.json"


def wait_ready(base_url: str, timeout_s: float, server: subprocess.Popen | None = None) -> None:
    """Until GET /models answers 200 (vLLM has loaded the model), or the server process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"the vLLM server exited with status {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=10) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(5)
    raise TimeoutError(f"{base_url} did not answer within {timeout_s:.0f} s")


def start_vllm(spec: ServeSpec, log_path: Path) -> tuple[str, Callable[[], None]]:
    """`vllm serve` in the background; (its base URL, a function that stops it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log_path, "ab")
    server = subprocess.Popen(serve_argv(spec), stdout=handle, stderr=subprocess.STDOUT)
    base_url = f"http://{spec.host}:{spec.port}/v1"
    wait_ready(base_url, READY_TIMEOUT_S, server)

    def stop() -> None:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        handle.close()

    return base_url, stop


def publish(local: Path, remote: Path) -> list[str]:
    """Copy every file of the build's output folder to storage (new objects, no rename)."""
    copied = []
    for path in sorted(local.glob("*")):
        if path.is_file() and not path.name.endswith(".tmp"):
            copy_file(path, remote / path.name)
            copied.append(path.name)
    return copied


def restore_journal(local: Path, remote: Path) -> bool:
    journal = remote / OUT_NAME.replace(".json", "_journal.jsonl")
    if journal.is_file():
        copy_file(journal, local / journal.name)
        return True
    return False


def build_argv(base_url: str, local: Path, build_args: list[str]) -> list[str]:
    """The voice build against the served model; the out path and endpoint are the job's."""
    return [
        sys.executable, "-m", "datamodules.voice", "build", *build_args,
        "--out", str(local / OUT_NAME), "--generator", "openai",
        "--openai.base_url", base_url, "--openai.model", SERVED_NAME,
    ]  # fmt: skip


def run(
    local: Path,
    remote: Path,
    build_args: list[str],
    start_server: Callable[[], tuple[str, Callable[[], None]]],
    publish_every_s: float = PUBLISH_EVERY_S,
) -> int:
    """Restore, serve, build, publish; the build's exit status."""
    local.mkdir(parents=True, exist_ok=True)
    (remote / COMPLETE).unlink(missing_ok=True)
    log.info("journal restored from storage: %s", restore_journal(local, remote))
    base_url, stop_server = start_server()
    done = threading.Event()

    def publish_periodically() -> None:
        while not done.wait(publish_every_s):
            publish(local, remote)

    publisher = threading.Thread(target=publish_periodically, daemon=True)
    publisher.start()
    status = 1
    try:
        status = subprocess.run(build_argv(base_url, local, build_args)).returncode
    finally:
        done.set()
        publisher.join()
        stop_server()
        copied = publish(local, remote)
        if status == 0:
            (remote / COMPLETE).write_text(json.dumps({"files": copied}))
        log.info("voice build status %d; on storage: %s", status, ", ".join(copied))
    return status


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, build_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m lightning_app.voice_run", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the instruct model vLLM serves (Hub id or folder)")
    parser.add_argument("--local", type=Path, required=True, help="job-local folder the build writes")
    parser.add_argument("--remote", type=Path, required=True, help="folder on persistent storage")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int)
    parser.add_argument("--gpu-memory-utilization", type=float)
    return parser.parse_args(own), build_args


def serve_spec(args: argparse.Namespace) -> ServeSpec:
    return ServeSpec(
        model=args.model,
        port=args.port,
        served_model_name=SERVED_NAME,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
    )


def main(argv: list[str] | None = None) -> int:
    args, build_args = parse_args(list(sys.argv[1:] if argv is None else argv))
    # SIGTERM (the platform stopping the job) unwinds through run's finally: outputs are published
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(args.local, args.remote, build_args, lambda: start_vllm(serve_spec(args), args.local.parent / "vllm.log"))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
