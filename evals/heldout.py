"""Held-out loss and perplexity per source and per domain, the same batches for every model.

Batches follow the datamodule contract with one example per row (padding mode), so each row's
loss belongs to one source and one domain; the forward is the training one
(`position_ids`, `attention_mask` only for padding, `use_cache=False`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moe.batch import IGNORE_INDEX


@dataclass
class Tally:
    loss_sum: float = 0.0
    tokens: int = 0

    def figures(self) -> dict[str, float | int]:
        loss = self.loss_sum / self.tokens if self.tokens else math.nan
        return {
            "loss": loss,
            "perplexity": math.exp(loss) if self.tokens else math.nan,
            "tokens": self.tokens,
        }


def row_losses(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Summed next-token loss and scored-token count per row ([B] each)."""
    device = next(model.parameters()).device
    logits = model(
        input_ids=batch["input_ids"].to(device),
        position_ids=batch["position_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device) if "attention_mask" in batch else None,
        use_cache=False,
    ).logits
    labels = batch["labels"].to(device)[:, 1:]
    losses = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return losses.sum(dim=1).cpu(), (labels != IGNORE_INDEX).sum(dim=1).cpu()


@torch.no_grad()
def heldout_figures(
    model: nn.Module,
    batches: Iterable[dict[str, Tensor]],
    sources: Sequence[str],
    domains: Sequence[str],
    after_forward: Callable[[dict[str, Tensor]], None] | None = None,
) -> dict:
    """sources[i] / domains[i] name the i-th example, in the order the batches hold them.

    after_forward(batch) runs after each forward (e.g. to tally the mixture's routing).
    """
    model.eval()
    overall, per_source, per_domain = Tally(), defaultdict(Tally), defaultdict(Tally)
    row = 0
    for batch in batches:
        loss_sums, counts = row_losses(model, batch)
        if after_forward is not None:
            after_forward(batch)
        for loss_sum, count in zip(loss_sums.tolist(), counts.tolist(), strict=True):
            if row >= len(sources):
                raise ValueError(f"the batches hold more examples than the {len(sources)} sources named")
            for tally in (overall, per_source[sources[row]], per_domain[domains[row]]):
                tally.loss_sum += loss_sum
                tally.tokens += count
            row += 1
    if row != len(sources):
        raise ValueError(f"the batches hold {row} examples but {len(sources)} sources were named")
    return {
        "overall": overall.figures(),
        "per_source": {name: t.figures() for name, t in sorted(per_source.items())},
        "per_domain": {name: t.figures() for name, t in sorted(per_domain.items())},
    }


def overall_loss(figures: dict | None) -> float | None:
    """The overall held-out loss of heldout_figures' result (None when nothing was scored)."""
    return figures["overall"]["loss"] if figures and figures["overall"]["tokens"] else None


def loss_ratio(checkpoint: dict | None, baseline: dict | None) -> float | None:
    """The checkpoint's overall held-out loss over the baseline's (figures of the same batches)."""
    if not checkpoint or not baseline or not checkpoint["overall"]["tokens"]:
        return None
    return checkpoint["overall"]["loss"] / baseline["overall"]["loss"]


def loss_ratios_per_source(checkpoint: dict | None, baseline: dict | None) -> dict[str, float | None]:
    """Per source of the split, the checkpoint's held-out loss over the baseline's: forgetting is
    gated on the worst source, since a pooled ratio lets a small source's 25% rise pass unseen."""
    if not checkpoint or not baseline:
        return {}
    out: dict[str, float | None] = {}
    for name, figures in checkpoint.get("per_source", {}).items():
        before = baseline.get("per_source", {}).get(name)
        usable = figures["tokens"] and before and before["tokens"] and before["loss"] > 0
        out[name] = figures["loss"] / before["loss"] if usable else None
    return out
