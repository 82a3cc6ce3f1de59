"""Submit one stage as a Lightning Studio job.

    python -m lightning_app.launch --config stages/stage2.yaml [--machine H100] [--studio S]
        [--teamspace owner/name] [--org O] [--num-machines N] [--interruptible] [--dry-run]
        [--jobs .lightning/jobs.yaml] [--manifest PATH]
    python -m lightning_app.launch voice --model NAME ...   (stage 3's data: lightning_app/voice_job.py)
    python -m lightning_app.launch serve --export DIR [--dry-run]      # vLLM on an export (serve_job)

The job runs `python -m stages.fit --config ...` under lightning_app.fit_job, which forwards SIGTERM
and enforces the hard time limit: the platform's `max_runtime` only reserves some machines and is no
time limit, and the fit's own wall-clock stop ends training earlier with a saved checkpoint. Secrets are
passed from this shell by name only. Before submitting, the preflight checks that every file the
stage reads and the previous stage's checkpoint-final are on the job's storage. `--dry-run` prints
the job spec as one JSON object (with the preflight's findings), checks the arguments against the
installed `Job.run` signature and contacts nothing.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shlex
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from jsonargparse import Namespace
from lightning_sdk import Job, Machine, Teamspace

from datamodules.sources import SourceError
from lightning_app.jobs_config import JOBS_YAML, JobsConfig, JobSettings, load_jobs_config
from lightning_app.preflight import missing_inputs, preflight_message
from lightning_app.stage_config import StagePlan, data_settings, stage_files, stage_plan
from stages.fit import parse_stage_config

REPO_ROOT = Path(__file__).resolve().parent.parent
PUBLISH_MARGIN_MIN = 20  # job minutes kept for writing checkpoint-final and copying it to storage


def hard_limit_s(settings: JobSettings) -> int:
    """The job's hard limit: setup, then `hours` of training, then writing and publishing."""
    return round((settings.setup_hours + settings.hours) * 3600 + PUBLISH_MARGIN_MIN * 60)


@dataclass(frozen=True)
class JobSpec:
    """What is submitted; safe to print: environment variables appear by name only."""

    name: str
    stage: str
    machine: str
    num_machines: int
    studio: str | None
    teamspace: str | None
    command: str
    env: list[str]
    env_missing: list[str]
    interruptible: bool
    max_run_attempts: int
    timeout_s: int
    storage: dict[str, str]
    tags: list[str]


def resolve_machine(name: str) -> Machine:
    """A predefined `lightning_sdk.Machine` by name; `Machine.from_str` would accept any typo."""
    machine = getattr(Machine, name, None)
    if not isinstance(machine, Machine):
        known = sorted(n for n, v in vars(Machine).items() if isinstance(v, Machine))
        raise ValueError(f"unknown machine {name!r}; lightning_sdk knows: {', '.join(known)}")
    return machine


def resolve_teamspace(teamspace: str | None, org: str | None) -> str | None:
    """`owner/name`; `--org` is the owner (the SDK's own `org` argument is deprecated)."""
    if teamspace is None:
        if org is not None:
            raise ValueError("--org names the owner of a teamspace: give --teamspace NAME too")
        return None
    owner, slash, name = teamspace.partition("/")
    if not slash:
        if org is None:
            raise ValueError(f"teamspace {teamspace!r}: write it as owner/name, or add --org OWNER")
        return f"{org}/{teamspace}"
    if not owner or not name or "/" in name:
        raise ValueError(f"teamspace {teamspace!r}: expected owner/name")
    if org is not None and org != owner:
        raise ValueError(f"--org {org!r} disagrees with the owner in --teamspace {teamspace!r}")
    return teamspace


def platform_teamspace(slug: str) -> Teamspace:
    """The SDK's Teamspace for `owner/name` (it resolves whether the owner is an org or a user).

    Job.run compares its `teamspace` argument with the Studio's teamspace by bare name: a Teamspace
    object compares by its `.name` (bare); the `owner/name` string itself never matches.
    """
    return Teamspace(name=slug)


def gpus_per_machine(machine: Machine) -> int:
    """GPUs of one machine: the SDK counts a CPU machine's vCPUs as its accelerators."""
    return 0 if machine.is_cpu() else machine.accelerator_count


