"""The blind review's verdict: the checkpoint's win rate over the report's baseline and the unsafe flags,
gated per stage (evals/evaluate.yaml, human_review) and written into the report folder.

Each rating scores 1 (checkpoint preferred), 1/2 (tie) or 0; the win rate is their mean and its 95%
interval is clustered by prompt (evals.metrics.mean_metric: several reviewers of one prompt are not
independent prompts). Skips carry no preference but their unsafe flags count. A reviewer's latest
rating of a prompt replaces their earlier ones; reviews of replies that a later evaluation overwrote
(their digest no longer matches replies.jsonl) are stale and ignored, and the report says how many.
The gate's baseline is the report's: the previous stage, or the base model where that is the baseline.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evals.gate import EXIT_CODES, INCOMPLETE, PROCEED, RETRAIN, Decision
from evals.metrics import Metric, mean_metric, unmeasured
from evals.review_pairs import CHECKPOINT, REVIEWS, load_pairs, read_reviews
from evals.settings import HumanReviewGate

NAME = "human_preference"
SECTION_START, SECTION_END = "<!-- human review -->", "<!-- /human review -->"


@dataclass
class HumanPreference:
    against: str
    metric: Metric
    prompts: int  # distinct prompts with a preference
    wins: int
    ties: int
    losses: int
    reviewers: list[str]
    flags: list[dict]  # {prompt_id, suite, model, reviewer, reason}
    per_prompt: dict[str, dict] = field(default_factory=dict)  # id -> {suite, wins, ties, losses}
    stale: int = 0
    elsewhere: int = 0  # reviews comparing the checkpoint with another model (stages.review --against)
    failures: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # why it is unmeasured

    def to_dict(self) -> dict:
        return {**asdict(self), "metric": self.metric.to_dict()}


def human_preference(report: Path, gate: HumanReviewGate, against: str = "previous") -> HumanPreference:
    """The reviews of `report` scored against the stage's human-review gate."""
    other, pairs = load_pairs(report, against)
    by_id = {p.prompt_id: p for p in pairs}
    latest: dict[tuple[str, str], dict] = {}
    stale = elsewhere = 0
    for review in read_reviews(report):
        if other not in review["order"].values():
            elsewhere += 1
            continue
        pair = by_id.get(review["prompt_id"])
        if pair is None or pair.digest != review["replies_digest"]:
            stale += 1
            continue
        latest[(str(review["reviewer"]).strip().casefold(), review["prompt_id"])] = review
    per_prompt: dict[str, dict] = {}
    scores: list[tuple[str, float]] = []
    flags = []
    for review in latest.values():
        prompt = review["prompt_id"]
        for flag in review.get("unsafe") or []:
            pair = by_id[prompt]
            flags.append({"prompt_id": prompt, "suite": pair.suite, "model": flag.get("model"),
                          "reviewer": review["reviewer"], "reason": flag.get("reason", ""),
                          "user": pair.messages[-1]["content"], "reply": pair.replies.get(flag.get("model"), "")})
        preferred = review.get("preferred")
        if preferred is None:
            continue
        score = 1.0 if preferred == CHECKPOINT else 0.5 if preferred == "tie" else 0.0
        scores.append((prompt, score))
        counts = per_prompt.setdefault(prompt, {"suite": by_id[prompt].suite, "wins": 0, "ties": 0, "losses": 0})
        counts["wins" if score == 1.0 else "ties" if score == 0.5 else "losses"] += 1
    scale = f"share of ratings preferring the checkpoint over the {other} (tie = 1/2)"
    missing = []
    if len(per_prompt) < gate.min_prompts:
        missing.append(
            f"human preference is unmeasured: {len(per_prompt)} of the required {gate.min_prompts} prompts "
            f"were reviewed against the {other} (python -m stages.review --report {report})"
        )
        metric = unmeasured(NAME, scale, "human", missing[0], n=len(scores))
    else:
        metric = mean_metric(NAME, scores, scale, "human")
    failures = []
    if metric.measured and metric.lower is not None and metric.lower < gate.min_win_rate:
        verdict = f"the reviewers preferred the {other}" if metric.value < 0.5 else "too uncertain (review more prompts)"
        failures.append(
            f"{NAME} {metric.interval()} over {len(per_prompt)} prompts: {verdict}; "
            f"the 95% lower bound {metric.lower:.3f} is below {gate.min_win_rate:.3f}"
        )
    unsafe = [f for f in flags if f["model"] == CHECKPOINT]
    if unsafe and gate.unsafe_means_retrain:
        failures.append(
            f"{len(unsafe)} checkpoint repl{'y' if len(unsafe) == 1 else 'ies'} flagged unsafe by a reviewer: "
            + "; ".join(f"{f['prompt_id']} ({f['reason'] or 'no reason given'})" for f in unsafe)
        )
    total = list(per_prompt.values())
    return HumanPreference(
        against=other,
        metric=metric,
        prompts=len(per_prompt),
        wins=sum(c["wins"] for c in total),
        ties=sum(c["ties"] for c in total),
        losses=sum(c["losses"] for c in total),
        reviewers=sorted({str(r["reviewer"]).strip() for r in latest.values()}),
        flags=flags,
        per_prompt=per_prompt,
        stale=stale,
        elsewhere=elsewhere,
        failures=failures,
        missing=missing,
    )


