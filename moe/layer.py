"""Adapted linears: each frozen base plus a mixture of LoRA experts gated per token.

The experts of one linear are stacked, A as [E*r, in] and B as [out, E*r], and computed densely:

    y = base(x) + B @ (dropout(A @ x) * (gates * alpha / r) expanded to E*r)

Linears that read the same input (q/k/v of an attention block) form one `AdapterGroup` with one
router: their A projections and the router logits come out of ONE matmul over the shared input
([A_q; A_k; A_v; W_router] @ x), with one dropout mask on that [N, 3*E*r] result (the adapter's rank
space; the router reads the logits of the undropped input). Each B then maps its slice. No loop over
experts and shapes that never depend on the routing (safe for activation-checkpoint recompute and
torch.compile). With fixed gates each linear adds exactly one LoRA of rank E*r (what `moe.export`
writes); dropout acts only in training.

A shared group runs once per forward of its parent module (a forward pre-hook on e.g. `self_attn`,
which calls q_proj, k_proj and v_proj on the very input the hook sees) and hands each member its
update for that call: one owner computes the shared thing, nothing is keyed on tensor identity.
A group of one linear (o_proj) runs inside that linear's forward.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from moe.config import MoELoRAConfig
from moe.router import Router, RoutingRecord


def base_features(base: nn.Module) -> tuple[int, int]:
    """(in, out) of a torch Linear or a subclass (bitsandbytes Linear4bit/Linear8bitLt subclass
    nn.Linear and keep these attributes; their packed weight's shape is not the layer's shape)."""
    return base.in_features, base.out_features


class MoELoRALinear(nn.Module):
    """Wraps `base` (its weight is not copied and stays frozen) with E stacked LoRA experts; the update
    comes from the layer's `AdapterGroup` (set by `AdapterGroup.__init__`)."""

    def __init__(self, base: nn.Linear, config: MoELoRAConfig):
        super().__init__()
        in_features, out_features = base_features(base)
        device = next(base.parameters()).device
        rank = config.num_experts * config.r
        dtype = config.torch_adapter_dtype
        self.base = base
        self.num_experts = config.num_experts
        self.r = config.r
        self.scaling = config.scaling
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, dtype=dtype, device=device))
        # PEFT's init for A; each expert's r rows are independent draws. B = 0: the output is unchanged.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.group: AdapterGroup | None = None

    def forward(self, x: Tensor) -> Tensor:
        result = self.base(x)
        update = self.group.update_for(self, x)
        return result + update.to(result.dtype)

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, r={self.r}, scaling={self.scaling:g}"


class AdapterGroup:
    """The adapted linears of one parent that read one input, their router, and the fused computation.

    Not an nn.Module: the parameters live in the members (`<member>.lora_A`, `.lora_B`) and the router
    under the first member (`<first>.router.weight`), so adapter files keep one name per weight.
    """

    def __init__(
        self,
        members: list[MoELoRALinear],
        config: MoELoRAConfig,
        record: RoutingRecord,
        parent: nn.Module | None,
    ):
        in_features = members[0].lora_A.shape[1]
        wrong = [m for m in members if m.lora_A.shape[1] != in_features]
        if wrong:
            raise ValueError(
                f"linears sharing a router must read inputs of one size; got {[m.lora_A.shape[1] for m in members]}"
            )
        self.members = members
        self.top_k = config.top_k
        self.dropout = config.dropout
        self.rank = config.num_experts * config.r
        self.r = config.r
        self.scaling = config.scaling
        first = members[0]
        first.router = Router(
            in_features, config.num_experts, config.top_k, record, device=first.lora_A.device
        )
        self.router = first.router
        self.pending: list[Tensor | None] = [None] * len(members)
        for index, member in enumerate(members):
            member.group = self
            member.group_index = index
        self.shared = len(members) > 1
        self._hook = None  # the parent's pre-hook handle; only attach() and detach() touch it
        if self.shared:
            if parent is None:
                raise ValueError(
                    "a shared adapter group needs the parent module whose input its members read"
                )
            self.attach(parent)

    # -- the fused computation -------------------------------------------------------------------
    def updates(self, x: Tensor, training: bool) -> list[Tensor]:
        """Each member's update [..., out_m] for input x, from one matmul over x."""
        experts = self.router.weight.shape[0]
        weight = torch.cat([m.lora_A for m in self.members] + [self.router.weight])  # [M*E*r + E, in]
        # Under autocast the matmul runs in the autocast dtype (it casts the small weight, and x if
        # needed); without it in x's dtype (the weight is cast, never the [N, in] input). On a GPU
        # the bf16 matmul accumulates in fp32; only the [N, E] logits are then rounded once before
        # they are taken to fp32 for routing.
        if not torch.is_autocast_enabled(x.device.type):
            weight = weight.to(x.dtype)
        fused = nn.functional.linear(x, weight)
        hidden, logits = fused[..., :-experts], fused[..., -experts:]
        gates = self.router.route(logits.float()) * self.scaling  # [..., E] fp32
        hidden = nn.functional.dropout(hidden, self.dropout, training) if self.dropout else hidden
        # [..., M, E, r] * [..., 1, E, 1]: each expert's r units scaled by its gate, by broadcasting.
        hidden = (
            hidden.unflatten(-1, (len(self.members), experts, self.r))
            * gates.to(hidden.dtype)[..., None, :, None]
        )
        return [
            nn.functional.linear(hidden[..., index, :, :].flatten(-2), member.lora_B.to(hidden.dtype))
            for index, member in enumerate(self.members)
        ]

    def update_for(self, member: MoELoRALinear, x: Tensor) -> Tensor:
        if not self.shared:
            return self.updates(x, member.training)[0]
        index = member.group_index
        update = self.pending[index]
        if update is None:
            raise RuntimeError(
                f"{type(member).__name__} of a shared router group ran outside its parent's forward (or "
                "twice in one): MoELoRAConfig.shared_router_groups may only group linears that their "
                "parent module calls once each on its own input (q_proj, k_proj, v_proj of attention)"
            )
        self.pending[index] = None
        if update.shape[:-1] != x.shape[:-1]:
            raise RuntimeError(
                f"a shared router group computed updates for input {tuple(update.shape[:-1])} but the member "
                f"got {tuple(x.shape[:-1])}: its linears do not read their parent's input"
            )
        return update

    def _before_parent(self, parent: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        self.pending = list(self.updates(x, parent.training))

    def attach(self, parent: nn.Module) -> None:
        """Run this shared group before each forward of `parent` (the module that calls its members)."""
        self.detach()
        self._hook = parent.register_forward_pre_hook(self._before_parent, with_kwargs=True)

    def detach(self) -> None:
        """Remove the parent hook (moe.model.detach_moe_lora)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
