"""The stage report: report.json (decision, reasons, metrics with intervals for every model),
report.md (the checkpoint side by side with the previous stage, stage 1 and the base model: held-out
loss, forgetting, scores with 95% intervals, expert use, the same prompts' replies), PNG plots, and
every reply in replies.jsonl. Raw conversation text is written here and in the inspect logs, nowhere else.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from evals.compare import LOSS, TIE, WIN, RepliesCompared  # noqa: E402
from evals.crisis_calibration import CrisisCalibration  # noqa: E402
from evals.crisis_report import crisis_section  # noqa: E402
from evals.gate import Decision  # noqa: E402
from evals.heldout import loss_ratio, overall_loss  # noqa: E402
from evals.metrics import Metric  # noqa: E402
from evals.plain_lora import PLAIN_LORA, plain_lora_summary  # noqa: E402
from evals.settings import StageGate, Threshold  # noqa: E402


@dataclass
class ModelResult:
    """What was measured for one model (the checkpoint, the previous stage, stage 1, the base)."""

    label: str
    source: str
    kind: str  # mixture | peft | merged | base
    metrics: dict[str, Metric]
    replies: dict[str, str] = field(default_factory=dict)  # probe id -> the first sample's reply
    samples: dict[str, list[str]] = field(default_factory=dict)  # probe id -> every sample's reply
    # {"overall": {...}, "per_source": {name: {loss, perplexity, tokens}}, "per_domain": {...}}
    heldout: dict | None = None
    # {"domains": [...], "experts": [...], "share": [[...]]}: share of a domain's tokens per expert
    expert_use: dict | None = None
    details: dict = field(default_factory=dict)
    # earlier stage -> held-out figures on that stage's test split (forgetting)
    heldout_earlier: dict[int, dict] = field(default_factory=dict)


@dataclass
class Evaluation:
    stage: int
    decision: Decision
    gate: StageGate
    models: list[ModelResult]  # the checkpoint first
    prompts: dict[str, tuple[str, str]]  # probe id -> (suite, last user message)
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    calibration: dict[str, Metric] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    forgetting: dict[str, float | None] = field(default_factory=dict)
    judge_model: str | None = None
    replies: RepliesCompared | None = None
    crisis_calibration: CrisisCalibration | None = None

    @property
    def checkpoint(self) -> ModelResult:
        return self.models[0]


def _model_json(result: ModelResult) -> dict:
    return {
        "source": result.source,
        "kind": result.kind,
        "heldout": result.heldout,
        "heldout_earlier": {str(k): v for k, v in result.heldout_earlier.items()},
        "expert_use": result.expert_use,
        "details": result.details,
        "metrics": {name: m.to_dict() for name, m in result.metrics.items()},
    }


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
    models = evaluation.models
    names = sorted({n for m in models for n, metric in m.metrics.items() if metric.measured})
    if not names:
        return False
    height = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) * len(models) + 1.5))
    for i, model in enumerate(models):
        metrics = [model.metrics.get(n) for n in names]
        values = [m.value if m and m.measured else 0 for m in metrics]
        errors = [
            [max(0.0, m.value - m.lower) if m and m.measured and m.lower is not None else 0 for m in metrics],
            [max(0.0, m.upper - m.value) if m and m.measured and m.upper is not None else 0 for m in metrics],
        ]
        ys = [y + i * height for y in range(len(names))]
        ax.barh(ys, values, height, xerr=errors, capsize=2, label=model.label)
    for y, name in enumerate(names):
        if name in evaluation.thresholds:
            ax.plot([evaluation.thresholds[name].value] * 2, [y - 0.1, y + 0.9], color="red", lw=1.5)
    labels = [
        f"{n} (proxy)" if any(m.metrics.get(n) and m.metrics[n].method == "proxy" for m in models) else n
        for n in names
    ]
    ax.set_yticks([y + height * (len(models) - 1) / 2 for y in range(len(names))], labels)
    ax.set_xlim(0, 1)
    ax.set_xlabel("score, 0..1, with 95% interval (red: stage threshold)")
    ax.set_title(f"Stage {evaluation.stage} scores")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _cell(text: str | None) -> str:
    return "" if text is None else text.replace("|", "\\|").replace("\n", "<br>")


def _reply_cell(reply: str | None) -> str:
    """A reply as the report shows it; a missing one says so instead of reading as an empty reply."""
    if reply is None:
        return "(no reply: its sample did not finish; the inspect log says why)"
    return _cell(reply) if reply.strip() else "(an empty reply)"


def _markdown(evaluation: Evaluation, plots: list[str]) -> str:
    ck, models = evaluation.checkpoint, evaluation.models
    header = " | ".join(m.label for m in models)
    lines = [
        f"# Stage {evaluation.stage} evaluation",
        "",
        f"**Decision: {evaluation.decision.decision}** (exit code {evaluation.decision.exit_code})",
        "",
    ]
    lines += _decision_lines(evaluation)
    lines += [f"- {m.label}: `{m.source}` ({m.kind}), measured in {m.details.get('seconds', '?')} s" for m in models]
    lines.append(f"- judge: {evaluation.judge_model or 'none configured'}")
    lines += [f"- note: {note}" for note in evaluation.notes]

    lines += ["", "## Held-out loss on this stage's test split (same batches for every model)", ""]
    lines += [f"| | {header} |", "|---|" + "---|" * len(models)]
    lines.append("| loss | " + " | ".join(_fmt(overall_loss(m.heldout), 4) for m in models) + " |")
    lines.append(
        "| checkpoint / model | "
        + " | ".join(_fmt(loss_ratio(ck.heldout, m.heldout), 4) for m in models)
        + " |"
    )
    earlier = sorted({k for m in models for k in m.heldout_earlier})
    if earlier:
        lines += ["", "## Forgetting: held-out loss on earlier stages' test splits", ""]
        lines += [f"| split | {header} |", "|---|" + "---|" * len(models)]
        for k in earlier:
            lines.append(
                f"| stage {k} | " + " | ".join(_fmt(overall_loss(m.heldout_earlier.get(k)), 4) for m in models) + " |"
            )
        lines += [""] + [f"- {what}: {_fmt(ratio, 4)}x" for what, ratio in evaluation.forgetting.items()]

    lines += [
        "",
        "## Scores (value [95% interval], n scored / unscored)",
        "",
        f"| metric | {header} | threshold | method | scale |",
        "|---|" + "---|" * len(models) + "---|---|---|",
    ]
    for name in sorted({n for m in models for n in m.metrics}):
        ref = next(m.metrics[name] for m in models if name in m.metrics)
        cells = []
        for model in models:
            metric = model.metrics.get(name)
            if metric is None:
                cells.append("")
            elif metric.measured:
                cells.append(f"{metric.interval()} (n {metric.n}/{metric.unscored})")
            else:
                cells.append(f"unmeasured (n {metric.n}/{metric.unscored})")
        threshold = evaluation.thresholds.get(name)
        regress = " (no regression)" if name in evaluation.gate.no_regression else ""
        shown = f"{name} (proxy)" if ref.method == "proxy" else name
        lines.append(
            f"| {shown} | " + " | ".join(cells) + f" | {threshold or ''}{regress} | {ref.method} | {ref.scale} |"
        )
    lines += _calibration_lines(evaluation)
    lines += _replies_compared_lines(evaluation)
    lines += _plain_lora_lines(plain_lora_summary(models, evaluation.replies))
    for model in models:
        if model.heldout:
            lines += ["", f"## Held-out loss per source and domain: {model.label}", "", "| split | name | loss | perplexity | tokens |", "|---|---|---|---|---|"]
            for part in ("per_source", "per_domain"):
                for name, row in model.heldout.get(part, {}).items():
                    lines.append(f"| {part[4:]} | {name} | {row['loss']:.4f} | {row['perplexity']:.2f} | {row['tokens']} |")
    lines += crisis_section(
        evaluation.prompts, ck.replies, ck.details.get("explanations", {}), evaluation.crisis_calibration
    )
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "## Every prompt's replies, in full (the first sample of each model)", ""]
    by_suite: dict[str, list[str]] = {}
    for probe_id, (suite, _) in evaluation.prompts.items():
        by_suite.setdefault(suite, []).append(probe_id)
    for suite, ids in by_suite.items():
        lines += [f"### {suite}", ""]
        for probe_id in ids:
            lines += [f"**{probe_id}** user: {_cell(evaluation.prompts[probe_id][1])}", ""]
            lines += [f"- {m.label}{_relevance_note(evaluation, m.label, probe_id)}: {_reply_cell(m.replies.get(probe_id))}"
                      for m in models]
            lines.append("")
    return "\n".join(lines) + "\n"


_OUTCOMES = {WIN: "win", TIE: "tie", LOSS: "loss"}


def _decision_lines(evaluation: Evaluation) -> list[str]:
    """What the decision rests on (each gated check with its numbers) and what was only shown."""
    decision = evaluation.decision
    lines = [f"- {reason}" for reason in decision.reasons]
    lines += ["", "Gated (the decision rests on these):", ""]
    lines += [f"- {check}" for check in decision.checks] or ["- nothing was measured that this stage gates"]
    gated = set(evaluation.thresholds) | set(evaluation.gate.no_regression)
    shown = sorted({n for m in evaluation.models for n, metric in m.metrics.items() if n not in gated})
    lines += ["", "Shown only, not gated: " + (", ".join(
        f"{n} (proxy)" if any(m.metrics.get(n) and m.metrics[n].method == "proxy" for m in evaluation.models) else n
        for n in shown) or "nothing")]
    if evaluation.replies is not None:
        others = [label for label in evaluation.replies.comparisons if label != evaluation.replies.gated]
        if others:
            lines[-1] += "; the replies compared with " + ", ".join(f"the {label}" for label in others)
    return lines + [""]


def _calibration_lines(evaluation: Evaluation) -> list[str]:
    """A judge's calibration only when a real judge scored; the offline proxy is labelled as such."""
    if not evaluation.calibration:
        return []
    ck = evaluation.checkpoint
    if evaluation.judge_model:
        title = f"## Judge calibration: held-out human replies scored by {evaluation.judge_model}"
    else:
        title = "## Lexical proxy on held-out human replies (a proxy, not a judge calibration: no judge configured)"
    lines = ["", title, "", "| metric | human replies | checkpoint | method |", "|---|---|---|---|"]
    for name, human in evaluation.calibration.items():
        model = ck.metrics.get(name)
        lines.append(f"| {name} | {human.interval()} | {model.interval() if model else 'n/a'} | {human.method} |")
    return lines