def job_preamble(jobs: JobsConfig) -> list[str]:
    """The first lines of every job's script: the checkout, and caches on scratch (or where jobs.yaml's
    `caches` puts them), never in the job's home, whose contents become job artifacts."""
    return [f"cd {shlex.quote(jobs.workdir or str(REPO_ROOT))}", f"export HF_HOME={shlex.quote(jobs.cache_dirs()['hf_home'])}"]


def job_config_path(config: str) -> str:
    """A stage YAML as the job sees it: relative to the checkout when inside it, else as given
    (e.g. a tweaked YAML kept on /teamspace storage, which the job sees at the same path)."""
    path = Path(config).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"stage config {config} not found")
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def config_flags(configs: list[str]) -> str:
    return " ".join(f"--config {shlex.quote(c)}" for c in configs)


def job_command(
    configs: list[str],
    stage: StagePlan,
    jobs: JobsConfig,
    settings: JobSettings,
    machine: Machine,
    num_machines: int,
    fit_args: list[str] | tuple[str, ...] = (),
    job_name: str = "job",
) -> str:
    """The job's bash script (Studio jobs run it with `set -e`): it `exec`s lightning_app.fit_job,
    so the platform's SIGTERM reaches Python and is forwarded to the fit (see that module).

    Checkpoints are written on the job's local disk (`scratch`) and published to storage with
    completion markers (no atomic rename on an S3 mount): during the fit by MirrorCheckpoints, at
    the end by fit_job, which publishes even when the fit failed or hit its time limit. An attempt
    first pulls the stage's complete checkpoints back, so `ckpt_path: last` resumes. Caches (the
    Hugging Face home, tokenized data) live on scratch, or wherever jobs.yaml's `caches` puts them,
    never in the job's home, whose contents become job artifacts; the tokenized data is copied from
    and to `caches.data` around the fit (lightning_app.data_cache).
    """
    q = shlex.quote
    timeout_s = hard_limit_s(settings)
    scratch, remote = jobs.scratch, jobs.storage.checkpoints
    local_stage, remote_stage = f"{scratch}/{stage.name}", f"{remote}/{stage.name}"
    caches = jobs.cache_dirs()
    gpus = gpus_per_machine(machine)
    if gpus == 0 and num_machines > 1:
        raise ValueError(f"{machine.name} is a CPU machine: a fit on CPU runs on one machine (--num-machines 1)")
    several_gpus = gpus > 1 or num_machines > 1
    if several_gpus:
        configs = [*configs, f".lightning/strategies/{settings.strategy}.yaml"]
    wrapper = [
        "python -m lightning_app.fit_job",
        f"--local-stage {q(local_stage)} --remote-stage {q(remote_stage)}",
        f"--timeout-s {timeout_s} --job-name {q(job_name)}",
    ]
    if stage.init_from is not None:
        wrapper.append(f"--init-from {q(remote + '/' + stage.init_from)} {q(scratch + '/' + stage.init_from)}")
    if jobs.caches.data:
        wrapper.append(f"--data-cache {q(jobs.caches.data)} {q(caches['data'])} --stage {stage.stage}")
    fit = [
        "-- python -m stages.fit",
        config_flags(configs),
        f"--run.output_root {q(scratch)} --data.data_root {q(jobs.storage.data)}",
        f"--data.cache_dir {q(caches['data'])}",
        # training time only; the fit stops itself, saves and publishes before the hard limit
        f"--run.job_time_limit_minutes {max(1, round(settings.hours * 60))}",
        "--trainer.callbacks+=lightning_app.checkpoints.MirrorCheckpoints",
        f"--trainer.callbacks.local_dir={q(local_stage + '/checkpoints')}",
        f"--trainer.callbacks.remote_dir={q(remote_stage + '/checkpoints')}",
        *map(q, fit_args),
    ]
    if several_gpus:
        fit.append(f"--trainer.devices {gpus} --trainer.num_nodes {num_machines}")
    return "\n".join([*job_preamble(jobs), "exec " + " ".join([*wrapper, *fit])])


def job_env(
    jobs: JobsConfig, environ: dict[str, str], pass_env: list[str] | tuple[str, ...] = ()
) -> tuple[list[str], list[str]]:
    """The environment names a job gets (jobs.yaml's pass_env and `pass_env` that are set in this
    shell, then jobs.yaml's environment) and the pass_env names that are not set here, reported
    rather than sent empty."""
    secrets = list(dict.fromkeys([*jobs.pass_env, *pass_env]))
    return [*(n for n in secrets if n in environ), *jobs.environment], [n for n in secrets if n not in environ]


