"""Submit the stage-3 voice build as a Lightning Studio job on the GPU that is idle before stage 3.

    python -m lightning_app.launch voice --model NAME [--config datamodules/voice/voice.yaml]
        [--machine H100] [--studio S] [--teamspace owner/name] [--org O] [--interruptible]
        [--jobs .lightning/jobs.yaml] [--dry-run] [-- MORE BUILD FLAGS]

The job serves the instruct model NAME with vLLM and runs the voice build against its
OpenAI-compatible endpoint (lightning_app/voice_run.py). Transcripts are read from the data storage
(the voice YAML's `transcripts`, under jobs.yaml's `storage.data`); the conversations, stats and
journal go to `storage.data/<the YAML's out folder>`, where stage 3 reads them, so a restarted job
resumes from the journal. `--dry-run` prints the job spec and the vLLM command as JSON and contacts
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import yaml

from lightning_app.jobs_config import JOBS_YAML, JobsConfig, load_jobs_config
from lightning_app.launch import REPO_ROOT, JobSpec, job_env, job_run_arguments, resolve_teamspace, submit
from lightning_app.vllm import serve_command
from lightning_app.voice_run import OUT_NAME, serve_spec

VOICE_YAML = "datamodules/voice/voice.yaml"
STAGE = "voice"


def on_storage(data_root: str, path: str) -> str:
    """A voice-YAML path as the job sees it: a relative path lives under the data storage."""
    return path if PurePosixPath(path).is_absolute() else f"{data_root}/{path}"


def voice_command(args: argparse.Namespace, jobs: JobsConfig, timeout_s: int) -> tuple[str, str]:
    """(the job's bash script, the vLLM command it runs)."""
    q = shlex.quote
    config_path = Path(args.config)
    if not config_path.is_file():
        raise FileNotFoundError(f"voice config {args.config} not found")
    voice = yaml.safe_load(config_path.read_text()) or {}
    for key in ("transcripts", "out", "speaker"):
        if not voice.get(key):
            raise ValueError(f"{args.config}: `{key}` is required for the voice job")
    transcripts = on_storage(jobs.storage.data, str(voice["transcripts"]))
    remote = str(PurePosixPath(on_storage(jobs.storage.data, str(voice["out"]))).parent)
    local = f"{jobs.scratch}/voice"
    config = str(config_path.resolve().relative_to(REPO_ROOT)) if config_path.resolve().is_relative_to(REPO_ROOT) else args.config
    run = [
        "python -m lightning_app.voice_run",
        f"--model {q(args.model)} --port {args.port}",
        f"--local {q(local)} --remote {q(remote)}",
    ]
    if args.max_model_len:
        run.append(f"--max-model-len {args.max_model_len}")
    if args.gpu_memory_utilization:
        run.append(f"--gpu-memory-utilization {args.gpu_memory_utilization}")
    run += ["--", f"--config {q(config)} --transcripts {q(transcripts)}", *map(q, args.build_args)]
    script = "\n".join(
        [
            f"cd {q(jobs.workdir or str(REPO_ROOT))}",
            f"export HF_HOME={q(jobs.cache_dirs()['hf_home'])}",
            # the platform's hard stop: SIGTERM reaches voice_run, which publishes what it has
            "exec timeout --signal=TERM --kill-after=120 " + str(timeout_s) + " " + " ".join(run),
        ]
    )
    return script, serve_command(serve_spec(args))


def parse_args(argv: list[str]) -> argparse.Namespace:
    own, build_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m lightning_app.launch voice", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="instruct model for vLLM to serve (Hub id or folder on storage)")
    parser.add_argument("--config", default=VOICE_YAML, help=f"voice build YAML (default {VOICE_YAML})")
    parser.add_argument("--jobs", default=str(JOBS_YAML), help="jobs settings (default .lightning/jobs.yaml)")
    parser.add_argument("--machine", help="lightning_sdk Machine name (default: jobs.yaml's voice entry or job)")
    parser.add_argument("--studio", help="Studio whose environment the job runs in (default: this Studio)")
    parser.add_argument("--teamspace", help="owner/name (default: this Studio's teamspace)")
    parser.add_argument("--org", help="owner of --teamspace when it is given as a bare name")
    parser.add_argument("--interruptible", action="store_true", help="spot machines; retried and resumed from the journal")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int)
    parser.add_argument("--gpu-memory-utilization", type=float)
    parser.add_argument("--dry-run", action="store_true", help="print the job spec as JSON; contact nothing")
    args = parser.parse_args(own)
    args.build_args = build_args
    return args


def build_voice_spec(args: argparse.Namespace, jobs: JobsConfig, environ: dict[str, str], now: datetime) -> tuple[JobSpec, str]:
    settings = jobs.for_stage(STAGE)
    if args.interruptible and settings.max_run_attempts < 2:
        raise ValueError(f"--interruptible needs max_run_attempts > 1 for {STAGE} in {args.jobs}")
    timeout_s = round(settings.hours * 3600)
    command, serve = voice_command(args, jobs, timeout_s)
    env, env_missing = job_env(jobs, environ)
    spec = JobSpec(
        name=f"{STAGE}-build-{now:%Y%m%d-%H%M%S}",
        stage=STAGE,
        machine=args.machine or settings.machine,
        num_machines=1,
        studio=args.studio or jobs.studio,
        teamspace=resolve_teamspace(args.teamspace or jobs.teamspace, args.org),
        command=command,
        env=env,
        env_missing=env_missing,
        interruptible=args.interruptible,
        max_run_attempts=settings.max_run_attempts if args.interruptible else 1,
        timeout_s=timeout_s,
        storage={"data": jobs.storage.data, "checkpoints": jobs.storage.checkpoints, "scratch": jobs.scratch},
        tags=["therapeutic-moe", STAGE, "vllm"],
    )
    return spec, serve


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    jobs = load_jobs_config(Path(args.jobs))
    environ = dict(os.environ)
    spec, serve = build_voice_spec(args, jobs, environ, datetime.now(timezone.utc))
    bound = job_run_arguments(spec, jobs, environ)
    if args.dry_run:
        print(json.dumps(asdict(spec) | {"serve": serve, "outputs": OUT_NAME}))
        return 0
    submit(spec, bound, environ)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