def _replies_compared_lines(evaluation: Evaluation) -> list[str]:
    compared = evaluation.replies
    if compared is None:
        return []
    lines = ["", "## Replies compared prompt by prompt", ""]
    lines += ["| model | mean relevance to the prompt | stock replies | broken replies (loop, echo) | distinct-1 | distinct-2 |",
              "|---|---|---|---|---|---|"]
    for label, p in compared.profiles.items():
        lines.append(
            f"| {label} | {_fmt(p.mean_relevance)} | {len(p.stock)} of {p.prompts} ({p.stock_share:.0%}) | "
            f"{len(p.broken)} of {p.prompts} | {_fmt(p.distinct.get(1))} | {_fmt(p.distinct.get(2))} |"
        )
    lines += ["", "| checkpoint against | wins | losses | ties | share won [95%] | method | relevance difference [95%] | |",
              "|---|---|---|---|---|---|---|---|"]
    for label, c in compared.comparisons.items():
        i = c.interval
        cell = "n/a" if i is None else f"{i.mean:.3f} [{i.lower:.3f}, {i.upper:.3f}]"
        difference = compared.relevance_difference(label)
        role = "gated" if label == compared.gated else "shown"
        lines.append(f"| {label} | {c.count(WIN)} | {c.count(LOSS)} | {c.count(TIE)} | {cell} | {c.method} | "
                     f"{difference if difference else 'n/a'} | {role} |")
    checkpoint = compared.profiles.get("checkpoint")
    if checkpoint and checkpoint.stock:
        lines += ["", "Stock replies of the checkpoint:", ""] + [f"- {i}: {why}" for i, why in checkpoint.stock.items()]
    if checkpoint and checkpoint.broken:
        lines += ["", "Broken replies of the checkpoint (each loses to a sound reply):", ""]
        lines += [f"- {i}: {why}" for i, why in checkpoint.broken.items()]
    return lines


