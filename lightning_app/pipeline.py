"""Chain the stages through their gates: stage 1, evaluate, gate, stage 2, gate, stage 3, gate.

    python -m lightning_app.pipeline --config lightning_app/demo_pipeline.yaml --local
    python -m lightning_app.pipeline --config lightning_app/pipeline.yaml --cloud [launch options]

A stage whose checkpoint-final and passing report exist is skipped, so the same command continues
a chain after a stop. A gate that does not say `proceed` stops the chain with the report's reasons
and the evaluation's exit code (3 retrain, 4 incomplete), unless `--accept STAGE` names the stage:
then its checkpoint goes on to the next stage, said in a line, and its report keeps the gate's
verdict. `--local` runs every step as a subprocess on this machine. `--cloud` submits every step
as a Lightning Studio job (lightning_app.launch; its options, e.g. --machine or --interruptible,
pass through) and waits for it; run it in a Studio, where the jobs' storage is mounted: that is
where it finds their checkpoints and reports.
`--baseline-lora` (with --local) also trains each stage's plain LoRA of the mixture's trainable budget on
the same data and steps, and its report puts the plain LoRA's held-out loss and replies beside the mixture's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from datamodules.typed_settings import build
from evals.gate import EXIT_CODES, PROCEED, RETRAIN
from evals.settings import DEFAULT_SETTINGS, load_settings
from lightning_app import launch
from lightning_app.checkpoints import current, fetch, is_complete, remove, set_aside
from lightning_app.jobs_config import JOBS_YAML, JobsConfig, load_jobs_config
from lightning_app.preflight import preflight_message
from lightning_app.stage_config import StagePlan, plain_lora_overrides, read_stage, stage_plan
from stages.fit import parse_stage_config

REPORT = "report.json"


@dataclass
class StageStep:
    """One stage: its YAMLs (a stage YAML, then layers such as stages/demo.yaml), and extra
    arguments for its fit and for its evaluation."""

    config: list[str]
    fit_args: list[str] = field(default_factory=list)
    evaluate_args: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    """stages: in order; each starts from the previous one's checkpoint-final (its run.init_from).
    output_root: the stage folders (--local sets every stage's run.output_root to it; --cloud keeps
    them on jobs.yaml's storage.checkpoints). reports: one folder per stage (relative to the storage
    with --cloud). evaluate_args: arguments of every evaluation, e.g. [--settings, FILE].
    max_jobs_per_stage: --cloud relaunches a stage whose job ended at its time limit, up to this."""

    stages: list[StageStep]
    output_root: str = "runs"
    reports: str = "reports"
    evaluate_args: list[str] = field(default_factory=list)
    max_jobs_per_stage: int = 3


def load_pipeline(path: str | Path) -> PipelineConfig:
    """The pipeline YAML, type-checked by jsonargparse against PipelineConfig (datamodules.typed_settings)."""
    config = build(PipelineConfig, yaml.safe_load(Path(path).read_text()) or {}, str(path))
    if not config.stages:
        raise ValueError(f"{path}: `stages` lists no stage")
    return config


def read_report(folder: Path | None) -> tuple[str | None, list[str]]:
    """The gate's decision and reasons from a report folder (None when there is no report)."""
    if folder is None:
        return None, []
    path = folder / REPORT
    if not path.is_file():
        return None, []
    report = json.loads(path.read_text())
    return report.get("decision"), list(report.get("reasons", []))


def config_args(configs: list[str]) -> list[str]:
    return [arg for path in configs for arg in ("--config", path)]


def evaluate_args(configs: list[str], final: Path, previous: Path | None, out: Path, extra: list[str]) -> list[str]:
    """stages.evaluate's arguments: the checkpoint against the previous stage (stage 1: the base)."""
    baseline = "base" if previous is None else str(previous)
    return [*config_args(configs), "--checkpoint", str(final), "--baseline", baseline, "--out", str(out), *extra]


def stopped(name: str, decision: str | None, code: int, reasons: list[str]) -> int:
    print(f"[pipeline] {name}: the gate says {decision or 'nothing (no report)'} (exit {code}); stopped")
    for reason in reasons:
        print(f"  - {reason}")
    if decision == RETRAIN:
        print(f"[pipeline] to train {name} again from its start: the same command plus --retrain {name} "
              "(its current run is kept, renamed)")  # fmt: skip
    if decision is not None:
        print(f"[pipeline] to go on from this checkpoint anyway, having read its report: the same command plus --accept {name}")
    return code or 1


