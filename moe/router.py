"""Token-level top-k router: fp32 logits, softmax over all experts, top-k, renormalise.

The router keeps the logits of its last forward (`.logits`, [..., E] fp32, with their graph) for the
auxiliary losses in `moe.losses`. They are overwritten, never appended, so every loss reads exactly one
forward; a forward recomputed by activation checkpointing during backward does not write at all (it
would otherwise pin that recomputed graph, and the input it saved, until the next step).

Adapted linears that read the same input (q/k/v of an attention block) share one router: the first of
them to run computes the gates, the others take that very tensor (`Router.gates_for`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def top_k_gates(logits: Tensor, top_k: int) -> Tensor:
    """Dense gates [..., E]: renormalised softmax probabilities on the top-k experts, zero elsewhere.

    softmax over all experts, top-k, renormalise == softmax over the k largest logits (the full
    normaliser cancels), which is what runs here: one softmax over k values instead of over E.
    """
    values, indices = logits.topk(top_k, dim=-1)
    return torch.zeros_like(logits).scatter(-1, indices, values.softmax(dim=-1))


def _graph_task() -> int:
    # -1 outside backward. Non-reentrant activation checkpointing recomputes forwards inside the
    # backward's graph task; torch has no public name for this check; checkpoint.py uses the same call.
    return torch._C._current_graph_task_id()


@dataclass
class _SharedGates:
    """Gates computed for one input, waiting for the other members of the router's group."""

    input: Tensor
    state: tuple  # everything else the gates depend on; see Router.gates_for
    forced: Tensor | None
    gates: Tensor
    taken: set[int]  # id() of the members that have had these gates


class Router(nn.Module):
    """A bias-free linear map from the adapted layer's input to one logit per expert, in fp32.

    `sharers` adapted linears use it (1: its own layer only; see `gates_for`).
    """

    def __init__(
        self,
        in_features: int,
        num_experts: int,
        top_k: int,
        sharers: int = 1,
        device: torch.device | None = None,
    ):
        super().__init__()
        self.top_k = top_k
        self.sharers = sharers
        self.weight = nn.Parameter(torch.empty(num_experts, in_features, dtype=torch.float32, device=device))
        # nn.Linear's init: logits of order 1 for unit-RMS inputs: routing starts near-uniform, not tied.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.logits: Tensor | None = None
        self.forced_gates: Tensor | None = None
        self._shared: _SharedGates | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Gates [..., E] in fp32: exactly top_k non-zero entries per token, summing to 1."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = nn.functional.linear(x.float(), self.weight)
            if _graph_task() == -1:
                self.logits = logits
            if self.forced_gates is not None:
                return self.forced_gates.to(logits).expand_as(logits)
            return top_k_gates(logits, self.top_k)

    def gates_for(self, member: nn.Module, x: Tensor, scale: float, dtype: torch.dtype) -> Tensor:
        """`(self(x) * scale).to(dtype)` for `member`, one of the adapted linears sharing this router.

        The first member to arrive runs the router; each other member gets that same tensor once (one
        router forward, one graph, one set of logits for the losses) when it passes the very same input
        tensor, unmodified since (version counter), and nothing else differs: router weights (version),
        forced gates, scale, dtype, grad mode, and the graph task (so the forward and activation
        checkpointing's recompute never mix). A member that arrives again recomputes (a new forward); one
        that brings another input before every member had its gates is a misconfigured group, refused.
        Once every member has its gates they are dropped: nothing outlives one forward of the parent
        module (its members run back to back).
        """
        if self.sharers == 1 or x.is_inference():
            # An inference tensor (torch.inference_mode, e.g. Lightning's validation) has no version
            # counter to prove it unchanged: each member runs the router, with the same result.
            return (self(x) * scale).to(dtype)
        state = (x._version, self.weight._version, scale, dtype, torch.is_grad_enabled(), _graph_task())
        shared = self._shared
        if (
            shared is not None
            and shared.input is x
            and shared.state == state
            and shared.forced is self.forced_gates
            and id(member) not in shared.taken
        ):
            shared.taken.add(id(member))
            if len(shared.taken) == self.sharers:
                self._shared = None
            return shared.gates
        if shared is not None and shared.input is not x and id(member) not in shared.taken:
            raise RuntimeError(
                f"a router shared by {self.sharers} adapted linears got two different inputs in one "
                "forward: MoELoRAConfig.shared_router_groups may only group linears of one module that "
                "read the very same tensor (q_proj, k_proj, v_proj of an attention block)"
            )
        gates = (self(x) * scale).to(dtype)
        self._shared = _SharedGates(x, state, self.forced_gates, gates, {id(member)})
        return gates

    def extra_repr(self) -> str:
        experts, in_features = self.weight.shape
        return f"in_features={in_features}, num_experts={experts}, top_k={self.top_k}, sharers={self.sharers}"
