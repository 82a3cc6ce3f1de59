"""Attach the mixture to a Hugging Face causal LM, take it off again, and fix its routing.

Only the linear layers named in `config.target_modules` change (MistralForCausalLM, the Llama family
and any model whose attention projections are nn.Linear or a bitsandbytes subclass of it). Every base
parameter is frozen; the adapters and routers are the only trainable parameters. Targeted linears of one
parent module listed together in `config.shared_router_groups` (q/k/v) form one fused `AdapterGroup`
with one router, registered under the first of them in model order (`...self_attn.q_proj.router`):
that is its one name in `trainable_parameters` and adapter files. The model gets one `RoutingRecord`
(`model.moe_routing`) that every router writes to inside `moe.router.record_routing`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from moe.config import MoELoRAConfig
from moe.layer import AdapterGroup, MoELoRALinear
from moe.router import Router, RoutingRecord


def moe_layers(model: nn.Module) -> dict[str, MoELoRALinear]:
    """Every adapted linear by its module name, in model order."""
    return {name: module for name, module in model.named_modules() if isinstance(module, MoELoRALinear)}


def moe_routers(model: nn.Module) -> dict[str, Router]:
    """Every router once (a shared one counts once), by its name in `model`, in model order: the order
    in which a forward records their logits."""
    return {
        f"{name}.router": layer.router
        for name, layer in moe_layers(model).items()
        if hasattr(layer, "router")
    }


def attach_moe_lora(model: nn.Module, config: MoELoRAConfig) -> nn.Module:
    """Freeze `model` and wrap each targeted linear in a MoELoRALinear, in place; returns `model`."""
    if moe_layers(model):
        raise ValueError("the model already carries MoE-LoRA layers: detach_moe_lora(model) first")
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    linear_names = sorted({name.rsplit(".", 1)[-1] for name in linears})
    missing = [target for target in config.target_modules if target not in linear_names]
    if missing:
        raise ValueError(
            f"MoELoRAConfig.target_modules: {missing} name no linear layer of {type(model).__name__}; "
            f"its linear layers are {linear_names}"
        )
    model.requires_grad_(False)
    targets = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in config.target_modules
    ]
    record = RoutingRecord()
    groups: dict[tuple[str, str], list[MoELoRALinear]] = {}  # (parent, first member) -> members
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = MoELoRALinear(getattr(parent, child), config)
        setattr(parent, child, layer)
        present = [m for m in config.router_group(child) if f"{parent_name}.{m}".lstrip(".") in targets]
        groups.setdefault((parent_name, present[0]), []).append(layer)
    for (parent_name, _), members in groups.items():
        AdapterGroup(members, config, record, model.get_submodule(parent_name))
    model.moe_config = config
    model.moe_routing = record
    return model


def detach_moe_lora(model: nn.Module) -> nn.Module:
    """Put every wrapped linear back (the base weights were never touched); returns `model`."""
    for name, layer in moe_layers(model).items():
        layer.group.detach()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, getattr(parent, child).base)
    for attribute in ("moe_config", "moe_routing"):
        if hasattr(model, attribute):
            delattr(model, attribute)
    return model


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Adapter and router parameters by their full name in `model` (what an adapter file stores); a
    shared router once, under the first layer that holds it."""
    return {
        f"{layer_name}.{name}": param
        for layer_name, layer in moe_layers(model).items()
        for name, param in layer.named_parameters()
        if not name.startswith("base.")
    }


@contextmanager
def forced_gates(model: nn.Module, gates: Tensor | None) -> Iterator[None]:
    """Every router returns `gates` ([E], e.g. one-hot or a domain's observed routing) instead of its
    top-k choice while inside; None leaves routing as learned. Restores the previous state on exit."""
    routers = list(moe_routers(model).values())
    if not routers:
        raise ValueError("forced_gates: the model carries no MoE-LoRA layers")
    if gates is not None:
        experts = routers[0].weight.shape[0]
        if gates.shape != (experts,):
            raise ValueError(f"forced_gates: gates must have shape ({experts},), got {tuple(gates.shape)}")
        gates = gates.detach().to(device=routers[0].weight.device, dtype=torch.float32)
    previous = [router.forced_gates for router in routers]
    for router in routers:
        router.forced_gates = gates
    try:
        yield
    finally:
        for router, old in zip(routers, previous, strict=True):
            router.forced_gates = old