def set_aside_finished(stage_dir: Path, finished: bool, report: Path | None, now: datetime) -> None:
    """--retrain: a finished stage's folder is renamed (checkpoints.set_aside), its report kept inside
    it, so the stage trains afresh; an unfinished one (a retrain under way) is resumed, not set aside."""
    if not finished:
        print(f"[pipeline] {stage_dir.name}: --retrain: no finished run to set aside; the unfinished one is resumed")
        return
    aside = set_aside(stage_dir, now)
    if report is not None and is_complete(report):
        fetch(report, aside / "report")
        remove(report)
    elif report is not None and report.is_dir():
        shutil.move(report, aside / "report")
    print(f"[pipeline] {stage_dir.name}: --retrain: the finished run is kept as {aside}; training afresh")


def names_stage(step: StageStep, plan: StagePlan, names: list[str]) -> bool:
    """Whether `names` holds this stage's run name or its stage YAML's name (e.g. stage2)."""
    return plan.name in names or Path(step.config[0]).stem in names


def passes(step: StageStep, plan: StagePlan, decision: str | None, accept: list[str]) -> bool:
    """Whether the chain goes on from this stage: its gate said proceed, or the user accepted its
    verdict (--accept) after reading the report; never without a report."""
    return decision == PROCEED or (decision is not None and names_stage(step, plan, accept))


def verdict(decision: str | None) -> str:
    """The verdict of a stage the chain goes on from, an accepted one named as such."""
    if decision == PROCEED:
        return decision
    return (f"the gate says {decision}; accepted by --accept, so the next stage starts from this checkpoint "
            "(its report keeps the gate's verdict and reasons)")  # fmt: skip


def run(command: list[str]) -> int:
    print("$ " + shlex.join(command), flush=True)
    return subprocess.run(command).returncode


def reports_plain_lora(folder: Path) -> bool:
    """Whether the report in `folder` weighs the mixture against a plain LoRA (evals.plain_lora)."""
    path = folder / REPORT
    return path.is_file() and json.loads(path.read_text()).get("plain_lora") is not None


def fit_stage(step: StageStep, fit_args: list[str], final: Path, name: str) -> int:
    """stages.fit for one run; 0 when its checkpoint-final is in place."""
    code = run([sys.executable, "-m", "stages.fit", *config_args(step.config), *fit_args])
    if code != 0 or not (final / "adapter_config.json").is_file():
        print(f"[pipeline] {name}: the fit ended (exit {code}) without {final}; the same command resumes")
        return code or 1
    return 0


def run_local(
    pipeline: PipelineConfig,
    retrain: list[str] = (),
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    baseline_lora: bool = False,
    accept: list[str] = (),
) -> int:
    """Every step as a subprocess; 0 when every gate passed, else the stopping step's exit code.

    baseline_lora: each stage also trains its plain-LoRA baseline (lightning_app.stage_config.
    plain_lora_overrides: the same data and steps, one LoRA of the mixture's budget, its own chain of
    NAME_plain_lora folders) and the stage's report measures it beside the mixture (stages.evaluate
    --plain-lora); a passed stage whose report lacks it is evaluated again."""
    root = Path(pipeline.output_root)
    previous: Path | None = None
    retraining = False
    for step in pipeline.stages:
        fit_args = [f"--run.output_root={root}", *step.fit_args]
        plan = read_stage(step.config, fit_args)
        final, reports = plan.stage_dir / "checkpoint-final", Path(pipeline.reports) / plan.name
        finished = (final / "adapter_config.json").is_file()  # stages.fit renames it into place whole
        plain_args = [*fit_args, *plain_lora_overrides(parse_stage_config(step.config, fit_args))] if baseline_lora else None
        plain = read_stage(step.config, plain_args).stage_dir if plain_args else None
        plain_finished = plain is not None and (plain / "checkpoint-final" / "adapter_config.json").is_file()
        # --retrain of a stage retrains every later one too: they started from its old run.
        retraining = retraining or names_stage(step, plan, retrain)
        if retraining:
            set_aside_finished(plan.stage_dir, finished, reports, now())
            if plain is not None:
                set_aside_finished(plain, plain_finished, None, now())
            finished = plain_finished = False
        decision, reasons = read_report(reports)
        if finished and passes(step, plan, decision, accept) and (plain is None or reports_plain_lora(reports)):
            print(f"[pipeline] {plan.name}: {verdict(decision)}; done ({final}, {reports / REPORT}); skipped")
            previous = final
            continue
        if not finished and (code := fit_stage(step, fit_args, final, plan.name)):
            return code
        extra = [*pipeline.evaluate_args, *step.evaluate_args]
        if plain is not None:
            if not plain_finished and (code := fit_stage(step, plain_args, plain / "checkpoint-final", plain.name)):
                return code
            extra += ["--plain-lora", str(plain / "checkpoint-final")]
        code = run([sys.executable, "-m", "stages.evaluate", *evaluate_args(step.config, final, previous, reports, extra)])
        decision, reasons = read_report(reports)
        if code != EXIT_CODES.get(decision) or not passes(step, plan, decision, accept):  # a report this run wrote
            return stopped(plan.name, decision, code, reasons)
        print(f"[pipeline] {plan.name}: {verdict(decision)}; checkpoint {final}, report {reports / REPORT}")
        previous = final
    print(f"[pipeline] every stage passed its gate; checkpoints under {root}, reports under {pipeline.reports}")
    return 0


