"""Export a MoE-LoRA checkpoint with fixed gates to a plain PEFT LoRA adapter or a merged model.

    python -m stages.export --checkpoint runs/stage3/checkpoint-final --out exports/psychology \
        --domain psychology --gates observed --format peft

peft: `adapter_config.json` + `adapter_model.safetensors` that `PeftModel.from_pretrained(base, OUT)` and
vLLM (`--enable-lora --max-lora-rank N`, N printed) load with no code of ours. merged: a full Hugging
Face model folder with its tokenizer for `AutoModelForCausalLM.from_pretrained(OUT)`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from moe.adapter_io import read_adapter_config
from moe.export import choose_gates, export_merged, export_peft, vllm_max_lora_rank

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    # Plain argparse: six flags of a one-shot command (--domain/--average exclusive) need no config file.
    parser = argparse.ArgumentParser(prog="python -m stages.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="adapter folder (checkpoint-final/)")
    parser.add_argument("--out", required=True, type=Path, help="new folder to write")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--domain", help="export the mixture as routed for this expert domain")
    which.add_argument("--average", action="store_true", help="export the mixture averaged over all domains")
    parser.add_argument("--gates", choices=["one-hot", "observed"], default="one-hot",
                        help="one-hot: the domain's own expert; observed: its mean routing on held-out data")
    parser.add_argument("--format", choices=["peft", "merged"], default="peft")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16",
                        help="dtype of the merged model (peft format keeps the adapter's dtype)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    document = read_adapter_config(args.checkpoint)  # fails before any model or weight is read
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"--out {args.out} exists and is not empty: choose a new folder or remove it")
    gates = choose_gates(document, args.domain, args.average, args.gates)
    domains = document["moe"]["expert_domains"]
    print("gates: " + ", ".join(f"{name} {value:.4f}" for name, value in zip(domains, gates.tolist())))
    if args.format == "peft":
        rank = export_peft(args.checkpoint, args.out, gates)
        print(f"wrote a PEFT LoRA adapter of rank {rank} to {args.out}")
        print(f"vLLM: --enable-lora --max-lora-rank {vllm_max_lora_rank(rank)}")
    else:
        export_merged(args.checkpoint, args.out, gates, DTYPES[args.dtype])
        print(f"wrote a merged {args.dtype} model with its tokenizer to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
