"""The stage report: report.json (decision, reasons, metrics for checkpoint and baseline), report.md,
PNG plots, and every reply in replies.jsonl. Raw conversation text is written here and nowhere else.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from evals.gate import Decision  # noqa: E402
from evals.heldout import loss_ratio  # noqa: E402
from evals.metrics import Metric  # noqa: E402
from evals.settings import StageGate  # noqa: E402


@dataclass
class ModelResult:
    """What was measured for one model (the checkpoint or its baseline)."""

    label: str
    source: str
    kind: str  # mixture | peft | merged | base
    metrics: dict[str, Metric]
    replies: dict[str, str] = field(default_factory=dict)
    # {"overall": {...}, "per_source": {name: {loss, perplexity, tokens}}, "per_domain": {...}}
    heldout: dict | None = None
    # {"domains": [...], "experts": [...], "share": [[...]]}: share of a domain's tokens per expert
    expert_use: dict | None = None
    details: dict = field(default_factory=dict)


@dataclass
class Evaluation:
    stage: int
    decision: Decision
    gate: StageGate
    checkpoint: ModelResult
    baseline: ModelResult | None
    prompts: dict[str, tuple[str, str]]  # probe id -> (suite, last user message)
    calibration: dict[str, Metric] = field(default_factory=dict)
    samples_per_suite: int = 3
    notes: list[str] = field(default_factory=list)


def _model_json(result: ModelResult | None) -> dict | None:
    if result is None:
        return None
    return {
        "source": result.source,
        "kind": result.kind,
        "heldout": result.heldout,
        "expert_use": result.expert_use,
        "details": result.details,
    }


def _metrics_json(result: ModelResult | None) -> dict | None:
    return None if result is None else {name: m.to_dict() for name, m in result.metrics.items()}


def plot_loss_per_domain(models: list[ModelResult], path: Path) -> bool:
    with_loss = [m for m in models if m.heldout and m.heldout.get("per_domain")]
    if not with_loss:
        return False
    domains = sorted({d for m in with_loss for d in m.heldout["per_domain"]})
    width = 0.8 / len(with_loss)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(domains)), 3.5))
    for i, model in enumerate(with_loss):
        losses = [model.heldout["per_domain"].get(d, {}).get("loss", math.nan) for d in domains]
        bars = ax.bar([x + i * width for x in range(len(domains))], losses, width, label=model.label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks([x + width * (len(with_loss) - 1) / 2 for x in range(len(domains))], domains, rotation=15)
    ax.set_ylabel("held-out loss (nats/token)")
    ax.set_title("Held-out loss per domain")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_expert_use(result: ModelResult, path: Path) -> bool:
    if not result.expert_use:
        return False
    use = result.expert_use
    fig, ax = plt.subplots(figsize=(1.2 * len(use["experts"]) + 2.5, 0.6 * len(use["domains"]) + 1.5))
    image = ax.imshow(use["share"], vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(use["experts"])), use["experts"], rotation=20)
    ax.set_yticks(range(len(use["domains"])), use["domains"])
    for row, values in enumerate(use["share"]):
        for col, value in enumerate(values):
            ax.text(
                col, row, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black"
            )
    ax.set_title(f"Expert use per domain ({result.label})")
    fig.colorbar(image, ax=ax, label="share of tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_scores(evaluation: Evaluation, path: Path) -> bool:
    models = [m for m in (evaluation.checkpoint, evaluation.baseline) if m is not None]
    names = sorted({n for m in models for n, metric in m.metrics.items() if metric.measured})
    if not names:
        return False
    height = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
    for i, model in enumerate(models):
        values = [
            model.metrics[n].value if n in model.metrics and model.metrics[n].measured else 0 for n in names
        ]
        bars = ax.barh([y + i * height for y in range(len(names))], values, height, label=model.label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    for y, name in enumerate(names):
        if name in evaluation.gate.thresholds:
            ax.plot([evaluation.gate.thresholds[name]] * 2, [y - 0.1, y + 0.9], color="red", lw=1.5)
    labels = [
        f"{n} (proxy)"
        if evaluation.checkpoint.metrics.get(n) and evaluation.checkpoint.metrics[n].method == "proxy"
        else n
        for n in names
    ]
    ax.set_yticks([y + height * (len(models) - 1) / 2 for y in range(len(names))], labels)
    ax.set_xlim(0, 1)
    ax.set_xlabel("score, 0..1 (red: stage threshold)")
    ax.set_title(f"Stage {evaluation.stage} scores")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _markdown(evaluation: Evaluation, plots: list[str]) -> str:
    ck, base = evaluation.checkpoint, evaluation.baseline
    lines = [
        f"# Stage {evaluation.stage} evaluation",
        "",
        f"**Decision: {evaluation.decision.decision}** (exit code {evaluation.decision.exit_code})",
        "",
    ]
    lines += [f"- {reason}" for reason in evaluation.decision.reasons]
    lines += ["", f"- checkpoint: `{ck.source}` ({ck.kind})"]
    if base:
        lines.append(f"- baseline: `{base.source}` ({base.kind})")
    lines += [f"- note: {note}" for note in evaluation.notes]
    lines += [
        "",
        "## Scores",
        "",
        "| metric | checkpoint | baseline | threshold | raw (checkpoint) | scale | method | n | unscored |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(set(ck.metrics) | set(base.metrics if base else {})):
        m = ck.metrics.get(name)
        b = base.metrics.get(name) if base else None
        threshold = evaluation.gate.thresholds.get(name)
        regress = " (no regression)" if name in evaluation.gate.no_regression else ""
        ref = m or b
        lines.append(
            f"| {name} | {_fmt(m.value if m else None)} | {_fmt(b.value if b else None)} | "
            f"{_fmt(threshold)}{regress} | {_fmt(m.raw if m else None)} | {ref.scale} | {ref.method} | "
            f"{m.n if m else 0} | {m.unscored if m else 0} |"
        )
    if evaluation.calibration:
        lines += [
            "",
            "## Judge calibration: held-out human replies",
            "",
            "| metric | human replies | checkpoint | method |",
            "|---|---|---|---|",
        ]
        for name, human in evaluation.calibration.items():
            model = ck.metrics.get(name)
            lines.append(
                f"| {name} | {_fmt(human.value)} | {_fmt(model.value if model else None)} | {human.method} |"
            )
    ratio = loss_ratio(ck.heldout, base.heldout if base else None)
    if ratio is not None:
        lines += ["", f"Held-out loss, checkpoint over baseline on the same batches: **{ratio:.4f}x**"]
    for result in (ck, base):
        if result and result.heldout:
            lines += [
                "",
                f"## Held-out loss: {result.label}",
                "",
                "| split | name | loss | perplexity | tokens |",
                "|---|---|---|---|---|",
            ]
            overall = result.heldout["overall"]
            lines.append(
                f"| all | all | {overall['loss']:.4f} | {overall['perplexity']:.2f} | {overall['tokens']} |"
            )
            for part in ("per_source", "per_domain"):
                for name, row in result.heldout.get(part, {}).items():
                    figures = f"{row['loss']:.4f} | {row['perplexity']:.2f} | {row['tokens']}"
                    lines.append(f"| {part[4:]} | {name} | {figures} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "## Sample replies", ""]
    by_suite: dict[str, list[str]] = {}
    for probe_id, (suite, _) in evaluation.prompts.items():
        by_suite.setdefault(suite, []).append(probe_id)
    for suite, ids in by_suite.items():
        lines += [f"### {suite}", ""]
        for probe_id in ids[: evaluation.samples_per_suite]:
            baseline_reply = base.replies.get(probe_id) if base else None
            lines += [
                f"**{probe_id}** user: {evaluation.prompts[probe_id][1]}",
                "",
                "| checkpoint | baseline |",
                "|---|---|",
                f"| {_cell(ck.replies.get(probe_id))} | {_cell(baseline_reply)} |",
                "",
            ]
    return "\n".join(lines) + "\n"


def _cell(text: str | None) -> str:
    return "" if text is None else text.replace("|", "\\|").replace("\n", "<br>")


def write_report(evaluation: Evaluation, out_dir: Path) -> Path:
    """Writes the report folder; returns the path of report.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    models = [m for m in (evaluation.checkpoint, evaluation.baseline) if m is not None]
    plots = []
    if plot_loss_per_domain(models, out_dir / "loss_per_domain.png"):
        plots.append("loss_per_domain.png")
    if plot_expert_use(evaluation.checkpoint, out_dir / "expert_use.png"):
        plots.append("expert_use.png")
    if plot_scores(evaluation, out_dir / "scores.png"):
        plots.append("scores.png")
    with open(out_dir / "replies.jsonl", "w", encoding="utf-8") as f:
        for probe_id, (suite, prompt) in evaluation.prompts.items():
            row = {
                "id": probe_id,
                "suite": suite,
                "user": prompt,
                **{m.label: m.replies.get(probe_id) for m in models},
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    report = {
        "stage": evaluation.stage,
        "decision": evaluation.decision.decision,
        "exit_code": evaluation.decision.exit_code,
        "reasons": list(evaluation.decision.reasons),
        "gate": {
            "thresholds": evaluation.gate.thresholds,
            "no_regression": list(evaluation.gate.no_regression),
            "max_heldout_loss_ratio": evaluation.gate.max_heldout_loss_ratio,
        },
        "metrics": {
            "checkpoint": _metrics_json(evaluation.checkpoint),
            "baseline": _metrics_json(evaluation.baseline),
        },
        "models": {
            "checkpoint": _model_json(evaluation.checkpoint),
            "baseline": _model_json(evaluation.baseline),
        },
        "calibration": {name: m.to_dict() for name, m in evaluation.calibration.items()},
        "notes": evaluation.notes,
        "plots": plots,
        "replies": "replies.jsonl",
    }
    (out_dir / "report.md").write_text(_markdown(evaluation, plots), encoding="utf-8")
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return path
