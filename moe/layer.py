"""One adapted linear: the frozen base plus a mixture of LoRA experts gated per token.

The experts are stacked, A as [E*r, in] and B as [out, E*r], and computed densely:

    y = base(x) + B @ ((A @ dropout(x)) * (gates * alpha / r) expanded to E*r)

Two matmuls per layer whatever the routing, no loop over experts and shapes that never depend on the
router's choice (safe for activation-checkpoint recompute and torch.compile). The scale alpha / r is
multiplied into the [N, E] gates, not into the [N, out] output. With fixed gates this is one LoRA of
rank E*r, which is what `moe.export` writes. Layers that read the same input may share one router
(`attach_moe_lora` passes it in); they then share its scaled gates too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from moe.config import MoELoRAConfig
from moe.router import Router


def base_features(base: nn.Module) -> tuple[int, int]:
    """(in, out) of a torch Linear or a subclass (bitsandbytes Linear4bit/Linear8bitLt subclass
    nn.Linear and keep these attributes; their packed weight's shape is not the layer's shape)."""
    return base.in_features, base.out_features


class MoELoRALinear(nn.Module):
    """Wraps `base` (its weight is not copied and stays frozen) with E stacked LoRA experts and a router
    (its own, or `router` shared with the other layers that read the same input)."""

    def __init__(self, base: nn.Linear, config: MoELoRAConfig, router: Router | None = None):
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
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        if router is None:
            router = Router(in_features, config.num_experts, config.top_k, device=device)
        if router.weight.shape != (config.num_experts, in_features):
            raise ValueError(
                f"a shared router maps {router.weight.shape[1]} features to {router.weight.shape[0]} "
                f"experts; this layer takes {in_features} features and has {config.num_experts} experts"
            )
        self.router = router

    def forward(self, x: Tensor) -> Tensor:
        result = self.base(x)
        # Without autocast the adapter runs in its own dtype (fp32 by default). Under autocast its
        # matmuls run in the autocast dtype (bf16) anyway, so the input is not cast up first (PEFT does,
        # and pays an [N, in] copy each way).
        adapter_input = x if torch.is_autocast_enabled(x.device.type) else x.to(self.lora_A.dtype)
        hidden = nn.functional.linear(self.dropout(adapter_input), self.lora_A)  # [..., E*r]
        # The router reads x itself (the tensor a shared router's group has in common), undropped;
        # gates [..., E] are computed in fp32, scaled, then cast to hidden's dtype.
        gates = self.router.gates_for(self, x, self.scaling, hidden.dtype)
        hidden = hidden.unflatten(-1, (self.num_experts, self.r)) * gates.unsqueeze(-1)
        update = nn.functional.linear(hidden.flatten(-2), self.lora_B)
        return result + update.to(result.dtype)

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, r={self.r}, scaling={self.scaling:g}"