def build_spec(
    args: argparse.Namespace,
    plan: StagePlan,
    jobs: JobsConfig,
    environ: dict[str, str],
    now: datetime,
    fit_args: list[str] | tuple[str, ...] = (),
    command: str | None = None,
    kind: str = "fit",
    pass_env: list[str] | tuple[str, ...] = (),
) -> JobSpec:
    """The job for `args.config`: its fit (job_command, with `fit_args`) unless another `command` is given.
    jobs.yaml's entry is the first config's name (stages/stage2.yaml: stage2).

    Any other kind (an evaluation) runs on `--eval-machine` (default jobs.yaml's `eval_machine`), one
    machine, not interruptible, one attempt: the fit's 8-GPU machines and retries are the fit's.
    `pass_env` adds names passed from this shell, like jobs.yaml's pass_env (e.g. the judge's key)."""
    stage = Path(args.config[0]).stem
    settings = jobs.for_stage(stage)
    fit = kind == "fit"
    machine = (args.machine or settings.machine) if fit else (args.eval_machine or jobs.eval_machine)
    num_machines = args.num_machines if fit else 1
    interruptible = args.interruptible and fit
    if args.num_machines < 1:
        raise ValueError(f"--num-machines must be >= 1, got {args.num_machines}")
    if args.interruptible and settings.max_run_attempts < 2:
        raise ValueError(
            f"--interruptible needs max_run_attempts > 1 for {stage} in {args.jobs} "
            "(a preempted job must be able to restart and resume)"
        )
    configs = [job_config_path(c) for c in args.config]
    env, env_missing = job_env(jobs, environ, pass_env)
    name = f"{stage}-{kind}-{now:%Y%m%d-%H%M%S}".lower().replace("_", "-")
    return JobSpec(
        name=name,
        stage=stage,
        machine=machine,
        num_machines=num_machines,
        studio=args.studio or jobs.studio,
        teamspace=resolve_teamspace(args.teamspace or jobs.teamspace, args.org),
        command=command
        or job_command(configs, plan, jobs, settings, resolve_machine(machine), num_machines, fit_args, name),
        env=env,
        env_missing=env_missing,
        interruptible=interruptible,
        max_run_attempts=settings.max_run_attempts if interruptible else 1,
        timeout_s=hard_limit_s(settings),
        storage={"data": jobs.storage.data, "checkpoints": jobs.storage.checkpoints, "scratch": jobs.scratch},
        tags=[PROJECT_TAG, stage, kind],
    )