def _plain_lora_lines(summary: dict | None) -> list[str]:
    """What the mixture bought over one LoRA of its budget (evals.plain_lora), when one was measured."""
    if summary is None:
        return []
    losses, relevance, replies = summary["heldout_loss"], summary["mean_relevance"], summary["replies"]
    lower = "the mixture is lower" if summary["mixture_loss_lower"] else "the mixture is NOT lower"
    lines = [
        "", "## The mixture against a plain LoRA of the same budget", "",
        f"A plain LoRA (one expert of rank num_experts x r on the same modules, no router losses) trained on "
        f"the same data and steps: `{summary['source']}`. Shown, not gated.", "",
        f"| | checkpoint (mixture) | {PLAIN_LORA} | base model |", "|---|---|---|---|",
        f"| held-out loss | {_fmt(losses['mixture'], 4)} | {_fmt(losses['plain_lora'], 4)} | {_fmt(losses['base'], 4)} |",
        f"| mean relevance of the replies | {_fmt(relevance['mixture'])} | {_fmt(relevance['plain_lora'])} | |",
        "", f"- held-out loss, mixture / plain LoRA: {_fmt(summary['loss_ratio'], 4)} ({lower})",
    ]
    if replies is not None:
        won = replies["share_won"]
        share = "n/a" if won is None else f"{won['value']:.3f} [{won['lower']:.3f}, {won['upper']:.3f}]"
        lines.append(
            f"- replies, the mixture against the plain LoRA prompt by prompt: {replies['wins']} wins, "
            f"{replies['losses']} losses, {replies['ties']} ties, share won {share} ({summary['replies_verdict']})"
        )
    return lines


