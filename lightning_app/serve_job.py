"""Serve an export with vLLM's OpenAI-compatible server as a Lightning Studio job.

    python -m lightning_app.launch serve --export /teamspace/.../exports/stage3 [--machine L40S]
        [--port 8000] [--hours 4] [--studio S] [--teamspace owner/name] [--org O] [--dry-run]

--export is a `stages.export` folder on storage the job can read (its export.json says what it is): a PEFT
adapter is served on its base model (`--enable-lora --max-lora-rank` from its rank), a merged folder as a
plain model. A GGUF export is for llama.cpp/Ollama, not vLLM, and is refused. The command comes from
lightning_app.vllm (the one place that spells it); `timeout` ends the server after --hours.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from dataclasses import asdict
from pathlib import Path

from lightning_app.jobs_config import JOBS_YAML, load_jobs_config
from lightning_app.launch import REPO_ROOT, JobSpec, job_env, job_run_arguments, resolve_teamspace, submit
from lightning_app.vllm import ServeSpec, serve_command
from moe.export import read_export_info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.launch serve", description=__doc__.split("\n")[0])
    parser.add_argument("--export", required=True, type=Path, help="a stages.export folder (peft or merged)")
    parser.add_argument("--jobs", default=str(JOBS_YAML), help="jobs settings (default .lightning/jobs.yaml)")
    parser.add_argument("--machine", default="L40S", help="lightning_sdk Machine name (one GPU holds a 12B in bf16)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--hours", type=float, default=4.0, help="the server stops after this long")
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--studio", help="Studio whose environment the job runs in (default: this Studio)")
    parser.add_argument("--teamspace", help="owner/name (default: this Studio's teamspace)")
    parser.add_argument("--org", help="owner of --teamspace when it is given as a bare name")
    parser.add_argument("--dry-run", action="store_true", help="print the job spec as JSON; contact nothing")
    return parser.parse_args(argv)


def serve_spec(export: Path, port: int, max_model_len: int) -> ServeSpec:
    """What vLLM serves for an export folder, read from its export.json."""
    info = read_export_info(export)
    if info is None:
        raise SystemExit(f"{export}: no export.json; pass a folder written by python -m stages.export")
    name, folder = info["name"], str(export)
    common = {"port": port, "host": "0.0.0.0", "max_model_len": max_model_len, "dtype": info.get("serve_dtype", "auto")}
    if info["format"] == "peft":
        return ServeSpec(model=info["base_model_id"], lora_modules={name: folder}, lora_rank=info["rank"], **common)
    if info["format"] == "merged":
        return ServeSpec(model=folder, served_model_name=name, **common)
    raise SystemExit(f"{export}: a {info['format']} export is served by llama.cpp or Ollama (see its README.md), not vLLM")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = load_jobs_config(Path(args.jobs))
    if args.hours <= 0:
        raise SystemExit(f"--hours must be > 0, got {args.hours}")
    spec_vllm = serve_spec(args.export, args.port, args.max_model_len)
    timeout_s = round(args.hours * 3600)
    q = shlex.quote
    command = "\n".join([
        f"cd {q(jobs.workdir or str(REPO_ROOT))}",
        f"export HF_HOME={q(jobs.cache_dirs()['hf_home'])}",
        f"exec timeout --signal=TERM {timeout_s} {serve_command(spec_vllm)}",
    ])
    environ = dict(os.environ)
    env, env_missing = job_env(jobs, environ)
    spec = JobSpec(
        name=f"serve-{args.export.name}".lower().replace("_", "-"),
        stage="serve",
        machine=args.machine,
        num_machines=1,
        studio=args.studio or jobs.studio,
        teamspace=resolve_teamspace(args.teamspace or jobs.teamspace, args.org),
        command=command,
        env=env,
        env_missing=env_missing,
        interruptible=False,
        max_run_attempts=1,
        timeout_s=timeout_s,
        storage={"export": str(args.export)},
        tags=["therapeutic-moe", "serve"],
    )
    bound = job_run_arguments(spec, jobs, environ)
    if args.dry_run:
        print(json.dumps(asdict(spec) | {"served": spec_vllm.served_model_name or next(iter(spec_vllm.lora_modules))}))
        return 0
    submit(spec, bound, environ)
    return 0
