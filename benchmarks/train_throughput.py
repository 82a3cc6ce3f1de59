"""Training throughput of the real stage module against plain LoRA: tokens/s, peak memory, MFU, ratios.

    python -m benchmarks.train_throughput [--base-model NAME] [--steps 3] [--seq-len 2048] [--micro-batch 4]

Side by side in one run, each through a Lightning Trainer on the same packed rows (4 examples per
row, position ids restarting at each) with the same loss code (chunked cross-entropy):
  moe    MoELoRAModule as the stages train it: MoE-LoRA E4 top-2 on q/k/v/o, router losses
  peft   PEFT LoRA r16 on q/k/v/o
  lora   the efficient plain LoRA r16 (benchmarks.moe_overhead.PlainLoRALinear: no fp32 casts)
--base-model: anything moe.base_model.load_base_model accepts (`tiny`, a local folder such as a
SmolLM2-135M copy, a Hub id), or `wayfarer-2-12b-random` (the default on CUDA): the full
Wayfarer-2-12B architecture (40 layers, 131,074-token head) built from its config numbers with random
bf16 weights on the GPU, nothing downloaded. CUDA runs bf16-mixed with fused AdamW; CPU runs fp32.
Activation checkpointing is on (the stage YAMLs' setting) unless --no-activation-checkpointing.

Peak memory: on CUDA the allocator's peak during the variant; on CPU each variant runs in a fresh
subprocess of this script and reports its peak resident set (ru_maxrss, includes the base model).
MFU counts model FLOPs only (no recompute): 4 x parameters per token for the frozen linears
(forward + input gradients; LoRA skips the base weight gradients) plus causal attention over the
full row, divided by the GPU's dense bf16 peak. HFU (moe only) counts what the GPU executes: the
FLOPs per token of the same step on fake tensors (moe.plan: recompute included, attention dense),
which also predicts the peak of live tensors; on CUDA the measured peak is compared with it
(peak_vs_predicted). A variant that runs out of memory is reported as null.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import subprocess
import sys
import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import MistralConfig, MistralForCausalLM

from benchmarks.moe_overhead import PlainLoRALinear
from moe import lightning_module, plan
from moe.batch import Collate
from moe.base_model import load_tokenizer, pick_attention, wayfarer2_config
from moe.config import MoELoRAConfig
from moe.losses import lm_loss_sum, next_token_targets

EXAMPLES_PER_ROW = 4
RANDOM_12B = "wayfarer-2-12b-random"
VARIANTS = ("moe", "peft", "lora")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def random_12b(
    *args: Any, dtype: torch.dtype | None = None, attn_implementation: str | None = None, **kwargs: Any
) -> MistralForCausalLM:
    """Stands in for load_base_model on CUDA: the same frozen MistralForCausalLM, random bf16 weights
    initialised on the GPU (seconds, not a 24 GB download)."""
    with torch.device("cuda"):
        model = MistralForCausalLM._from_config(
            wayfarer2_config(),
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

    def rows_per_epoch(self) -> int:
        """What the module's schedule counts (the stages' DataModule gives the same)."""
        return len(self.dataset)

    def train_dataloader(self) -> DataLoader:
        # The stages' collate: packed rows plus the flattened example boundaries flash-attn needs.
        return DataLoader(self.dataset, batch_size=self.micro_batch_size, collate_fn=Collate(pad_token_id=0))


class LoRAModule(lightning_module.MoELoRAModule):
    """The stage module with a plain LoRA (PEFT's or the efficient one) instead of the mixture: the same
    base loading, data path, chunked loss, optimizer and schedule; no routers, so no router losses."""

    def __init__(self, kind: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.kind = kind

    def configure_model(self) -> None:
        if self.model is not None:
            return
        h = self.hparams
        model = lightning_module.load_base_model(
            h.base_model,
            dtype=lightning_module.DTYPES[h.dtype] if h.dtype else lightning_module.default_dtype(),
        )
        if h.activation_checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
        config = self.moe_config
        if self.kind == "peft":
            # In place (the model stays a MistralForCausalLM); adapters in fp32 as the mixture's are.
            inject_adapter_in_model(LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                               target_modules=TARGETS), model)  # fmt: skip
            for name, param in model.named_parameters():
                if "lora_" in name:
                    param.data = param.data.float()
        else:
            for name, module in list(model.named_modules()):
                if name.rsplit(".", 1)[-1] in TARGETS and isinstance(module, nn.Linear):
                    parent, _, child = name.rpartition(".")
                    setattr(model.get_submodule(parent), child, PlainLoRALinear(module, config))
        self.model = model

    def _forward(self, batch: dict[str, Any]) -> lightning_module.Forward:
        hidden = self.model.base_model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).last_hidden_state
        targets = next_token_targets(batch["labels"], batch["position_ids"])
        lm_sum, count = lm_loss_sum(
            hidden, self.model.get_output_embeddings(), targets, self.hparams.loss_chunk_tokens
        )
        zero = lm_sum.new_zeros(())
        return lightning_module.Forward(
            lm_sum, count, dict.fromkeys(("balance", "z", "domain"), zero), zero, batch
        )


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


def on_paper(args: argparse.Namespace, cuda: bool) -> dict[str, Any]:
    """The moe variant's step on fake tensors (moe.plan) at this run's settings: the predicted peak of
    live tensors and the FLOPs per token the GPU executes, recompute included."""
    base = wayfarer2_config() if args.base_model == RANDOM_12B else plan.base_config_for(args.base_model)
    settings = plan.StepSettings(
        micro_batch=args.micro_batch,
        seq_len=args.seq_len,
        checkpointing=1 if args.activation_checkpointing else None,
        precision="bf16-mixed" if cuda else "32-true",
    )
    return plan.extrapolated(base, settings, {"moe": MoELoRAConfig()}).summary()


def build_module(variant: str, args: argparse.Namespace) -> lightning_module.MoELoRAModule:
    common = {
        "base_model": args.base_model,
        "moe": MoELoRAConfig(),
        "warmup_steps": 1,
        "activation_checkpointing": args.activation_checkpointing,
    }
    if variant == "moe":
        return lightning_module.MoELoRAModule(**common)
    return LoRAModule(variant, **common)


def vocab_size(base_model: str) -> int:
    return wayfarer2_config().vocab_size if base_model == RANDOM_12B else len(load_tokenizer(base_model))


def run_variant(variant: str, args: argparse.Namespace, cuda: bool) -> dict[str, Any] | None:
    module = build_module(variant, args)
    rows = PackedRows(
        args.micro_batch * (args.warmup + args.steps), args.seq_len, vocab_size(args.base_model), 4
    )
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
        print(f"{variant}: out of memory", file=sys.stderr)
        return None
    finally:
        config = module.model.config if module.model is not None else None
        trainable = (
            sum(p.numel() for p in module.model.parameters() if p.requires_grad) if module.model else None
        )
        del module, trainer
        gc.collect()  # the base of this variant must go before the next one is built
        if cuda:
            torch.cuda.empty_cache()
    measured = sorted(times.times[args.warmup :])
    step = measured[len(measured) // 2]
    tokens_per_second = args.micro_batch * args.seq_len / step
    name = (
        torch.cuda.get_device_name()
        if cuda
        else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    )
    peak = next((v for k, v in plan.PEAK_FLOPS.items() if k in name), None) if cuda else None
    if cuda:
        peak_memory = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB on Linux
    return {
        "variant": variant,
        "tokens_per_second": round(tokens_per_second, 1),
        "step_seconds": round(step, 4),
        "mfu": round(tokens_per_second * flops_per_token(config, args.seq_len) / peak, 4) if peak else None,
        "peak_memory_gb": round(peak_memory, 3),
        "peak_memory_metric": "cuda_max_allocated" if cuda else "process_max_rss",
        "trainable_parameters": trainable,
        "device": name,
        "layers": config.num_hidden_layers,
    }


def run_in_subprocess(variant: str, argv: list[str]) -> dict[str, Any] | None:
    """One variant in a fresh process (so its peak RSS is its own); its last stdout line is its JSON."""
    command = [sys.executable, "-m", "benchmarks.train_throughput", *argv, "--only", variant]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
        raise RuntimeError(f"variant {variant} failed (exit {result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default=None, help=f"default {RANDOM_12B} on CUDA, tiny on CPU")
    parser.add_argument("--steps", type=int, default=3, help="measured optimizer steps (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured first steps")
    parser.add_argument("--seq-len", type=int, default=None, help="default 2048 on CUDA, 256 on CPU")
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--activation-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--only", choices=VARIANTS, help=argparse.SUPPRESS)  # one variant, in a subprocess
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    cuda = torch.cuda.is_available()
    args.base_model = args.base_model or (RANDOM_12B if cuda else "tiny")
    args.seq_len = args.seq_len or (2048 if cuda else 256)
    if args.base_model == RANDOM_12B:
        if not cuda:
            raise SystemExit(
                f"--base-model {RANDOM_12B} builds 12B random weights on the GPU: CUDA is needed"
            )
        # The one substitution: random weights from the config numbers instead of a 24 GB download.
        lightning_module.load_base_model = random_12b
    if args.only:
        result = run_variant(args.only, args, cuda)
        print(json.dumps(result))
        return result or {}
    if cuda:
        variants = {name: run_variant(name, args, cuda) for name in args.variants}
    else:
        forwarded = [a for a in raw if a != "--variants" and a not in VARIANTS]
        variants = {name: run_in_subprocess(name, forwarded) for name in args.variants}
    paper = on_paper(args, cuda)
    moe = variants.get("moe") or {}
    peak_flops = next((v for k, v in plan.PEAK_FLOPS.items() if k in (moe.get("device") or "")), None) if cuda else None
    if moe:
        moe["hardware_gflop_per_token"] = paper["hardware_gflop_per_token"]
        moe["hfu"] = (
            round(moe["tokens_per_second"] * paper["hardware_flops_per_token"] / peak_flops, 4) if peak_flops else None
        )
        moe["predicted_peak_gib"] = paper["peak_gib"]
        # Only the CUDA allocator's peak counts the same thing (live tensors) as the prediction.
        moe["peak_vs_predicted"] = round(moe["peak_memory_gb"] / paper["peak_gib"], 4) if cuda else None
    print(
        f"base {args.base_model}, seq {args.seq_len} x micro-batch {args.micro_batch}, "
        f"activation checkpointing {args.activation_checkpointing}"
    )
    print(f"{'variant':8} {'tokens/s':>10} {'step s':>8} {'mfu':>6} {'peak GiB':>8} {'trainable':>11}")
    for name, result in variants.items():
        if result is None:
            print(f"{name:8} {'out of memory':>10}")
        else:
            print(f"{name:8} {result['tokens_per_second']:10.1f} {result['step_seconds']:8.3f} "
                  f"{result['mfu'] if result['mfu'] is not None else '-':>6} {result['peak_memory_gb']:8.3f} "
                  f"{result['trainable_parameters']:11d}")  # fmt: skip

    def ratio(a: str, b: str, key: str) -> float | None:
        x, y = variants.get(a), variants.get(b)
        return round(x[key] / y[key], 4) if x and y else None

    if moe:
        print(f"moe on fake tensors: {paper['model_gflop_per_token']:.2f} GFLOP/token model, "
              f"{paper['hardware_gflop_per_token']:.2f} executed with recompute (HFU {moe['hfu']}); predicted "
              f"peak {paper['peak_gib']:.3f} GiB of live tensors, measured/predicted {moe['peak_vs_predicted']}")  # fmt: skip
    summary = {
        "base_model": args.base_model,
        "tokens_per_second": moe.get("tokens_per_second"),
        "mfu": moe.get("mfu"),
        "hfu": moe.get("hfu"),
        "hardware_gflop_per_token": moe.get("hardware_gflop_per_token"),
        "predicted_peak_gib": moe.get("predicted_peak_gib"),
        "peak_vs_predicted": moe.get("peak_vs_predicted"),
        "peak_memory_gb": moe.get("peak_memory_gb"),
        "device": moe.get("device"),
        "layers": moe.get("layers"),
        "seq_len": args.seq_len,
        "micro_batch": args.micro_batch,
        "activation_checkpointing": args.activation_checkpointing,
        "moe_vs_lora_step_time": ratio("moe", "lora", "step_seconds"),
        "moe_vs_peft_step_time": ratio("moe", "peft", "step_seconds"),
        "lora_vs_peft_step_time": ratio("lora", "peft", "step_seconds"),
        "moe_vs_lora_peak_memory": ratio("moe", "lora", "peak_memory_gb"),
        "variants": variants,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
