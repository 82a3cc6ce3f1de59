"""Look at a stage's data before paying for a GPU: what is read, kept, skipped, how many tokens,
how well it packs, how long an epoch takes, and whether the plan's epochs fit the time cap.

    python -m stages.inspect --config stages/stage1.yaml [--model.base_model tiny]
        [--data.data_root DIR] [--tokens-per-second N] [--json] [--previews N] [--gpu H100] [--no-plan]

The config is parsed by stages.fit.parse_stage_config, as training parses it: stages/common.yaml,
then each --config in order, then dotted overrides such as --data.max_seq_length 1024, validated by
the same LightningCLI parser, with `base_model` and `expert_domains` linked from the model section.
Building the figures fills the same cache the training run then reuses. The step's plan for one GPU
(micro-batch, activation checkpointing, peak memory, FLOPs per token, moe.plan) is measured on fake
tensors once per config and cached (about two minutes for the 12B on 2 cores). Any data problem (a
missing path, an unreadable file, a bad setting, a template that cannot label) ends the command
with one `error: ...` line naming the file and the fix, and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import yaml
from jsonargparse import ArgumentError, Namespace

from datamodules.prepare import DataSettings, Prepared, prepare
from datamodules.readers.files import FileFormatError
from datamodules.sources import SourceError
from moe.batch import IGNORE_INDEX
from moe.plan import GPU_MEMORY_GIB, plan_for, stage_step
from stages.fit import parse_stage_config

# What a data or configuration problem raises: shown as one line. TemplateError, UnicodeError and
# JSON errors are ValueErrors; a missing or unreadable file is an OSError.
DATA_PROBLEMS = (SourceError, FileFormatError, ArgumentError, ValueError, OSError, yaml.YAMLError)

LOSS_OPEN, LOSS_CLOSE = "⟦", "⟧"


def max_time_seconds(value: Any) -> float | None:
    """Trainer(max_time=...) as seconds: "DD:HH:MM:SS" or {days, hours, minutes, seconds}."""
    if value is None:
        return None
    if isinstance(value, str):
        days, hours, minutes, seconds = (int(x) for x in value.split(":"))
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if isinstance(value, dict):
        units = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
        return sum(units[k] * float(v) for k, v in value.items())
    raise ValueError(f"trainer.max_time {value!r}: expected 'DD:HH:MM:SS' or a mapping")


def _devices(value: Any) -> int:
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, (list, tuple)):
        return len(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 1


def figures(prepared: Prepared, config: Namespace, tokens_per_second: float | None) -> dict[str, Any]:
    """Everything inspect reports, as one JSON-ready mapping."""
    dm, report = prepared.settings, prepared.report
    trainer = config.trainer
    accumulate = int(trainer.get("accumulate_grad_batches") or 1)
    devices = _devices(trainer.get("devices", 1))
    train = report["splits"]["train"]
    total = sum(s["tokens"] for s in report["sources"].values()) or 1
    sources = {}
    warnings: list[str] = []
    for name, figures_ in report["sources"].items():
        spec = dm.specs[name]
        warnings += spec.warnings()
        sources[name] = {
            "read": figures_["read"],
            "kept": figures_["kept"],
            "skipped": figures_["skipped"],
            "truncated": figures_["truncated"],
            "windowed": figures_["windowed"],
            "windows": figures_["windows"],
            "tokens_lost": figures_["tokens_lost"],
            "cleaned": figures_["cleaned"],
            "tokens": figures_["tokens"],
            "share": figures_["tokens"] / total,
            "domain": spec.domain,
            "language": spec.language,
            "licence": spec.licence,
            "skipped_examples": figures_["examples"],
        }
    for domain, tokens in report["train_tokens_per_domain"].items():
        if tokens == 0:
            warnings.append(
                f"expert domain {domain!r} gets no training tokens in stage {dm.stage}: its expert learns "
                "only from routing; label a source with it (registry `domain:`) to train it"
            )
    for split, setting in (("val", "val_fraction"), ("test", "test_fraction")):
        if report["splits"][split]["rows"] == 0:
            warnings.append(
                f"the {split} split is empty: validation loss, early stopping and evaluation need it; "
                f"raise data.{setting}"
            )
    tokens_per_step = dm.micro_batch_size * dm.max_seq_length * accumulate * devices
    steps_per_epoch = math.ceil(math.ceil(train["rows"] / devices / dm.micro_batch_size) / accumulate)
    # Token slots the GPU processes per epoch (padding included): what a throughput figure counts.
    slots_per_epoch = steps_per_epoch * tokens_per_step
    out: dict[str, Any] = {
        "stage": dm.stage,
        "base_model": dm.base_model,
        "cache": str(dm.cache_path),
        "sources": sources,
        "splits": report["splits"],
        "train_tokens_per_domain": report["train_tokens_per_domain"],
        "packing": dm.packing,
        "packing_efficiency": train["efficiency"],
        "max_seq_length": dm.max_seq_length,
        "micro_batch_size": dm.micro_batch_size,
        "accumulate_grad_batches": accumulate,
        "devices": devices,
        "tokens_per_step": tokens_per_step,
        "steps_per_epoch": steps_per_epoch,
        "tokens_per_second": tokens_per_second,
        "max_epochs": trainer.get("max_epochs"),
        "warnings": warnings,
    }
    cap = max_time_seconds(trainer.get("max_time"))
    out["time_cap_hours"] = cap / 3600 if cap else None
    if tokens_per_second:
        out["hours_per_epoch"] = slots_per_epoch / tokens_per_second / 3600
        if cap:
            fit = int(cap * tokens_per_second / tokens_per_step)
            out["steps_in_time_cap"] = fit
            out["epochs_in_time_cap"] = fit / steps_per_epoch if steps_per_epoch else None
            epochs = trainer.get("max_epochs")
            if epochs and epochs > 0 and epochs * steps_per_epoch > fit:
                warnings.append(
                    f"the plan's {epochs} epochs ({epochs * steps_per_epoch} optimizer steps, "
                    f"{epochs * out['hours_per_epoch']:.1f} h) do not fit the {cap / 3600:g} h time cap at "
                    f"{tokens_per_second:g} tokens/s: only {fit} steps ({out['epochs_in_time_cap']:.2f} epochs) "
                    "will run; warmup and the cosine horizon follow those steps"
                )
    return out


def previews(prepared: Prepared, n: int) -> list[dict[str, str]]:
    """The first n train examples, decoded, with the tokens that carry loss inside ⟦ ⟧."""
    out = []
    dm, data = prepared.settings, prepared.examples["train"]
    for row in data.select(range(min(n, len(data)))):
        pieces, current, labelled = [], [], False
        for token, label in zip(row["input_ids"], row["labels"]):
            if (label != IGNORE_INDEX) != labelled and current:
                text = dm.tokenizer.decode(current, skip_special_tokens=False)
                pieces.append(f"{LOSS_OPEN}{text}{LOSS_CLOSE}" if labelled else text)
                current = []
            labelled = label != IGNORE_INDEX
            current.append(token)
        text = dm.tokenizer.decode(current, skip_special_tokens=False)
        pieces.append(f"{LOSS_OPEN}{text}{LOSS_CLOSE}" if labelled else text)
        out.append({"source": row["source"], "origin": row["origin"], "text": "".join(pieces)})
    return out


def render(out: dict[str, Any]) -> str:
    """The figures as a human-readable report."""
    lines = [f"stage {out['stage']}  base model {out['base_model']}  cache {out['cache']}", ""]
    lines.append(f"{'source':<24}{'read':>9}{'kept':>9}{'tokens':>13}{'share':>8}  domain / skipped")
    for name, s in out["sources"].items():
        lines.append(
            f"{name:<24}{s['read']:>9}{s['kept']:>9}{s['tokens']:>13,}{s['share']:>8.1%}  {s['domain']}"
            + (f", {s['truncated']} cut at a turn boundary" if s["truncated"] else "")
            + (f", {s['windowed']} split into {s['windows']} windows" if s["windowed"] else "")
            + (f", {s['tokens_lost']:,} trained tokens lost to max_seq_length" if s["tokens_lost"] else "")
        )
        for event, count in sorted(s["cleaned"].items(), key=lambda kv: -kv[1]):
            lines.append(f"{'':<24}cleaned {count:>7}  {event}")
        for reason, count in sorted(s["skipped"].items(), key=lambda kv: -kv[1]):
            lines.append(f"{'':<24}skipped {count:>7}  {reason}")
        for example in s["skipped_examples"][:3]:
            lines.append(f"{'':<24}  e.g. {example}")
    lines.append("")
    for split, s in out["splits"].items():
        lines.append(
            f"{split:<6} {s['examples']:>8} examples {s['tokens']:>13,} tokens ({s['trained_tokens']:,} with loss) "
            f"in {s['rows']:>7} rows, efficiency {s['efficiency']:.1%}"
        )
    lines.append(
        "train tokens per expert domain: "
        + ", ".join(f"{d} {t:,}" for d, t in out["train_tokens_per_domain"].items())
    )
    lines.append(
        f"packing {'on' if out['packing'] else 'off'}: efficiency {out['packing_efficiency']:.1%}; "
        f"{out['tokens_per_step']:,} token slots per optimizer step "
        f"({out['micro_batch_size']} x {out['max_seq_length']} x {out['accumulate_grad_batches']} accumulation "
        f"x {out['devices']} devices); {out['steps_per_epoch']:,} steps per epoch"
    )
    if out["tokens_per_second"]:
        lines.append(f"at {out['tokens_per_second']:g} tokens/s: {out['hours_per_epoch']:.2f} h per epoch")
        if out.get("steps_in_time_cap") is not None:
            lines.append(
                f"time cap {out['time_cap_hours']:g} h: {out['steps_in_time_cap']:,} optimizer steps "
                f"({out['epochs_in_time_cap']:.2f} epochs); plan: {out['max_epochs']} epochs"
            )
    else:
        lines.append("give --tokens-per-second (or model.throughput_tokens_per_s) for hours per epoch")
    plan = out.get("plan")
    if plan:
        lines.append(
            f"step plan for one {plan['gpu']} (fake tensors, live tensors only): micro-batch {plan['micro_batch']} "
            f"x accumulation {plan['accumulate_grad_batches']}, checkpointing {plan['checkpointing']}: peak "
            f"{plan['peak_gib']:.1f} GiB of {plan['budget_gib']:.1f} GiB, {plan['hardware_gflop_per_token']:.1f} "
            f"GFLOP/token executed, ~{plan['tokens_per_s_at_target_share']:,} tokens/s at "
            f"{plan['target_peak_share']:.0%} of its dense bf16 peak (a target share)"
        )
    for warning in out["warnings"]:
        lines.append(f"WARNING: {warning}")
    for preview in out.get("previews", []):
        lines += [
            "",
            f"--- preview {preview['origin']} ({preview['source']}); loss on {LOSS_OPEN}...{LOSS_CLOSE}",
        ]
        lines.append(preview["text"])
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """inspect's own options, and the rest: dotted overrides under model/data/trainer."""
    parser = argparse.ArgumentParser(
        prog="python -m stages.inspect",
        description=__doc__.split("\n\n")[0],
        epilog="Any YAML value can be overridden with a dotted flag under model/data/trainer, e.g. "
        "--model.base_model tiny --data.data_root DIR --trainer.max_epochs 2.",
    )
    parser.add_argument("--config", action="append", required=True, help="stage YAML (repeatable)")
    parser.add_argument(
        "--tokens-per-second", type=float, help="training throughput (default: model.throughput_tokens_per_s)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--gpu", default="H100", choices=sorted(GPU_MEMORY_GIB),
        help="the GPU the step is planned for (moe.plan, on fake tensors; cached)",
    )  # fmt: skip
    parser.add_argument("--no-plan", action="store_true", help="skip the step's memory and FLOPs plan")
    parser.add_argument(
        "--previews",
        type=int,
        help="train examples to show with their loss tokens (default 1; with --json 0, so conversation "
        "text stays out of machine-readable output unless asked for)",
    )
    args, overrides = parser.parse_known_args(argv)
    tokens = iter(overrides)
    for flag in tokens:
        key, _, value = flag[2:].partition("=")
        if not flag.startswith("--") or key.split(".")[0] not in ("model", "data", "trainer"):
            parser.error(f"unknown argument {flag}; overrides look like --data.max_seq_length 1024")
        if not value and next(tokens, None) is None:
            parser.error(f"{flag} needs a value")
    return args, overrides


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(argv)
    try:
        config = parse_stage_config(args.config, overrides)
        settings = DataSettings(**config.data.as_dict())  # checks every source exists
        prepared = prepare(settings)
        if settings.template_check_examples:
            prepared.check_template(settings.template_check_examples)
    except DATA_PROBLEMS as error:
        raise SystemExit(f"error: {error}") from None
    tokens_per_second = args.tokens_per_second or config.model.throughput_tokens_per_s
    out = figures(prepared, config, tokens_per_second)
    if not args.no_plan:
        try:
            stage = stage_step(config.model, config.data, config.trainer)
            out["plan"] = plan_for(stage.base_config, stage.settings, stage.rows_per_step, args.gpu,
                                   module_kwargs=stage.module_kwargs).summary()  # fmt: skip
        except ValueError as error:
            out["warnings"].append(f"plan for one {args.gpu}: {error}")
    shown = args.previews if args.previews is not None else (0 if args.json else 1)
    if shown:
        out["previews"] = previews(prepared, shown)
    print(json.dumps(out) if args.json else render(out))


if __name__ == "__main__":
    main(sys.argv[1:])