def evaluation_job_command(
    step: StageStep, plan: StagePlan, previous: StagePlan | None, jobs: JobsConfig, extra: list[str], reports: str
) -> str:
    """The evaluation job: fetch the checkpoints, evaluate on the uploaded data, publish the report.

    Caches (the base model, tokenized data) where the fit keeps them (launch.job_preamble); only the
    first machine publishes the report (an evaluation job runs on one, but a report is never written
    twice)."""
    q = shlex.quote
    scratch, remote = jobs.scratch, jobs.storage.checkpoints
    local_final, remote_final = f"{scratch}/{plan.name}/checkpoint-final", f"{remote}/{plan.name}/checkpoint-final"
    lines = [
        *launch.job_preamble(jobs),
        f"python -m lightning_app.checkpoints fetch {q(remote_final)} {q(local_final)}",
    ]
    previous_final = None
    if previous is not None:
        previous_final = Path(scratch) / previous.name / "checkpoint-final"
        lines.append(
            f"python -m lightning_app.checkpoints fetch {q(f'{remote}/{previous.name}/checkpoint-final')} "
            f"{q(str(previous_final))}"
        )
    out = Path(scratch) / reports / plan.name
    configs = [launch.job_config_path(c) for c in step.config]
    cache = jobs.cache_dirs()["data"]
    data = ["--data.data_root", jobs.storage.data, "--data.cache_dir", cache]
    evaluate = evaluate_args(configs, Path(local_final), previous_final, out, [*data, *extra])
    stored = jobs.caches.data
    if stored:  # this stage's data and the earlier stages' (their test splits are scored again)
        stages = [str(n) for n in range(1, plan.stage + 1)]
        lines.append(shlex.join(["python", "-m", "lightning_app.data_cache", "pull", stored, cache, "--stages", *stages]) + " || true")
    lines += [
        "status=0",
        shlex.join(["python", "-m", "stages.evaluate", *evaluate]) + " || status=$?",
        'if [ "${NODE_RANK:-0}" = 0 ]; then',
        f"  python -m lightning_app.checkpoints publish {q(str(out))} {q(f'{remote}/{reports}/{plan.name}')}",
        *([f"  python -m lightning_app.data_cache push {q(cache)} {q(stored)} || true"] if stored else []),
        "fi",
        "exit $status",
    ]
    return "\n".join(lines)