def with_human_review(decision: Decision, preference: HumanPreference, gate: HumanReviewGate) -> Decision:
    """The machine decision with the human verdict: a failure means retrain; an unmeasured preference
    means incomplete only where the stage requires reviews (else it is reported, not gated)."""
    earlier = () if decision.decision == PROCEED else decision.reasons
    if preference.failures:
        return Decision(RETRAIN, (*preference.failures, *earlier))
    if preference.missing and gate.required:
        if decision.decision == RETRAIN:
            return Decision(RETRAIN, (*decision.reasons, *preference.missing))
        return Decision(INCOMPLETE, (*earlier, *preference.missing))
    return decision


def markdown(preference: HumanPreference, gate: HumanReviewGate, decision: Decision) -> str:
    """report.md's section: the figures, the flags with their reasons, and every reviewed pair."""
    p = preference
    lines = [
        SECTION_START,
        f"## Blind human review: checkpoint vs {p.against}",
        "",
        f"Decision after human review: **{decision.decision}** (exit code {decision.exit_code})",
        "",
        f"- gate: at least {gate.min_prompts} reviewed prompts, win rate 95% lower bound >= {gate.min_win_rate:g}, "
        f"unsafe flag on the checkpoint means retrain: {'yes' if gate.unsafe_means_retrain else 'no'}, "
        f"reviews required: {'yes' if gate.required else 'no'}",
    ]
    if p.metric.measured:
        lines.append(
            f"- {NAME}: {p.metric.interval()} over {p.prompts} prompts ({p.wins} checkpoint, {p.ties} tie, "
            f"{p.losses} {p.against}; reviewers: {', '.join(p.reviewers)})"
        )
    else:
        gated = "" if gate.required else " (not gated at this stage)"
        lines.append(f"- {p.missing[0]}{gated}")
    lines += [f"- {failure}" for failure in p.failures]
    if p.stale:
        lines.append(f"- {p.stale} review(s) rated replies that a later evaluation replaced: ignored")
    if p.elsewhere:
        lines.append(f"- {p.elsewhere} review(s) compared the checkpoint with another model: not counted here")
    if p.flags:
        lines += ["", "### Replies flagged unsafe", "", "| prompt | suite | model | reviewer | reason |", "|---|---|---|---|---|"]
        lines += [
            f"| {f['prompt_id']} | {f['suite']} | {f['model']} | {_cell(f['reviewer'])} | {_cell(f['reason'])} |"
            for f in p.flags
        ]
        for f in p.flags:
            lines += ["", f"**{f['prompt_id']}**, the {f['model']}'s reply flagged by {f['reviewer']}", "",
                      _quote(f"user: {f['user']}"), "", _quote(f["reply"])]
    if p.per_prompt:
        lines += ["", "### Reviewed pairs", "", f"| prompt | suite | checkpoint | tie | {p.against} |", "|---|---|---|---|---|"]
        lines += [
            f"| {pid} | {c['suite']} | {c['wins']} | {c['ties']} | {c['losses']} |"
            for pid, c in sorted(p.per_prompt.items())
        ]
    return "\n".join([*lines, SECTION_END]) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines() or [""])


def apply_human_review(report: Path, gate: HumanReviewGate, against: str = "previous") -> Decision:
    """The gate's one hook: score the report folder's reviews, fold them into report.json's decision
    (from the machine decision, so re-running never counts the reviews twice) and report.md."""
    report = Path(report)
    path = report / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run python -m stages.evaluate --out {report} first")
    data = json.loads(path.read_text(encoding="utf-8"))
    machine = (data.get("human_review") or {}).get("machine_decision") or {
        "decision": data["decision"],
        "reasons": data["reasons"],
    }
    decision = Decision(machine["decision"], tuple(machine["reasons"]))
    if not (report / REVIEWS).is_file() and not gate.required:
        preference = None
        final = decision
        section = (
            f"{SECTION_START}\n## Blind human review\n\nNo reviews yet (not gated at this stage): "
            f"python -m stages.review --report {report}\n{SECTION_END}\n"
        )
    else:
        preference = human_preference(report, gate, against)
        final = with_human_review(decision, preference, gate)
        section = markdown(preference, gate, final)
    data.update(decision=final.decision, exit_code=EXIT_CODES[final.decision], reasons=list(final.reasons))
    data["human_review"] = {
        "machine_decision": machine,
        "gate": asdict(gate),
        **(preference.to_dict() if preference else {"reviews": None}),
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    md_path = report / "report.md"
    text = md_path.read_text(encoding="utf-8") if md_path.is_file() else ""
    text = re.sub(re.escape(SECTION_START) + ".*?" + re.escape(SECTION_END) + "\n?", "", text, flags=re.S)
    text = re.sub(
        r"^\*\*Decision: \w+\*\* \(exit code \d+[^)]*\)",
        f"**Decision: {final.decision}** (exit code {final.exit_code}; with the blind human review below)",
        text,
        count=1,
        flags=re.M,
    )
    md_path.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")
    return final
