"""Turn a MoE-LoRA adapter with fixed gates into what PEFT and vLLM serve as they are.

With gates g fixed, each adapted linear adds sum_e g_e * (alpha / r) * B_e A_e x: one LoRA whose A
stacks the A_e of the experts with g_e != 0 and whose B stacks their B_e, each multiplied by
g_e * alpha / r. Its rank is (experts kept) * r; PEFT's own scale is set to 1 (lora_alpha = rank) so
the folded B reproduces the mixture exactly. The merged format adds B A into the base weights.

Works from the adapter folder alone: the PEFT format never loads the base model.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

import torch
from peft import LoraConfig
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from moe.adapter_io import WEIGHTS_NAME, read_adapter_config
from moe.config import MoELoRAConfig

log = logging.getLogger(__name__)

PEFT_WEIGHTS_NAME = "adapter_model.safetensors"
# Beside every export: where it came from (checkpoint, gates, the project's base alias). PEFT and vLLM
# ignore it; adapter_config.json names the base by an id they resolve.
EXPORT_INFO_NAME = "export.json"

GateMode = Literal["one-hot", "observed"]


def choose_gates(document: dict, domain: str | None, average: bool, mode: GateMode) -> torch.Tensor:
    """The fixed gates [E] for one domain (`domain`) or for all of them (`average`).

    one-hot: the domain's own expert (config.domain_targets; average: every expert 1/E). observed: the domain's mean routing on
    held-out data as recorded in the adapter config's `observed_gates` (average: their mean over the
    domains); when the checkpoint holds none, says so and falls back to one-hot.
    """
    config = MoELoRAConfig.from_dict(document["moe"])
    domains = config.domains
    if (domain is None) == (not average):
        raise ValueError("choose exactly one of --domain NAME or --average")
    if domain is not None and domain not in domains:
        raise ValueError(f"--domain {domain!r} is not one of this adapter's expert domains {domains}")
    if mode not in ("one-hot", "observed"):
        raise ValueError(f"--gates {mode!r}: choose one-hot or observed")
    if mode == "observed":
        observed = document.get("observed_gates") or {}
        wanted = domains if average else [domain]
        absent = [name for name in wanted if name not in observed]
        if not absent:
            table = torch.tensor([observed[name] for name in wanted], dtype=torch.float64)
            if table.shape[-1] != config.num_experts or (table < 0).any():
                raise ValueError(
                    f"observed_gates must hold {config.num_experts} non-negative numbers per domain"
                )
            return table.mean(dim=0).float()
        log.warning("the checkpoint records no observed gates for %s: using one-hot gates", absent)
    if average:
        return torch.full((config.num_experts,), 1.0 / config.num_experts)
    expert = config.domain_targets[domains.index(domain)]
    return torch.nn.functional.one_hot(torch.tensor(expert), config.num_experts).float()


def fold_into_lora(
    tensors: dict[str, torch.Tensor], config: MoELoRAConfig, gates: torch.Tensor
) -> tuple[dict[str, torch.Tensor], int]:
    """(PEFT state dict with PEFT's key names, rank). Experts with a zero gate are dropped."""
    kept = torch.nonzero(gates).flatten()
    if kept.numel() == 0:
        raise ValueError("every gate is zero: the export would be the base model")
    rows = (kept.unsqueeze(-1) * config.r + torch.arange(config.r)).flatten()
    scale = (gates.double() * config.scaling)[kept].repeat_interleave(config.r)
    lora: dict[str, torch.Tensor] = {}
    for key in sorted(tensors):
        if not key.endswith(".lora_A"):
            continue
        module = key.removesuffix(".lora_A")
        a, b = tensors[key], tensors[f"{module}.lora_B"]
        prefix = f"base_model.model.{module}"
        lora[f"{prefix}.lora_A.weight"] = a[rows].contiguous()
        lora[f"{prefix}.lora_B.weight"] = (b[:, rows].double() * scale).to(b.dtype).contiguous()
    return lora, len(rows)


def export_peft(checkpoint: str | Path, out: str | Path, gates: torch.Tensor, base_id: str) -> int:
    """Write a plain PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors); returns its rank.

    `base_id` is what adapter_config.json names as the base (moe.base_model.public_base_id).
    """
    document = read_adapter_config(checkpoint)
    config = MoELoRAConfig.from_dict(document["moe"])
    tensors = load_file(Path(checkpoint) / WEIGHTS_NAME)
    lora, rank = fold_into_lora(tensors, config, gates)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(lora, out / f".{PEFT_WEIGHTS_NAME}.tmp", metadata={"format": "pt"})
    os.replace(out / f".{PEFT_WEIGHTS_NAME}.tmp", out / PEFT_WEIGHTS_NAME)
    LoraConfig(
        r=rank,
        lora_alpha=rank,  # PEFT scale 1: gates and alpha / r are already in B
        target_modules=config.target_modules,
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_id,
        inference_mode=True,
    ).save_pretrained(str(out))
    return rank


def merged_model(checkpoint: str | Path, gates: torch.Tensor, dtype: torch.dtype) -> PreTrainedModel:
    """The base model in `dtype` with the fixed-gate LoRA added into its weights (sums in float64)."""
    from moe.base_model import load_base_model

    document = read_adapter_config(checkpoint)
    config = MoELoRAConfig.from_dict(document["moe"])
    lora, _ = fold_into_lora(load_file(Path(checkpoint) / WEIGHTS_NAME), config, gates)
    model = load_base_model(document["base_model"], dtype=dtype)
    with torch.no_grad():
        for key in lora:
            if not key.endswith(".lora_A.weight"):
                continue
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            weight = model.get_submodule(module).weight
            delta = lora[key.replace("lora_A", "lora_B")].double() @ lora[key].double()
            weight.copy_((weight.double() + delta).to(weight.dtype))
    return model.eval()


def export_merged(checkpoint: str | Path, out: str | Path, gates: torch.Tensor, dtype: torch.dtype) -> None:
    """Write a full Hugging Face model folder (weights, config, tokenizer) with the LoRA added in."""
    from moe.base_model import load_tokenizer

    merged_model(checkpoint, gates, dtype).save_pretrained(out)
    load_tokenizer(read_adapter_config(checkpoint)["base_model"]).save_pretrained(out)


def write_export_info(out: str | Path, info: dict[str, Any]) -> Path:
    path = Path(out) / EXPORT_INFO_NAME
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def read_export_info(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / EXPORT_INFO_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def peft_export_base(folder: str | Path) -> str:
    """The base-model setting a PEFT export was trained on: the project's alias from export.json when
    present (`smollm2`, `tiny`), else adapter_config.json's base_model_name_or_path."""
    info = read_export_info(folder) or {}
    if info.get("base_model"):
        return info["base_model"]
    return json.loads((Path(folder) / "adapter_config.json").read_text())["base_model_name_or_path"]


def make_readable(folder: str | Path) -> None:
    """Files 0644, folders 0755: safetensors writes 0600, which a server running as another user cannot read."""
    for path in [Path(folder), *Path(folder).rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
