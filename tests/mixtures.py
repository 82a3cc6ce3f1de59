"""A mixture whose every adapter and router weight is off its initial value, for tests that compare
what a checkpoint exports or reloads: a fresh adapter's B matrices are zero, so it would behave as the
base model and such a comparison could not fail."""

from __future__ import annotations

import torch

from moe.base_model import load_base_model
from moe.config import MoELoRAConfig
from moe.model import attach_moe_lora, trainable_parameters


def perturbed_mixture(base_model: str, config: MoELoRAConfig, scale: float, seed: int = 0) -> torch.nn.Module:
    """The MoE-LoRA model on `base_model` (eval mode) with seeded N(0, scale^2) noise added to every
    trainable parameter."""
    torch.manual_seed(seed)
    model = attach_moe_lora(load_base_model(base_model), config).eval()
    with torch.no_grad():
        for param in trainable_parameters(model).values():
            param.add_(torch.randn_like(param) * scale)
    return model