def _relevance_note(evaluation: Evaluation, label: str, probe_id: str) -> str:
    """' (relevance 0.412, win)' beside a reply: its relevance and, for the checkpoint, the gated outcome."""
    compared = evaluation.replies
    if compared is None or label not in compared.profiles:
        return ""
    value = compared.profiles[label].relevance.get(probe_id)
    parts = [] if value is None else [f"relevance {value:.3f}"]
    if label == "checkpoint" and compared.gated in compared.comparisons:
        outcome = compared.comparisons[compared.gated].outcomes.get(probe_id)
        if outcome is not None:
            parts.append(f"{_OUTCOMES.get(outcome, f'{outcome:.2f}')} against the {compared.gated}")
    return f" ({', '.join(parts)})" if parts else ""


def write_report(evaluation: Evaluation, out_dir: Path) -> Path:
    """Writes the report folder; returns the path of report.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    models = evaluation.models
    plots = []
    if plot_loss_per_domain(models, out_dir / "loss_per_domain.png"):
        plots.append("loss_per_domain.png")
    for i, model in enumerate(models):
        name = "expert_use.png" if i == 0 else f"expert_use_{model.label.replace(' ', '_')}.png"
        if plot_expert_use(model, out_dir / name):
            plots.append(name)
    if plot_scores(evaluation, out_dir / "scores.png"):
        plots.append("scores.png")
    with open(out_dir / "replies.jsonl", "w", encoding="utf-8") as f:
        for probe_id, (suite, prompt) in evaluation.prompts.items():
            row = {"id": probe_id, "suite": suite, "user": prompt, **{m.label: m.replies.get(probe_id) for m in models}}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    report = {
        "stage": evaluation.stage,
        "decision": evaluation.decision.decision,
        "exit_code": evaluation.decision.exit_code,
        "reasons": list(evaluation.decision.reasons),
        "checks": list(evaluation.decision.checks),
        "gate": {
            "thresholds": {k: str(v) for k, v in evaluation.thresholds.items()},
            "no_regression": list(evaluation.gate.no_regression),
            "max_heldout_loss_ratio": evaluation.gate.max_heldout_loss_ratio,
            "max_forgetting_ratio": evaluation.gate.max_forgetting_ratio,
        },
        "judge_model": evaluation.judge_model,
        "forgetting": evaluation.forgetting,
        "models": {m.label: _model_json(m) for m in models},
        "calibration": {name: m.to_dict() for name, m in evaluation.calibration.items()},
        "crisis_calibration": evaluation.crisis_calibration.to_dict() if evaluation.crisis_calibration else None,
        "notes": evaluation.notes,
        "plots": plots,
        "replies": "replies.jsonl",
        "replies_compared": evaluation.replies.to_dict() if evaluation.replies is not None else None,
        "plain_lora": plain_lora_summary(models, evaluation.replies),
    }
    (out_dir / "report.md").write_text(_markdown(evaluation, plots), encoding="utf-8")
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return path
