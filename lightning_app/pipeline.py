"""Chain the stages through their gates: stage 1, evaluate, gate, stage 2, gate, stage 3, gate.

    python -m lightning_app.pipeline --config lightning_app/demo_pipeline.yaml --local
    python -m lightning_app.pipeline --config lightning_app/pipeline.yaml --cloud

A stage whose checkpoint-final and passing report exist is skipped, so the same command continues
a chain after a stop. A gate that does not say `proceed` stops the chain with the report's reasons
and the evaluation's exit code. `--local` runs every step as a subprocess on this machine;
`--cloud` submits every step as a Lightning Studio job (lightning_app.launch) and waits for it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from jsonargparse import ArgumentParser

from lightning_app.stage_config import StagePlan, read_stage

PROCEED = "proceed"


@dataclass
class StageStep:
    """One stage: its YAML, and extra arguments for its fit and its evaluation."""

    config: str
    fit_args: list[str] = field(default_factory=list)
    evaluate_args: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    """output_root: every stage folder (each stage's run.output_root is set to it).
    reports: one folder per stage with the evaluation's report.json.
    evaluate_args: arguments every evaluation gets (e.g. the evaluation settings file)."""

    stages: list[StageStep]
    output_root: str = "runs"
    reports: str = "reports"
    evaluate_args: list[str] = field(default_factory=list)


def load_pipeline(path: str | Path) -> PipelineConfig:
    """The pipeline YAML, type-checked by jsonargparse against PipelineConfig."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(PipelineConfig, "pipeline")
    parsed = parser.parse_object({"pipeline": _read_yaml(path)})
    config = parser.instantiate_classes(parsed).pipeline
    if not config.stages:
        raise ValueError(f"{path}: `stages` lists no stage")
    return config


def _read_yaml(path: str | Path) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}


@dataclass(frozen=True)
class StageState:
    plan: StagePlan
    final: Path
    report: Path

    def report_decision(self) -> tuple[str | None, list[str]]:
        if not self.report.is_file():
            return None, []
        report = json.loads(self.report.read_text())
        return report.get("decision"), list(report.get("reasons", []))

    @property
    def finished(self) -> bool:
        return (self.final / "adapter_config.json").is_file()


def run(command: list[str]) -> int:
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command).returncode


def run_local(pipeline: PipelineConfig) -> int:
    """Every step as a subprocess; returns 0 when every gate passed, else the failing step's code."""
    output_root = Path(pipeline.output_root)
    previous: StageState | None = None
    for step in pipeline.stages:
        plan = read_stage(step.config, [f"--run.output_root={output_root}", *step.fit_args])
        state = StageState(plan, output_root / plan.name / "checkpoint-final", Path(pipeline.reports) / plan.name / "report.json")
        decision, reasons = state.report_decision()
        if state.finished and decision == PROCEED:
            print(f"[pipeline] {plan.name}: done ({state.final}, {state.report}); skipped")
            previous = state
            continue
        if not state.finished:
            code = run([sys.executable, "-m", "stages.fit", "--config", step.config, f"--run.output_root={output_root}", *step.fit_args])
            if code != 0 or not state.finished:
                print(f"[pipeline] {plan.name}: the fit ended (exit {code}) without {state.final}; run the same command to resume")
                return code or 1
        code = run(evaluate_command(state, previous, [*pipeline.evaluate_args, *step.evaluate_args]))
        decision, reasons = state.report_decision()
        if code != 0 or decision != PROCEED:
            print(f"[pipeline] {plan.name}: gate says {decision or 'nothing (no report)'} (exit {code}); stopped")
            for reason in reasons:
                print(f"  - {reason}")
            return code or 1
        print(f"[pipeline] {plan.name}: gate passed; checkpoint {state.final}, report {state.report}")
        previous = state
    print("[pipeline] every stage passed its gate")
    return 0


def evaluate_command(state: StageState, previous: StageState | None, extra: list[str]) -> list[str]:
    raise NotImplementedError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="pipeline YAML, e.g. lightning_app/demo_pipeline.yaml")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="run every step here, as a subprocess (default)")
    where.add_argument("--cloud", action="store_true", help="run every step as a Lightning Studio job")
    args = parser.parse_args(argv)
    pipeline = load_pipeline(args.config)
    return run_local(pipeline)


if __name__ == "__main__":
    sys.exit(main())
