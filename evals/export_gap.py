"""The export gap: how much of the mixture's held-out result survives when its gates are fixed for serving.

Nothing serves token-routed LoRA mixtures; what reaches people is a `stages.export` with fixed gates
(one-hot or observed, one export per domain or one average export). A fixed-gate export computes exactly
the mixture under `forced_gates` with those gates (tests/test_moe_export.py), so each choice is measured
on the mixture itself: held-out loss on the stage's test split (the same batches as the report's) and
greedy replies on a few held-out conversations, compared token by token with the mixture's own. The
choice with the smallest loss gap is the one to ship; `stages.export --report DIR` exports it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from evals.generate import prompt_ids
from evals.heldout import heldout_figures
from moe.config import MoELoRAConfig
from moe.export import choose_gates
from moe.model import forced_gates

GAP_FILE = "export_gap.json"
MIXTURE_LABEL = "mixture (token-routed)"


@dataclass(frozen=True)
class ExportChoice:
    """One way to export: `flags` for stages.export (DOMAIN stands for each domain in turn)."""

    label: str
    flags: tuple[str, ...]
    gates: dict[str, tuple[float, ...]]  # the gates each domain's traffic is served with

    @property
    def per_domain(self) -> bool:
        return "--domain" in self.flags


def export_choices(document: dict) -> list[ExportChoice]:
    """Every distinct export of an adapter config: one-hot and observed, per domain and averaged.

    Without recorded observed gates the observed choices equal the one-hot ones and are left out.
    """
    domains = MoELoRAConfig.from_dict(document["moe"]).domains
    choices: list[ExportChoice] = []
    for mode in ("one-hot", "observed"):
        per = {d: tuple(choose_gates(document, d, False, mode).tolist()) for d in domains}
        average = tuple(choose_gates(document, None, True, mode).tolist())
        candidates = [
            ExportChoice(f"one export per domain ({mode})", ("--domain", "DOMAIN", "--gates", mode), per),
            ExportChoice(f"one average export ({mode})", ("--average", "--gates", mode), dict.fromkeys(domains, average)),
        ]
        choices += [c for c in candidates if all(c.gates != seen.gates for seen in choices)]
    return choices


def _pooled(figures: list[dict]) -> dict:
    loss_sum = sum(f["loss"] * f["tokens"] for f in figures if f["tokens"])
    tokens = sum(f["tokens"] for f in figures)
    return {"loss": loss_sum / tokens if tokens else float("nan"), "tokens": tokens}


def heldout_by_choice(
    model: nn.Module, loader: DataLoader, sources: Sequence[str], domains: Sequence[str], choices: list[ExportChoice]
) -> dict[str, dict]:
    """Held-out loss of each choice: every row scored with the gates of its own domain (one pass per
    distinct gate vector, shared across choices)."""
    by_gates: dict[tuple[float, ...], dict] = {}
    results = {}
    for choice in choices:
        parts = []
        for domain in sorted(set(domains)):
            gates = choice.gates[domain]
            if gates not in by_gates:
                with forced_gates(model, torch.tensor(gates)):
                    by_gates[gates] = heldout_figures(model, loader, sources, domains)
            parts.append(by_gates[gates]["per_domain"][domain])
        results[choice.label] = _pooled(parts)
    return results


@torch.no_grad()
def _greedy(model: nn.Module, tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict], new_tokens: int) -> list[int]:
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids(tokenizer, messages)], device=device)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def _agreement(reference: list[int], other: list[int]) -> float:
    """The share of the reference reply's tokens the other reply repeats before its first difference."""
    same = 0
    for a, b in zip(reference, other):
        if a != b:
            break
        same += 1
    return same / max(1, len(reference))


def replies_by_choice(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[tuple[Sequence[dict], str]],
    choices: list[ExportChoice],
    new_tokens: int,
) -> dict[str, dict]:
    """Per choice: the mean share of the mixture's greedy reply it repeats, and how many replies are equal.

    conversations: (context messages, domain) pairs; a choice answers each with its domain's gates.
    """
    mixture = [_greedy(model, tokenizer, messages, new_tokens) for messages, _ in conversations]
    results = {}
    for choice in choices:
        shares = []
        for (messages, domain), reference in zip(conversations, mixture, strict=True):
            with forced_gates(model, torch.tensor(choice.gates[domain])):
                shares.append(_agreement(reference, _greedy(model, tokenizer, messages, new_tokens)))
        results[choice.label] = {
            "agreement": sum(shares) / len(shares) if shares else None,
            "equal": sum(share == 1.0 for share in shares),
            "replies": len(shares),
        }
    return results


