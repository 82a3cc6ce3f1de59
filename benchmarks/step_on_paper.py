"""The stage's training step measured on fake tensors: peak memory by category and FLOPs per token,
without a GPU (moe.plan says how).

    python -m benchmarks.step_on_paper --config stages/stage1.yaml [--config ...]
        [--micro-batch N] [--seq-len N] [--activation-checkpointing true|false|N] [--precision P]
        [--loss-chunk-tokens N|none] [--load-in-4bit] [--base-model NAME] [--shallow]
        [--plan [--gpu H100 | --budget-gib G]]

The config resolves as training resolves it (stages/common.yaml, then each --config); the options
override what it says; `auto` checkpointing is measured as it resolves on one --gpu (default H100). `--activation-checkpointing N` checkpoints every N-th layer. The step runs at
the model's full depth (about a minute for the 12B on 2 cores); --shallow extrapolates from two shallow
copies as the planner does. --plan measures the candidates of the `auto` setting (micro-batches that
keep the optimizer step's rows, checkpointing periods) for one GPU and prints the choice with its
estimated tokens/s at a stated share of the GPU's peak (a target, not a measurement).
Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from dataclasses import replace
from typing import Any

import torch

from moe import plan
from stages.fit import parse_stage_config


def checkpointing_option(value: str) -> int:
    """The checkpointing period; false (0 here) is none."""
    if value.lower() in ("true", "full"):
        return 1
    if value.lower() in ("false", "none"):
        return 0
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise argparse.ArgumentTypeError(f"{value!r}: expected true, false or N (every N-th layer)")


def chunk_option(value: str) -> int:
    """Tokens per loss chunk; none (0 here) computes the whole micro-batch's logits at once."""
    return 0 if value.lower() in ("none", "null") else int(value)


def resolved(args: argparse.Namespace) -> plan.StageStep:
    """The stage config's step, with the command line's options over it."""
    config = parse_stage_config(args.config)
    if args.base_model:
        config.model.base_model = args.base_model
    stage = plan.stage_step(config.model, config.data, config.trainer)
    given: dict[str, Any] = {"load_in_4bit": True} if args.load_in_4bit else {}
    for setting in ("micro_batch", "seq_len", "precision"):
        if getattr(args, setting):
            given[setting] = getattr(args, setting)
    if args.activation_checkpointing is not None:  # 0: none
        given["checkpointing"] = args.activation_checkpointing or None
    if args.loss_chunk_tokens is not None:  # 0: unchunked
        given["loss_chunk_tokens"] = args.loss_chunk_tokens or None
    stage.settings = replace(stage.settings, **given)
    if config.model.activation_checkpointing == "auto" and args.activation_checkpointing is None and not args.plan:
        # What `auto` resolves to on one --gpu for this micro-batch, as the training run would.
        budget = args.budget_gib or plan.DEFAULT_BUDGET_SHARE * plan.GPU_MEMORY_GIB[args.gpu]
        request = plan.PlanRequest(stage.base_config, stage.settings, budget, None, stage.module_kwargs)
        chosen = plan.cached_choice(request)
        print(f"activation_checkpointing auto on one {args.gpu}: {plan.checkpointing_name(chosen.checkpointing)}")
        stage.settings = replace(stage.settings, checkpointing=chosen.checkpointing)
    return stage


def table(figures: dict[str, Any]) -> str:
    s = figures["settings"]
    lines = [
        f"{figures['layers']} layers, micro-batch {s['micro_batch']} x {s['seq_len']}, {s['precision']}, "
        f"checkpointing {s['checkpointing']}, loss chunks {s['loss_chunk_tokens']}"
        + (", frozen linears in 4-bit" if s["load_in_4bit"] else ""),
        f"{'peak live tensors':<34}{figures['peak_gib']:>9.2f} GiB",
    ]
    lines += [f"  {name.replace('_', ' '):<32}{gib:>9.2f} GiB" for name, gib in figures["memory_gib"].items()]
    lines += [
        f"{'trainable parameters':<34}{figures['trainable_params']:>13,}",
        f"{'GFLOP/token, model (no recompute)':<34}{figures['model_gflop_per_token']:>9.2f}",
        f"{'GFLOP/token, executed (hardware)':<34}{figures['hardware_gflop_per_token']:>9.2f}",
        f"{'fp32 [tokens, hidden|vocab] from moe/':<34}{len(figures['wide_fp32_from_moe']):>9}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True, help="stage YAML (repeatable)")
    parser.add_argument("--base-model", help="override model.base_model (e.g. tiny)")
    parser.add_argument("--micro-batch", type=int)
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--activation-checkpointing", type=checkpointing_option)
    parser.add_argument("--precision", choices=sorted(plan.PRECISIONS))
    parser.add_argument("--loss-chunk-tokens", type=chunk_option, help="none: unchunked")
    parser.add_argument("--load-in-4bit", action="store_true")
    parser.add_argument("--shallow", action="store_true", help="extrapolate from two shallow copies")
    parser.add_argument("--plan", action="store_true", help="choose micro-batch and checkpointing for a GPU")
    parser.add_argument("--gpu", default="H100", choices=sorted(plan.GPU_MEMORY_GIB))
    parser.add_argument("--budget-gib", type=float, help=f"default {plan.DEFAULT_BUDGET_SHARE:.0%} of --gpu's memory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    stage = resolved(args)
    base, settings, kwargs, rows_per_step = stage.base_config, stage.settings, stage.module_kwargs, stage.rows_per_step
    started = time.perf_counter()
    machine = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    if args.plan:
        gpu_plan = plan.plan_for(base, settings, rows_per_step, args.gpu, args.budget_gib, kwargs)
        print(f"{'micro-batch':>11} {'checkpointing':<18}{'peak GiB':>9}{'GFLOP/token':>12}  "
              f"fits {gpu_plan.plan.budget_gib:.1f} GiB")  # fmt: skip
        for t in gpu_plan.plan.tried:
            print(f"{t['micro_batch']:>11} {t['checkpointing']:<18}{t['peak_gib']:>9.2f}"
                  f"{t['hardware_gflop_per_token']:>12.2f}  {'yes' if t['fits'] else 'no'}")  # fmt: skip
        print(gpu_plan.describe())
        result = {**gpu_plan.plan.figures, "plan": gpu_plan.summary()}
    else:
        measure = plan.extrapolated if args.shallow else plan.measure_step
        result = measure(base, settings, kwargs).summary()
        print(table(result))
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"] = machine
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