def job_run_arguments(spec: JobSpec, jobs: JobsConfig, environ: dict[str, str]) -> inspect.BoundArguments:
    """`Job.run`'s arguments, bound to the installed signature so that a wrong name fails here.

    Env values are read here only, from `environ`, and never enter the spec.
    """
    env = {name: environ[name] for name in spec.env if name in environ and name not in jobs.environment}
    env |= dict(jobs.environment)
    return inspect.signature(Job.run).bind(
        name=spec.name,
        machine=resolve_machine(spec.machine),
        command=spec.command,
        studio=spec.studio,
        teamspace=spec.teamspace,
        env=env,
        interruptible=spec.interruptible,
        max_run_attempts=spec.max_run_attempts,
        num_machines=spec.num_machines,
        tags=spec.tags,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.launch", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--config", required=True, action="append", help="stage YAML; repeat to layer (stages/demo.yaml)")
    parser.add_argument("--jobs", default=str(JOBS_YAML), help="jobs settings (default .lightning/jobs.yaml)")
    parser.add_argument("--machine", help="lightning_sdk Machine name, e.g. H100, H100_X_8 (default: jobs.yaml)")
    parser.add_argument("--studio", help="Studio whose environment the job runs in (default: this Studio)")
    parser.add_argument("--teamspace", help="owner/name (default: this Studio's teamspace)")
    parser.add_argument("--org", help="owner of --teamspace when it is given as a bare name")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--eval-machine", help="machine of evaluation jobs (default: jobs.yaml's eval_machine, H100)")
    parser.add_argument("--interruptible", action="store_true", help="spot machines; retried and resumed")
    parser.add_argument("--manifest", type=Path, help="upload manifest to trust when the storage is not mounted here")
    parser.add_argument("--dry-run", action="store_true", help="print the job spec as JSON; contact nothing")
    return parser.parse_args(argv)


def job_inputs(config: Namespace, configs: list[str], jobs: JobsConfig, manifest: Path | None) -> list[str]:
    """The preflight: every file the stage reads and the previous stage's checkpoint-final on the
    job's storage. The file list comes from this machine's data_root (where the upload read it), else
    from the storage itself when it is mounted here."""
    try:
        files = stage_files(data_settings(config))
    except SourceError:
        on_storage = config.clone()
        on_storage.data.data_root = jobs.storage.data
        try:
            files = stage_files(data_settings(on_storage))
        except SourceError as error:
            return [f"source list: {error}"]
    init_from = config.run.init_from
    previous = None if init_from is None else Path(jobs.storage.checkpoints) / init_from
    return missing_inputs(files, Path(jobs.storage.data), previous, manifest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["voice"]:  # the stage-3 data build on a GPU (lightning_app/voice_job.py)
        from lightning_app.voice_job import main as voice_main

        return voice_main(argv[1:])
    if argv[:1] == ["serve"]:  # python -m lightning_app.launch serve --export DIR (lightning_app.serve_job)
        from lightning_app.serve_job import main as serve

        return serve(argv[1:])
    args = parse_args(argv)
    jobs = load_jobs_config(Path(args.jobs))
    environ = dict(os.environ)
    config = parse_stage_config(args.config)
    spec = build_spec(args, stage_plan(config), jobs, environ, datetime.now(timezone.utc))
    bound = job_run_arguments(spec, jobs, environ)
    missing = job_inputs(config, args.config, jobs, args.manifest)
    if args.dry_run:
        print(json.dumps(asdict(spec) | {"preflight": missing or "ok"}))
        return 0
    if missing:
        hint = f"python -m lightning_app.upload {config_flags(args.config)} --to {jobs.storage.data}"
        raise SystemExit(preflight_message(spec.stage, missing, hint))
    submit(spec, bound, environ)
    return 0


ACTIVE = ("Pending", "Running", "Stopping")  # lightning_sdk Status values of a job still at work
PROJECT_TAG = "therapeutic-moe"


def running_jobs(teamspace: Teamspace, stage: str) -> list[Job]:
    """This project's jobs of `stage` (fit or evaluation, by tag) that are pending or running."""
    try:
        jobs = teamspace.list_jobs(tags=[PROJECT_TAG])
    except ValueError:  # the teamspace has no job with the project's tag yet
        return []
    return [job for job in jobs if stage in job.tags and str(job.status) in ACTIVE]


def submit(spec: JobSpec, bound: inspect.BoundArguments, environ: dict[str, str]) -> Job:
    """Submit the job (the only call that contacts the platform); prints the spec and the job's link.

    Refused while a job of the same stage is pending or running: two jobs would write one stage
    folder on storage, each overwriting last.ckpt and deleting what the other wrote."""
    if spec.env_missing:
        print(f"not set here, so not passed to the job: {', '.join(spec.env_missing)}", file=sys.stderr)
    if spec.studio is None and "LIGHTNING_CLOUD_SPACE_ID" not in environ:
        raise SystemExit("not inside a Studio: pass --studio NAME (and --teamspace owner/name)")
    arguments = dict(bound.arguments)
    teamspace = platform_teamspace(spec.teamspace) if spec.teamspace is not None else Teamspace()
    if spec.teamspace is not None:
        arguments["teamspace"] = teamspace
    busy = running_jobs(teamspace, spec.stage)
    if busy:
        listed = ", ".join(f"{job.name} ({job.status}, {job.link})" for job in busy)
        raise SystemExit(
            f"{spec.stage}: a job of this stage is still at work: {listed}. Wait for it to end, or stop it "
            "(lightning_sdk Job(name).stop()) and run this again: it resumes from the stage's checkpoints."
        )
    job = Job.run(**arguments)
    print(json.dumps(asdict(spec) | {"link": job.link}), flush=True)
    return job


if __name__ == "__main__":
    sys.exit(main())