def export_gap(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    document: dict,
    heldout: tuple[DataLoader, Sequence[str], Sequence[str]],
    conversations: Sequence[tuple[Sequence[dict], str]],
    new_tokens: int = 32,
) -> dict:
    """The table: the mixture and each export choice, held-out loss, gap and reply agreement; and `ship`."""
    choices = export_choices(document)
    loader, sources, domains = heldout
    mixture = heldout_figures(model, loader, sources, domains)["overall"]
    losses = heldout_by_choice(model, loader, sources, domains, choices)
    replies = replies_by_choice(model, tokenizer, conversations, choices, new_tokens)
    rows = [{"label": MIXTURE_LABEL, "flags": None, "loss": mixture["loss"], "gap": 0.0,
             "agreement": 1.0 if conversations else None}]
    for choice in choices:
        loss = losses[choice.label]["loss"]
        rows.append({"label": choice.label, "flags": list(choice.flags), "loss": loss,
                     "gap": loss / mixture["loss"] - 1.0, **replies[choice.label],
                     "gates": {d: list(g) for d, g in choice.gates.items()}})
    ship = min(rows[1:], key=lambda row: row["gap"])
    return {"tokens": mixture["tokens"], "rows": rows, "ship": ship["label"], "ship_flags": ship["flags"],
            "choices": [asdict(c) for c in choices]}


def gate_line(gap: dict) -> str:
    """What the gate judged (the mixture) beside what would be served (the chosen export)."""
    mixture, ship = gap["rows"][0], next(r for r in gap["rows"] if r["label"] == gap["ship"])
    agreement = "" if ship["agreement"] is None else f"; it repeats {ship['agreement']:.0%} of the mixture's greedy reply tokens"
    return (f"served model: {ship['label']} (stages.export {' '.join(ship['flags'])}) has held-out loss "
            f"{ship['loss']:.4f} beside the mixture's {mixture['loss']:.4f} (gap {ship['gap']:+.2%}){agreement}; "
            "the gate judged the mixture")


def gap_markdown(gap: dict) -> str:
    lines = ["## Export gap (what is served vs what was judged)", "",
             f"Held-out loss on this stage's test split ({gap['tokens']} scored tokens, the report's batches) and "
             "greedy replies on held-out conversations, compared with the token-routed mixture.", "",
             "| model | stages.export flags | held-out loss | gap | reply tokens as the mixture's | equal replies |",
             "|---|---|---|---|---|---|"]
    for row in gap["rows"]:
        flags = "" if row["flags"] is None else "`" + " ".join(row["flags"]) + "`"
        agreement = "-" if row.get("agreement") is None else f"{row['agreement']:.0%}"
        equal = f"{row['equal']}/{row['replies']}" if "equal" in row else "-"
        lines.append(f"| {row['label']} | {flags} | {row['loss']:.4f} | {row['gap']:+.2%} | {agreement} | {equal} |")
    lines += ["", f"Export to ship (smallest gap): **{gap['ship']}**; `python -m stages.export --report DIR` "
              "exports it.", ""]
    return "\n".join(lines)


def write_export_gap(gap: dict, out: str | Path, report_name: str = "report.md") -> Path:
    """export_gap.json in the report folder, and its table appended to the report's markdown."""
    out = Path(out)
    path = out / GAP_FILE
    path.write_text(json.dumps(gap, indent=2) + "\n")
    report = out / report_name
    if report.is_file():
        report.write_text(report.read_text().rstrip("\n") + "\n\n" + gap_markdown(gap))
    return path


def read_ship_choice(report: str | Path) -> tuple[str, list[str]]:
    """(label, stages.export flags) of the export a report recommends."""
    path = Path(report) / GAP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no export gap in this report folder (run stages.evaluate on a mixture)")
    gap = json.loads(path.read_text())
    return gap["ship"], gap["ship_flags"]


def gap_conversations(conversations: Sequence, count: int) -> list[tuple[list[dict], str]]:
    """Up to `count` held-out conversations spread evenly over the split, as (context, domain) pairs: the
    messages before the last assistant turn, which each export choice answers."""
    pairs = [(list(c.messages[:-1]), c.domain) for c in conversations if c.messages[-1]["role"] == "assistant"]
    if len(pairs) <= count:
        return pairs
    return [pairs[round(i * (len(pairs) - 1) / max(1, count - 1))] for i in range(count)]
