"""A report folder as stages.evaluate writes it (evals.report.write_report), for the review tests: the
shipped suites' first prompts, with distinct made-up replies for the checkpoint, previous stage and base."""

from __future__ import annotations

import json
from pathlib import Path

from evals.gate import PROCEED, Decision
from evals.human_review import apply_human_review
from evals.report import Evaluation, ModelResult, write_report
from evals.settings import HumanReviewGate, load_settings
from evals.suites import load_suites

LABELS = ("checkpoint", "previous stage", "base")
# Replies that do not name their model, so a page showing one gives nothing away.
OPENINGS = {
    "checkpoint": "That sounds like a lot to carry, and it makes sense that you feel worn down.",
    "previous stage": "Thank you for telling me this. Many people feel this way at some point.",
    "base": "Here is some general information that may help.",
}
SECOND = {
    "checkpoint": "Could we look at what the hardest part of the day is for you right now?",
    "previous stage": "Try to get enough sleep and talk to someone you trust.",
    "base": "Consider consulting a professional.",
}


def reply_of(label: str, probe_id: str) -> str:
    """The checkpoint reasons first, as a stage-2 model does."""
    reasoning = "<think>The client sounds exhausted; ask before advising.</think>\n\n" if label == "checkpoint" else ""
    return f"{reasoning}[{probe_id}] {OPENINGS[label]}\n\n{SECOND[label]}"


def write_stage_report(out: Path, stage: int = 2, per_suite: int = 2) -> list[str]:
    """Writes the report; returns the prompt ids, long conversations first (they are multi-turn)."""
    suites = load_suites(limit=per_suite)
    order = ["long_conversations", *[s for s in suites if s != "long_conversations"]]
    probes = [p for name in order for p in suites[name]]
    prompts = {p.id: (p.suite, p.last_user) for p in probes}
    models = [
        ModelResult(label, f"/runs/{label.replace(' ', '_')}", "mixture", {}, {p.id: reply_of(label, p.id) for p in probes})
        for label in LABELS
    ]
    gate = load_settings().gate.for_stage(stage)
    evaluation = Evaluation(stage, Decision(PROCEED, (f"every stage-{stage} gate passed",)), gate, models, prompts)
    write_report(evaluation, out)
    return list(prompts)


def regate(out: Path, **gate: object) -> tuple[Decision, dict]:
    """The gate re-run on the report with a stage-2 human-review gate; returns the decision and report.json."""
    settings = HumanReviewGate(**{"min_prompts": 3, "min_win_rate": 0.3, "unsafe_means_retrain": True,
                                  "required": False, **gate})
    decision = apply_human_review(out, settings)
    return decision, json.loads((out / "report.json").read_text())
