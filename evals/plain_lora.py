"""The mixture weighed against a plain LoRA of the same trainable budget, trained on the same data and steps.

If the mixture's held-out loss and replies are no better than one LoRA of rank num_experts x r on the
same modules (MoELoRAConfig.plain_lora(), `lightning_app.pipeline --baseline-lora`), its experts and
router bought nothing. The report measures the plain LoRA as one more model (held-out loss on the same
batches, replies to the same prompts) and states the outcome here; it is shown, never gated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from evals.compare import PairedComparison, RepliesCompared
from evals.heldout import loss_ratio, overall_loss
from evals.loading import BASE

if TYPE_CHECKING:
    from evals.report import ModelResult

# The plain LoRA's label among a report's models.
PLAIN_LORA = "plain LoRA"


def _replies_verdict(compared: PairedComparison | None) -> str:
    interval = compared.interval if compared is not None else None
    if interval is None:
        return "not compared"
    if interval.lower > 0.5:
        return "better"
    return "worse" if interval.upper < 0.5 else "no clear difference"


def plain_lora_summary(models: Sequence[ModelResult], replies: RepliesCompared | None) -> dict | None:
    """The checkpoint (models[0]) against the model labelled PLAIN_LORA: held-out losses (and the base
    model's when measured), their ratio, the reply comparison and a one-line summary; None without one."""
    plain = next((m for m in models if m.label == PLAIN_LORA), None)
    if plain is None:
        return None
    checkpoint, base = models[0], next((m for m in models if m.kind == BASE), None)
    losses = {"mixture": overall_loss(checkpoint.heldout), "plain_lora": overall_loss(plain.heldout),
              "base": overall_loss(base.heldout) if base is not None else None}
    ratio = loss_ratio(checkpoint.heldout, plain.heldout)
    profiles = replies.profiles if replies is not None else {}
    compared = replies.comparisons.get(PLAIN_LORA) if replies is not None else None
    verdict = _replies_verdict(compared)
    shown = {k: "n/a" if v is None else f"{v:.4f}" for k, v in losses.items()}
    line = (
        f"the mixture against a plain LoRA of the same budget ({plain.source}): held-out loss "
        f"{shown['mixture']} vs {shown['plain_lora']}"
        + ("" if ratio is None else f" (ratio {ratio:.4f}: {'lower' if ratio < 1.0 else 'NOT lower'})")
        + (f", base model {shown['base']}" if base is not None else "")
        + f"; replies: {compared.summary() if compared is not None else 'not compared'} ({verdict})"
    )
    return {
        "source": plain.source,
        "heldout_loss": losses,
        "loss_ratio": ratio,
        "mixture_loss_lower": None if ratio is None else ratio < 1.0,
        "replies": compared.to_dict() if compared is not None else None,
        "mean_relevance": {
            "mixture": profiles["checkpoint"].mean_relevance if "checkpoint" in profiles else None,
            "plain_lora": profiles[PLAIN_LORA].mean_relevance if PLAIN_LORA in profiles else None,
        },
        "replies_verdict": verdict,
        "summary": line,
    }
