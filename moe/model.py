"""Attach the mixture to a Hugging Face causal LM, take it off again, and fix its routing.

Only the linear layers named in `config.target_modules` change (MistralForCausalLM, the Llama family
and any model whose attention projections are nn.Linear or a bitsandbytes subclass of it). Every base
parameter is frozen; the adapters and routers are the only trainable parameters. Targeted linears of one
parent module listed together in `config.shared_router_groups` (q/k/v) share one router, registered
under the first of them in model order (`...self_attn.q_proj.router`): that is its one name in
`trainable_parameters` and adapter files.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from moe.config import MoELoRAConfig
from moe.layer import MoELoRALinear
from moe.router import Router


def moe_layers(model: nn.Module) -> dict[str, MoELoRALinear]:
    """Every adapted linear by its module name, in model order."""
    return {name: module for name, module in model.named_modules() if isinstance(module, MoELoRALinear)}


def moe_routers(model: nn.Module) -> dict[str, Router]:
    """Every router once (a shared one counts once), by its name in `model`, in model order."""
    routers: dict[str, Router] = {}
    seen: set[int] = set()
    for name, layer in moe_layers(model).items():
        if id(layer.router) not in seen:
            routers[f"{name}.router"] = layer.router
            seen.add(id(layer.router))
    return routers


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
    targeted = {(parent, child) for parent, _, child in (name.rpartition(".") for name in targets)}
    shared: dict[tuple[str, str], Router] = {}  # (parent, child) -> the router of the child's group
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = MoELoRALinear(getattr(parent, child), config, router=shared.get((parent_name, child)))
        members = [(parent_name, m) for m in config.router_group(child) if (parent_name, m) in targeted]
        layer.router.sharers = len(members)
        shared.update(dict.fromkeys(members, layer.router))
        setattr(parent, child, layer)
    model.moe_config = config
    return model


def detach_moe_lora(model: nn.Module) -> nn.Module:
    """Put every wrapped linear back (the base weights were never touched); returns `model`."""
    for name in moe_layers(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, getattr(parent, child).base)
    if hasattr(model, "moe_config"):
        del model.moe_config
    return model


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Adapter and router parameters by their full name in `model` (what an adapter file stores); a
    shared router once, under the first layer that holds it."""
    params: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for layer_name, layer in moe_layers(model).items():
        for name, param in layer.named_parameters():
            if not name.startswith("base.") and id(param) not in seen:
                params[f"{layer_name}.{name}"] = param
                seen.add(id(param))
    return params


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
