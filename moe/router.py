"""Token-level top-k router: fp32 logits, softmax over all experts, top-k, renormalise.

The router keeps the logits of its last forward (`.logits`, [..., E] fp32, with their graph) for the
auxiliary losses in `moe.losses`. They are overwritten, never appended, so every loss reads exactly one
forward; a forward recomputed by activation checkpointing during backward does not write at all (it
would otherwise pin that recomputed graph, and the input it saved, until the next step).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def top_k_gates(logits: Tensor, top_k: int) -> Tensor:
    """Dense gates [..., E]: renormalised softmax probabilities on the top-k experts, zero elsewhere.

    softmax over all experts, top-k, renormalise == softmax over the k largest logits (the full
    normaliser cancels), which is what runs here: one softmax over k values instead of over E.
    """
    values, indices = logits.topk(top_k, dim=-1)
    return torch.zeros_like(logits).scatter(-1, indices, values.softmax(dim=-1))


def _in_backward() -> bool:
    # Non-reentrant activation checkpointing recomputes forwards inside the backward's graph task.
    # torch has no public name for this check; checkpoint.py itself uses the same call.
    return torch._C._current_graph_task_id() != -1


class Router(nn.Module):
    """A bias-free linear map from the adapted layer's input to one logit per expert, in fp32."""

    def __init__(self, in_features: int, num_experts: int, top_k: int, device: torch.device | None = None):
        super().__init__()
        self.top_k = top_k
        self.weight = nn.Parameter(torch.empty(num_experts, in_features, dtype=torch.float32, device=device))
        # nn.Linear's init: logits of order 1 for unit-RMS inputs: routing starts near-uniform, not tied.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.logits: Tensor | None = None
        self.forced_gates: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Gates [..., E] in fp32: exactly top_k non-zero entries per token, summing to 1."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = nn.functional.linear(x.float(), self.weight)
            if not _in_backward():
                self.logits = logits
            if self.forced_gates is not None:
                return self.forced_gates.to(logits).expand_as(logits)
            return top_k_gates(logits, self.top_k)

    def extra_repr(self) -> str:
        experts, in_features = self.weight.shape
        return f"in_features={in_features}, num_experts={experts}, top_k={self.top_k}"
