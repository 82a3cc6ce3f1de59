"""Load what is evaluated or chatted with: a mixture checkpoint, an exported PEFT adapter, a merged
model folder, or the bare base model. The kind is read from the folder's files, so one
`--checkpoint` argument takes every form a stage produces or deploys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from moe.adapter_io import adapter_moe_config, load_adapter, read_adapter_config
from moe.base_model import default_dtype, load_base_model, load_tokenizer
from moe.export import peft_export_base
from moe.model import attach_moe_lora

BASE = "base"
MIXTURE, PEFT, MERGED = "mixture", "peft", "merged"


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    kind: str
    source: str
    base_model: str


def model_kind(source: str) -> str:
    """`base`, or the kind of folder `source` is; a clear error before any model loads otherwise."""
    if source == BASE:
        return BASE
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} does not exist: pass a checkpoint-final/ folder, an exported "
            "PEFT adapter or merged model folder, or `base`"
        )
    config = folder / "adapter_config.json"
    if config.is_file():
        document = json.loads(config.read_text())
        if document.get("format") == "moe-lora" and (folder / "adapter.safetensors").is_file():
            return MIXTURE
        if "peft_type" in document and (folder / "adapter_model.safetensors").is_file():
            return PEFT
    if (folder / "config.json").is_file() and (
        (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()
    ):
        return MERGED
    found = sorted(p.name for p in folder.iterdir())[:12]
    raise ValueError(
        f"{folder} is neither a mixture checkpoint (adapter.safetensors + adapter_config.json), "
        "a PEFT adapter (adapter_model.safetensors + adapter_config.json) nor a merged model "
        f"(config.json + model.safetensors); it holds {found}"
    )


def model_base(source: str, default: str | None) -> str:
    """The base model a source was built on (read from its files); `default` for `base` and merged."""
    kind = model_kind(source)
    if kind == MIXTURE:
        return read_adapter_config(source)["base_model"]
    if kind == PEFT:
        return peft_export_base(source)
    if kind == MERGED:
        return source
    if default is None:
        raise ValueError("`base` needs a base model: pass --base-model (a Hub id, a folder or tiny)")
    return default


def load_model(
    source: str,
    base_model: str | None = None,
    dtype: torch.dtype | None = None,
    load_in_4bit: bool = False,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load for inference (eval mode, no grad). base_model: what `base` means, and the base a
    mixture or adapter must have been built on when given (a mismatch stops before loading).
    dtype / load_in_4bit / attn_implementation: as the stage's `model:` section loads the base."""
    kind = model_kind(source)
    built_on = model_base(source, base_model)
    if kind in (MIXTURE, PEFT) and base_model is not None and built_on != base_model:
        raise ValueError(f"{source} was built on {built_on!r}, but the stage's base model is {base_model!r}")
    if kind == MERGED:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype or default_dtype(), attn_implementation=attn_implementation
        )
        has_tokenizer = (Path(source) / "tokenizer_config.json").is_file()
        tokenizer = load_tokenizer(source if has_tokenizer or base_model is None else base_model)
    else:
        model = load_base_model(
            built_on, dtype=dtype, load_in_4bit=load_in_4bit, attn_implementation=attn_implementation
        )
        tokenizer = load_tokenizer(built_on)
        if kind == MIXTURE:
            attach_moe_lora(model, adapter_moe_config(source))
            load_adapter(model, source)
        elif kind == PEFT:
            model = PeftModel.from_pretrained(model, source)
    if torch.cuda.is_available() and not getattr(model, "is_quantized", False):
        model.to("cuda")  # a 4-bit model is placed by bitsandbytes as it loads
    model.eval().requires_grad_(False)
    return LoadedModel(model, tokenizer, kind, source, built_on)
