"""Training throughput of the real stage module: tokens/s, model FLOPs utilisation, peak memory.

    python -m benchmarks.train_throughput [--steps 5] [--seq-len 2048] [--micro-batch 4]

On CUDA: the full Wayfarer-2-12B architecture (40 layers, 131,074-token head) built from its config
numbers with random bf16 weights (nothing downloaded), bf16-mixed, fused AdamW; on CPU: the built-in
tiny model in fp32. Both run MoELoRAModule through a Lightning Trainer on packed rows (4 examples
per row, position ids restarting at each), with activation checkpointing on (the stage YAMLs'
setting) and off, side by side in one run. A variant that runs out of memory is reported as null.

MFU counts model FLOPs only (no recompute): 4 x parameters per token for the frozen linears
(forward + input gradients; LoRA skips the base weight gradients) plus causal attention over the
full row (what SDPA computes on packed rows), divided by the GPU's dense bf16 peak.
The last line is one JSON object: tokens_per_second, mfu, peak_memory_gb, device, layers (those of
the checkpointing variant) and the same figures for each variant.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from torch.utils.data import DataLoader, Dataset
from transformers import MistralConfig, MistralForCausalLM

import moe.lightning_module as lightning_module
from moe.base_model import pick_attention
from moe.config import MoELoRAConfig

# Dense bf16 tensor-core peaks (vendor datasheets, SXM parts).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
EXAMPLES_PER_ROW = 4


def wayfarer_12b() -> MistralConfig:
    """LatitudeGames/Wayfarer-2-12B's architecture (FACTS.md); weights are random."""
    return MistralConfig(
        vocab_size=131074,
        hidden_size=5120,
        intermediate_size=14336,
        num_hidden_layers=40,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=131072,
        rope_theta=1e6,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        sliding_window=None,
    )


def random_12b(
    *args: Any, dtype: torch.dtype | None = None, attn_implementation: str | None = None, **kwargs: Any
) -> MistralForCausalLM:
    """Stands in for load_base_model on CUDA: the same frozen MistralForCausalLM, random bf16 weights
    initialised on the GPU (seconds, not a 24 GB download)."""
    with torch.device("cuda"):
        model = MistralForCausalLM._from_config(
            wayfarer_12b(),
            dtype=dtype or torch.bfloat16,
            attn_implementation=pick_attention(attn_implementation),
        )
    return model.requires_grad_(False)


class PackedRows(Dataset):
    """Rows of `examples` equal examples with restarting position ids, labels on every token."""

    def __init__(self, rows: int, seq_len: int, vocab: int, domains: int, examples: int = EXAMPLES_PER_ROW):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, vocab, (rows, seq_len), generator=generator)
        length = seq_len // examples
        self.positions = torch.arange(seq_len) % length
        self.domains = (torch.arange(seq_len) // length) % domains

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.ids[i]
        return {
            "input_ids": ids,
            "labels": ids,
            "position_ids": self.positions,
            "domain_ids": self.domains,
            "token_mask": torch.ones_like(ids, dtype=torch.bool),
        }


class Rows(LightningDataModule):
    def __init__(self, dataset: PackedRows, micro_batch_size: int, max_seq_length: int):
        super().__init__()
        self.dataset, self.micro_batch_size, self.max_seq_length = dataset, micro_batch_size, max_seq_length

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.micro_batch_size)


class StepTimes(Callback):
    """Wall time of each optimizer step (CUDA synchronised)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        _sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        _sync()
        self.times.append(time.perf_counter() - self._start)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def flops_per_token(config: MistralConfig, seq_len: int) -> float:
    """Model FLOPs per trained token: 4N for the frozen linears (incl. the head) + causal attention."""
    h, kv = config.hidden_size, config.num_key_value_heads * config.head_dim
    q = config.num_attention_heads * config.head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * config.intermediate_size
    linear = config.num_hidden_layers * per_layer + h * config.vocab_size
    # QK^T and AV over on average seq_len / 2 keys, forward 2 FLOPs per MAC, backward twice forward.
    attention = 3 * 2 * 2 * config.num_hidden_layers * (seq_len / 2) * q
    return 4 * linear + attention


def run_variant(checkpointing: bool, args: argparse.Namespace, cuda: bool) -> dict[str, Any] | None:
    base_model = "wayfarer-2-12b-random" if cuda else "tiny"
    module = lightning_module.MoELoRAModule(
        base_model=base_model,
        moe=MoELoRAConfig(),
        warmup_steps=1,
        activation_checkpointing=checkpointing,
    )
    config = wayfarer_12b() if cuda else None
    vocab = config.vocab_size if cuda else 2048
    rows = PackedRows(args.micro_batch * (args.warmup + args.steps), args.seq_len, vocab, 4)
    times = StepTimes()
    trainer = Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision="bf16-mixed" if cuda else "32-true",
        max_steps=args.warmup + args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        gradient_clip_val=1.0,
        callbacks=[times],
    )
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.fit(module, datamodule=Rows(rows, args.micro_batch, args.seq_len))
    except torch.OutOfMemoryError:
        print(f"activation checkpointing {checkpointing}: out of memory", file=sys.stderr)
        return None
    finally:
        layers = module.model.config.num_hidden_layers if module.model is not None else None
        config = config or (module.model.config if module.model is not None else None)
        del module, trainer
        gc.collect()  # the 24 GB base of this variant must go before the next one is built
        if cuda:
            torch.cuda.empty_cache()
    measured = sorted(times.times[args.warmup :])
    step = measured[len(measured) // 2]
    tokens_per_second = args.micro_batch * args.seq_len / step
    cpu = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    name = torch.cuda.get_device_name() if cuda else cpu
    peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None) if cuda else None
    return {
        "activation_checkpointing": checkpointing,
        "tokens_per_second": round(tokens_per_second, 1),
        "step_seconds": round(step, 4),
        "mfu": round(tokens_per_second * flops_per_token(config, args.seq_len) / peak, 4) if peak else None,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "device": name,
        "layers": layers,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="measured optimizer steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured first steps")
    parser.add_argument("--seq-len", type=int, default=None, help="default 2048 on CUDA, 256 on CPU")
    parser.add_argument("--micro-batch", type=int, default=4)
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    args.seq_len = args.seq_len or (2048 if cuda else 256)
    if cuda:
        # The one substitution: random weights from the config numbers instead of a 24 GB download.
        lightning_module.load_base_model = random_12b
    variants = {flag: run_variant(flag, args, cuda) for flag in (True, False)}
    print(f"{'checkpointing':14} {'tokens/s':>10} {'step s':>8} {'mfu':>6} {'peak GB':>8}")
    for flag, result in variants.items():
        if result is None:
            print(f"{str(flag):14} {'out of memory':>10}")
        else:
            print(f"{str(flag):14} {result['tokens_per_second']:10.1f} {result['step_seconds']:8.3f} "
                  f"{result['mfu'] if result['mfu'] is not None else '-':>6} "
                  f"{result['peak_memory_gb'] if result['peak_memory_gb'] is not None else '-':>8}")  # fmt: skip
    main_variant = variants[True]
    summary = {
        **{k: main_variant[k] for k in ("tokens_per_second", "mfu", "peak_memory_gb", "device", "layers")},
        "seq_len": args.seq_len,
        "micro_batch": args.micro_batch,
        "with_checkpointing": variants[True],
        "without_checkpointing": variants[False],
        "checkpointing_slowdown": (
            round(variants[False]["tokens_per_second"] / main_variant["tokens_per_second"], 3)
            if variants[False]
            else None
        ),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
