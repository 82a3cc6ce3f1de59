"""Adapter folders: `adapter.safetensors` (adapter and router weights by model parameter name) and
`adapter_config.json` (the MoE config, base model, versions, extras such as observed gates).

Never pickled. Both files are written to temporary names and renamed into place, config last, so a
folder with a config always has its complete weights. Loading checks every key and shape.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from moe.config import MoELoRAConfig
from moe.model import trainable_parameters

WEIGHTS_NAME = "adapter.safetensors"
CONFIG_NAME = "adapter_config.json"
FORMAT = "moe-lora"
# 2: q/k/v share one router (MoELoRAConfig.shared_router_groups); version 1 had one per adapted linear.
FORMAT_VERSION = 2
RESERVED_KEYS = {"format", "format_version", "moe", "base_model", "library_version", "torch_version"}


def library_version() -> str:
    try:
        return metadata.version("therapeutic-moe")
    except metadata.PackageNotFoundError:  # run from a source checkout without installing
        return "unknown"


def save_adapter(
    model: nn.Module | dict[str, torch.Tensor],
    directory: str | Path,
    config: MoELoRAConfig,
    base_model: str,
    extra: dict | None = None,
) -> Path:
    """Write the model's adapter and router weights and their config to `directory`; returns it.

    `model` may also be those weights by name (moe.model.trainable_parameters' names), e.g. gathered
    at full shape from FSDP shards (MoELoRAModule.adapter_tensors)."""
    directory = Path(directory)
    extra = extra or {}
    clash = sorted(RESERVED_KEYS & set(extra))
    if clash:
        raise ValueError(f"save_adapter: extra keys {clash} are reserved for the adapter config itself")
    weights = trainable_parameters(model) if isinstance(model, nn.Module) else model
    tensors = {name: param.detach().contiguous() for name, param in weights.items()}
    if not tensors:
        raise ValueError("save_adapter: the model carries no MoE-LoRA layers (attach_moe_lora first)")
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "moe": config.to_dict(),
        "base_model": base_model,
        "library_version": library_version(),
        "torch_version": torch.__version__,
        **extra,
    }
    directory.mkdir(parents=True, exist_ok=True)
    weights, config_file = directory / WEIGHTS_NAME, directory / CONFIG_NAME
    config_file.unlink(missing_ok=True)  # a folder with a config always holds its complete weights
    save_file(tensors, directory / f".{WEIGHTS_NAME}.tmp", metadata={"format": "pt"})
    os.replace(directory / f".{WEIGHTS_NAME}.tmp", weights)
    (directory / f".{CONFIG_NAME}.tmp").write_text(json.dumps(document, indent=2) + "\n")
    os.replace(directory / f".{CONFIG_NAME}.tmp", config_file)
    return directory


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    """The folder's adapter_config.json, checked to be ours (no model, no weights read)."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no adapter config; is {directory} an adapter folder (written by save_adapter)?"
        )
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if document.get("format") != FORMAT or document.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format {document.get('format')!r} version {document.get('format_version')!r}, expected "
            f"{FORMAT!r} version {FORMAT_VERSION} (a plain PEFT adapter is an export, not a checkpoint)"
        )
    MoELoRAConfig.from_dict(document["moe"])  # fails early on a config this code cannot build
    return document


def adapter_moe_config(directory: str | Path) -> MoELoRAConfig:
    return MoELoRAConfig.from_dict(read_adapter_config(directory)["moe"])


def check_adapter_compatible(directory: str | Path, config: MoELoRAConfig, base_model: str) -> None:
    """Refuse, before any model loads, an adapter built for another base model or mixture shape."""
    stored = read_adapter_config(directory)
    problems = []
    if stored["base_model"] != base_model:
        problems.append(f"base_model {stored['base_model']!r} != {base_model!r}")
    for name in ("num_experts", "r", "target_modules", "shared_router_groups", "expert_domains"):
        if stored["moe"][name] != getattr(config, name):
            problems.append(f"{name} {stored['moe'][name]!r} != {getattr(config, name)!r}")
    if problems:
        where = Path(directory) / CONFIG_NAME
        raise ValueError(f"{where} was built for another model: " + "; ".join(problems))


def load_adapter(model: nn.Module, directory: str | Path) -> dict[str, Any]:
    """Copy the folder's weights into the model's adapter and router parameters; returns its config.

    Every key and shape must match, and the mixture's alpha, top_k and domains: the error names the
    missing, extra and mis-shaped keys and differing settings. Build the model with
    `adapter_moe_config(directory)` to get a matching mixture.
    """
    document = read_adapter_config(directory)
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: adapter weights missing")
    params = trainable_parameters(model)
    device = next(iter(params.values())).device if params else "cpu"
    tensors = load_file(path, device=str(device))
    missing = sorted(set(params) - set(tensors))
    extra = sorted(set(tensors) - set(params))
    misshaped = sorted(
        f"{name} (file {tuple(tensors[name].shape)}, model {tuple(params[name].shape)})"
        for name in set(params) & set(tensors)
        if tensors[name].shape != params[name].shape
    )
    stored = document["moe"]
    config = getattr(model, "moe_config", None)
    differing = [
        f"{name} (file {stored[name]!r}, model {getattr(config, name)!r})"
        for name in ("alpha", "top_k", "expert_domains")
        if config is not None and stored[name] != getattr(config, name)
    ]
    if missing or extra or misshaped or differing:
        raise ValueError(
            f"{path} does not fit this model (adapter: {stored['num_experts']} experts, r {stored['r']}, "
            f"targets {stored['target_modules']}, base {document['base_model']!r}):"
            + _listing("missing", missing)
            + _listing("unexpected", extra)
            + _listing("mis-shaped", misshaped)
            + _listing("differing config", differing)
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name])
    return document


def _listing(label: str, keys: list[str], limit: int = 8) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
    return f"\n  {len(keys)} {label} key(s): {shown}"
