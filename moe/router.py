"""Token-level top-k router: fp32 routing over logits, softmax over all experts, top-k, renormalise.

A router owns only its weight [E, in]; its logits come out of the adapter's fused matmul
(`moe.layer.AdapterGroup`), so it never reads the [N, in] input on its own. Routing (softmax, top-k,
the losses) always runs in fp32 on those [N, E] logits, whatever dtype the input or the (possibly
FSDP-cast) weight has.

Logits for the auxiliary losses are recorded only inside a `record_routing` block opened by whoever
computes the losses, around exactly one forward. A forward recomputed by activation checkpointing
during backward runs outside that block and records nothing, so no loss counts a forward twice and
no recomputed graph is kept alive.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def top_k_gates(logits: Tensor, top_k: int) -> Tensor:
    """Dense gates [..., E]: renormalised softmax probabilities on the top-k experts, zero elsewhere.

    softmax over all experts, top-k, renormalise == softmax over the k largest logits (the full
    normaliser cancels), which is what runs here: one softmax over k values instead of over E.
    """
    values, indices = logits.topk(top_k, dim=-1)
    return torch.zeros_like(logits).scatter(-1, indices, values.softmax(dim=-1))


class RoutingRecord:
    """The router logits of one forward, in router order, while a `record_routing` block is open."""

    def __init__(self) -> None:
        self.logits: list[Tensor] | None = None

    def take(self) -> Tensor:
        """[routers, ..., E] fp32: everything recorded since the last take, stacked; the record empties."""
        if not self.logits:
            raise ValueError(
                "no router logits recorded: run the model's forward inside record_routing(model)"
            )
        logits, self.logits = self.logits, []
        return torch.stack(logits)


@contextmanager
def record_routing(model: nn.Module) -> Iterator[RoutingRecord]:
    """Record every router's logits while inside (one forward, then `take()`); off again on exit."""
    record = getattr(model, "moe_routing", None)
    if record is None:
        raise ValueError("record_routing: the model carries no MoE-LoRA layers (attach_moe_lora first)")
    record.logits = []
    try:
        yield record
    finally:
        record.logits = None


class Router(nn.Module):
    """A bias-free linear map from the adapted input to one logit per expert (the weight; the matmul
    is the adapter's) and the top-k choice over those logits."""

    def __init__(
        self,
        in_features: int,
        num_experts: int,
        top_k: int,
        record: RoutingRecord,
        device: torch.device | None = None,
    ):
        super().__init__()
        self.top_k = top_k
        self.weight = nn.Parameter(torch.empty(num_experts, in_features, dtype=torch.float32, device=device))
        # nn.Linear's init: logits of order 1 for unit-RMS inputs: routing starts near-uniform, not tied.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.record = record  # shared by every router of the model (a plain attribute, not a module)
        self.forced_gates: Tensor | None = None

    def route(self, logits: Tensor) -> Tensor:
        """Gates [..., E] in fp32 from fp32 logits: exactly top_k non-zero entries per token, summing to 1
        (or the forced gates). Records the logits when a record_routing block is open."""
        if self.record.logits is not None:
            self.record.logits.append(logits)
        if self.forced_gates is not None:
            return self.forced_gates.to(logits).expand_as(logits)
        return top_k_gates(logits, self.top_k)

    def forward(self, x: Tensor) -> Tensor:
        """Gates for `x` on their own (tests, tools); the adapter computes logits in its fused matmul."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.route(nn.functional.linear(x.float(), self.weight.float()))

    def extra_repr(self) -> str:
        experts, in_features = self.weight.shape
        return f"in_features={in_features}, num_experts={experts}, top_k={self.top_k}"