def judge_key_names(evaluate_extra: list[str]) -> list[str]:
    """The environment variable the evaluation's judge reads its key from (judge.api_key_env of the
    settings its `--settings` names, else the shipped ones): passed to the job by name."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--settings", default=str(DEFAULT_SETTINGS))
    settings = load_settings(parser.parse_known_args(evaluate_extra)[0].settings)
    return [settings.judge.api_key_env] if settings.judge.api_key_env else []


def run_cloud(
    pipeline: PipelineConfig,
    launch_argv: list[str],
    jobs: JobsConfig,
    environ: dict[str, str],
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    retrain: list[str] = (),
    accept: list[str] = (),
) -> int:
    """Every step as a Lightning job, waited for; results read from the storage mounted here."""
    storage = Path(jobs.storage.checkpoints)
    if not storage.parent.is_dir():
        raise SystemExit(f"--cloud reads the jobs' results from {storage}: run it where that storage is mounted (a Studio)")
    previous: StagePlan | None = None
    retraining = False
    for step in pipeline.stages:
        args = launch.parse_args([*config_args(step.config), *launch_argv])
        config = parse_stage_config(step.config)
        plan = stage_plan(config)
        final, reports = storage / plan.name / "checkpoint-final", storage / pipeline.reports / plan.name
        # --retrain of a stage retrains every later one too: they started from its old run.
        retraining = retraining or names_stage(step, plan, retrain)
        if retraining:
            set_aside_finished(storage / plan.name, is_complete(final), reports, now())
        decision, reasons = read_report(current(reports))
        if is_complete(final) and passes(step, plan, decision, accept):
            print(f"[pipeline] {plan.name}: {verdict(decision)}; done ({final}, {current(reports)}/{REPORT}); skipped")
            previous = plan
            continue
        for _ in range(pipeline.max_jobs_per_stage):
            if is_complete(final):
                break
            missing = launch.job_inputs(config, step.config, jobs, args.manifest)
            if missing:
                hint = f"python -m lightning_app.upload {launch.config_flags(step.config)} --to {jobs.storage.data}"
                print(preflight_message(plan.name, missing, hint))
                return 1
            spec = launch.build_spec(args, plan, jobs, environ, now(), fit_args=step.fit_args)
            job = launch.submit(spec, launch.job_run_arguments(spec, jobs, environ), environ)
            job.wait(interval=60)
            if str(job.status) != "Completed":
                print(f"[pipeline] {plan.name}: fit job {spec.name} ended {job.status}: {job.link}")
                return 1
        if not is_complete(final):
            print(f"[pipeline] {plan.name}: no complete {final} after {pipeline.max_jobs_per_stage} jobs; run again to go on")
            return 1
        extra = [*pipeline.evaluate_args, *step.evaluate_args]
        command = evaluation_job_command(step, plan, previous, jobs, extra, pipeline.reports)
        judge = judge_key_names(extra)
        spec = launch.build_spec(args, plan, jobs, environ, now(), command=command, kind="evaluate", pass_env=judge)
        job = launch.submit(spec, launch.job_run_arguments(spec, jobs, environ), environ)
        job.wait(interval=30)
        decision, reasons = read_report(current(reports))
        if not passes(step, plan, decision, accept):
            print(f"[pipeline] {plan.name}: evaluation job {spec.name}: {job.link}")
            return stopped(plan.name, decision, EXIT_CODES.get(decision, 1), reasons)
        print(f"[pipeline] {plan.name}: {verdict(decision)}; checkpoint {final}, report {current(reports)}/{REPORT}")
        previous = plan
    print(f"[pipeline] every stage passed its gate; checkpoints and reports under {storage}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.pipeline", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--config", required=True, help="pipeline YAML, e.g. lightning_app/demo_pipeline.yaml")
    parser.add_argument("--jobs", default=str(JOBS_YAML), help="with --cloud: jobs settings")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="run every step here as a subprocess (the default)")
    where.add_argument("--cloud", action="store_true", help="run every step as a Lightning Studio job")
    parser.add_argument(
        "--retrain", action="append", default=[], metavar="STAGE",
        help="train this stage (run name or config name, e.g. stage2) again from its start: its finished run "
        "is kept, renamed NAME.retrain-TIME, with its report; give it once (an unfinished retrain resumes)",
    )  # fmt: skip
    parser.add_argument(
        "--accept", action="append", default=[], metavar="STAGE",
        help="go on from this stage (run name or config name, e.g. stage1) although its gate did not say "
        "proceed, after reading its report: the next stage starts from its checkpoint; repeat per stage",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-lora", action="store_true",
        help="also train each stage's plain LoRA of the mixture's budget on the same data and steps, and put "
        "its held-out loss and replies beside the mixture's in the stage's report (--local)",
    )  # fmt: skip
    args, launch_argv = parser.parse_known_args(argv)
    pipeline = load_pipeline(args.config)
    if not args.cloud:
        if launch_argv:
            parser.error(f"unknown arguments for --local: {launch_argv}")
        return run_local(pipeline, list(args.retrain), baseline_lora=args.baseline_lora, accept=list(args.accept))
    if args.baseline_lora:
        parser.error("--baseline-lora runs with --local only (the cloud jobs do not train the baseline yet)")
    jobs = load_jobs_config(Path(args.jobs))
    return run_cloud(pipeline, [*launch_argv, "--jobs", args.jobs], jobs, dict(os.environ), retrain=list(args.retrain),
                     accept=list(args.accept))


if __name__ == "__main__":
    sys.exit(main())
