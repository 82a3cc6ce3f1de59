"""The figures of benchmarks/gpu_check.sh, one JSON line each (a line per figure, never a table).

    python -m benchmarks.gpu_checks throughput [--dry-run]   # 12B dims: MoE-LoRA vs plain LoRA step
    python -m benchmarks.gpu_checks plan [--dry-run]         # 12B: shipped plan vs full checkpointing
    python -m benchmarks.gpu_checks packing [--dry-run]      # packed isolation, flash_attention_2 + sdpa, bf16
    python -m benchmarks.gpu_checks four-bit                 # bitsandbytes 4-bit load + one training step

--dry-run runs the same code on the CPU at toy size (tiny model, fp32, sdpa/eager, no quantisation) so
that everything but the CUDA kernels and bitsandbytes is exercised without a GPU. A check that cannot run here (no CUDA, flash-attn or
bitsandbytes not installed) prints a line with "skipped" and the reason, never a made-up figure.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import tempfile
from typing import Any

import datasets
import torch
from transformers import MistralConfig, MistralForCausalLM

from datamodules.packing import RowDataset, plan_rows
from moe.batch import IGNORE_INDEX, Collate, flatten_rows, needs_flattening


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


# -- throughput ------------------------------------------------------------------------------------
def throughput(dry_run: bool) -> None:
    """benchmarks.train_throughput at 12B dims (random weights, all 40 layers, seq 2048, micro-batch 4,
    activation checkpointing) for MoE-LoRA and the efficient plain LoRA; one line per figure."""
    from benchmarks import train_throughput

    if dry_run:
        argv = [
            "--base-model",
            "tiny",
            "--seq-len",
            "64",
            "--micro-batch",
            "2",
            "--steps",
            "1",
            "--warmup",
            "1",
        ]
    else:
        if not torch.cuda.is_available():
            emit(check="throughput", skipped="no CUDA device (use --dry-run on a CPU)")
            return
        argv = ["--seq-len", "2048", "--micro-batch", "4", "--steps", "3", "--warmup", "1"]
    with contextlib.redirect_stdout(sys.stderr):  # its table and summary go to the log, figures below
        summary = train_throughput.main([*argv, "--variants", "moe", "lora"])
    common = {"check": "throughput", "base_model": summary["base_model"], "seq_len": summary["seq_len"],
              "micro_batch": summary["micro_batch"], "device": summary["device"]}  # fmt: skip
    for variant, result in summary["variants"].items():
        if result is None:
            emit(**common, figure=f"{variant}_tokens_per_s", value=None, error="out of memory")
            continue
        emit(**common, figure=f"{variant}_tokens_per_s", value=result["tokens_per_second"])
        emit(
            **common,
            figure=f"{variant}_peak_gb",
            value=result["peak_memory_gb"],
            metric=result["peak_memory_metric"],
        )
        emit(**common, figure=f"{variant}_mfu", value=result["mfu"])
        if "hfu" in result:  # executed FLOPs (recompute included) from the step on fake tensors
            emit(**common, figure=f"{variant}_hfu", value=result["hfu"],
                 hardware_gflop_per_token=result["hardware_gflop_per_token"])  # fmt: skip
    emit(**common, figure="moe_vs_lora_step_time", value=summary["moe_vs_lora_step_time"], target="<= 1.05")


# -- the plan against full checkpointing ------------------------------------------------------------
def plan_check(dry_run: bool) -> None:
    """The shipped plan (micro-batch 2, no activation checkpointing) and full checkpointing at 4 x 2048,
    MoE-LoRA only, side by side: tokens/s, peak memory, and the measured peak over the fake-tensor
    prediction (moe.plan) for each, so one call validates the planner."""
    from benchmarks import train_throughput

    if not dry_run and not torch.cuda.is_available():
        emit(check="plan", skipped="no CUDA device (use --dry-run on a CPU)")
        return
    size = ["--base-model", "tiny", "--seq-len", "64", "--steps", "1"] if dry_run else ["--seq-len", "2048", "--steps", "3"]
    runs = {"shipped_plan": ["--micro-batch", "2", "--no-activation-checkpointing"],
            "full_checkpointing": ["--micro-batch", "4", "--activation-checkpointing"]}  # fmt: skip
    for name, options in runs.items():
        with contextlib.redirect_stdout(sys.stderr):
            summary = train_throughput.main([*size, *options, "--warmup", "1", "--variants", "moe"])
        common = {"check": "plan", "run": name, "micro_batch": summary["micro_batch"], "seq_len": summary["seq_len"],
                  "activation_checkpointing": summary["activation_checkpointing"], "device": summary["device"]}  # fmt: skip
        if summary["tokens_per_second"] is None:
            emit(**common, figure="tokens_per_s", value=None, error="out of memory")
            continue
        emit(**common, figure="tokens_per_s", value=summary["tokens_per_second"], mfu=summary["mfu"],
             hfu=summary["hfu"], hardware_gflop_per_token=summary["hardware_gflop_per_token"])  # fmt: skip
        emit(**common, figure="peak_gib", value=summary["peak_memory_gb"], predicted=summary["predicted_peak_gib"],
             metric=summary["variants"]["moe"]["peak_memory_metric"])  # fmt: skip
        emit(**common, figure="peak_vs_predicted", value=summary["peak_vs_predicted"],
             note="measured allocator peak / fake-tensor live-tensor peak; expect 1.0-1.15 on CUDA, null on CPU")  # fmt: skip


# -- packed isolation ------------------------------------------------------------------------------
def small_mistral(vocab: int = 1024) -> MistralConfig:
    """A small random Mistral (GQA 8/2 heads, head_dim 64: a shape flash-attn accepts)."""
    return MistralConfig(
        vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, max_position_embeddings=4096, sliding_window=None,
        tie_word_embeddings=False,
    )  # fmt: skip


def random_packed_batch(
    lengths: list[int], seq: int, token_ids: tuple[int, int], pad_token_id: int, seed: int
) -> tuple[datasets.Dataset, list[list[int]], dict]:
    """Random examples of `lengths` (token ids drawn from [low, high)), packed into rows of `seq` and
    collated as the training loader does: the examples, the row plan and the batch."""
    generator = torch.Generator().manual_seed(seed)
    examples = datasets.Dataset.from_list(
        [
            {
                "input_ids": torch.randint(*token_ids, (n,), generator=generator).tolist(),
                "labels": [IGNORE_INDEX] * n,
                "domain_id": 0,
            }
            for n in lengths
        ]
    )
    plan = plan_rows(lengths, seq)
    rows = RowDataset(examples, plan, seq, pad_token_id=pad_token_id)
    return examples, plan, Collate(pad_token_id=pad_token_id)([rows[i] for i in range(len(rows))])

def packed_logits_gap(
    implementation: str, device: torch.device, dtype: torch.dtype, lengths: list[int], seq: int
) -> dict:
    """Largest |logit| difference between each packed example and the same example alone, with the
    batch as the training module hands it to the model (flattened for flash-attn), and the same gap
    for the leaky layout (flash: rows not flattened; others: no restarting position ids) as control."""
    torch.manual_seed(0)
    model = MistralForCausalLM._from_config(small_mistral(), attn_implementation=implementation, dtype=dtype)
    model = model.to(device).eval()
    examples, plan, batch = random_packed_batch(lengths, seq, token_ids=(3, 1000), pad_token_id=0, seed=1)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def run(model_batch: dict) -> torch.Tensor:
        extra = {k: model_batch[k] for k in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
                 if k in model_batch}  # fmt: skip
        with torch.no_grad():
            return model(input_ids=model_batch["input_ids"], position_ids=model_batch.get("position_ids"),
                         use_cache=False, **extra).logits.float()  # fmt: skip

    flattened = needs_flattening(implementation)
    packed = run(flatten_rows(batch) if flattened else batch).reshape(len(plan), seq, -1)
    leaky_batch = batch if flattened else {"input_ids": batch["input_ids"]}
    leaky = run(leaky_batch).reshape(len(plan), seq, -1)
    gap = leak = 0.0
    for r, row in enumerate(plan):
        offset = 0
        for i in row:
            ids = torch.tensor([examples[i]["input_ids"]], device=device)
            alone = run({"input_ids": ids, "position_ids": torch.arange(ids.shape[1], device=device)[None]})[
                0
            ]
            gap = max(gap, (packed[r, offset : offset + len(alone)] - alone).abs().max().item())
            if offset:  # only later examples can see earlier ones
                leak = max(leak, (leaky[r, offset : offset + len(alone)] - alone).abs().max().item())
            offset += len(alone)
    return {"max_abs_gap": round(gap, 6), "leaky_control_gap": round(leak, 6), "flattened": flattened}


def packing(dry_run: bool) -> None:
    if dry_run:
        device, dtype, implementations, tolerance = (
            torch.device("cpu"),
            torch.float32,
            ["sdpa", "eager"],
            1e-4,
        )
        lengths, seq = [50, 40, 30, 20, 10, 6], 64
    elif not torch.cuda.is_available():
        emit(check="packing", skipped="no CUDA device (use --dry-run on a CPU)")
        return
    else:
        device, dtype, implementations, tolerance = (
            torch.device("cuda"),
            torch.bfloat16,
            ["flash_attention_2", "sdpa"],
            0.1,
        )
        lengths, seq = [300, 200, 150, 120, 90, 60, 40, 30, 20, 10], 512
    for implementation in implementations:
        common = {
            "check": "packing",
            "attn_implementation": implementation,
            "dtype": str(dtype).removeprefix("torch."),
        }
        if implementation.startswith("flash") and importlib.util.find_spec("flash_attn") is None:
            emit(
                **common, skipped="flash-attn is not installed (pip install flash-attn --no-build-isolation)"
            )
            continue
        result = packed_logits_gap(implementation, device, dtype, lengths, seq)
        isolated = result["max_abs_gap"] <= tolerance < result["leaky_control_gap"]
        emit(**common, **result, tolerance=tolerance, isolated=isolated)


# -- 4-bit -----------------------------------------------------------------------------------------
def four_bit(dry_run: bool) -> None:
    """Load a small random Mistral in bitsandbytes 4-bit, attach MoE-LoRA, take one training step.
    --dry-run: the same steps on the CPU in fp32, without quantisation (bitsandbytes needs CUDA)."""
    common = {"check": "four_bit", "dry_run": dry_run}
    if not dry_run:
        if not torch.cuda.is_available():
            emit(**common, skipped="no CUDA device: bitsandbytes 4-bit needs one (use --dry-run on a CPU)")
            return
        if importlib.util.find_spec("bitsandbytes") is None:
            emit(**common, skipped="bitsandbytes is not installed (pip install '.[gpu]')")
            return
    from benchmarks.train_throughput import PackedRows
    from moe.lightning_module import MoELoRAModule
    from moe.model import moe_layers

    device = torch.device("cpu" if dry_run else "cuda")
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        MistralForCausalLM(small_mistral()).to(torch.bfloat16).save_pretrained(folder)
        if not dry_run:
            torch.cuda.reset_peak_memory_stats()
        module = MoELoRAModule(
            base_model=folder, dtype="float32" if dry_run else "bfloat16", load_in_4bit=not dry_run,
            activation_checkpointing=True,
        )  # fmt: skip
        module.configure_model()
    model = module.model
    devices = sorted({str(p.device) for p in model.parameters()})
    base_class = type(next(iter(moe_layers(model).values())).base).__name__
    if not dry_run and devices != ["cuda:0"]:
        module.to("cuda")  # adapters were created beside their base weights; make sure all are on the GPU
    data = PackedRows(2, 256, 1000, 4)
    batch = Collate(pad_token_id=0)([data[0], data[1]])
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    before = [p.detach().clone() for p in params]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=not dry_run):
        out = module._forward(batch)
        lm = out.lm_sum / out.tokens.clamp(min=1)
        total = lm + 0.01 * out.router["balance"] + 0.001 * out.router["z"] + 0.1 * out.router["domain"]
    total.backward()
    optimizer.step()
    moved = sum(not torch.equal(a, p.detach()) for a, p in zip(before, params))
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 3) if not dry_run else None
    emit(**common, base_linear=base_class, param_devices=devices, loss=round(float(lm.detach()), 4),
         finite=bool(torch.isfinite(total)), trainable_tensors=len(params), updated_tensors=moved, peak_gb=peak)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=["throughput", "plan", "packing", "four-bit"])
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, toy size: everything but the CUDA kernels"
    )
    args = parser.parse_args(argv)
    if args.check == "throughput":
        throughput(args.dry_run)
    elif args.check == "plan":
        plan_check(args.dry_run)
    elif args.check == "packing":
        packing(args.dry_run)
    else:
        four_bit(args.dry_run)


if __name__ == "__main__":
    main()
