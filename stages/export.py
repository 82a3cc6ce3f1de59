"""Export a MoE-LoRA checkpoint with fixed gates to a plain PEFT LoRA adapter, a merged model or a GGUF.

    python -m stages.export --checkpoint runs/stage3/checkpoint-final --out exports/psychology \
        --domain psychology --gates observed --format peft

peft: `adapter_config.json` + `adapter_model.safetensors` that `PeftModel.from_pretrained(base, OUT)`,
`AutoPeftModelForCausalLM.from_pretrained(OUT)` and vLLM (`--enable-lora --max-lora-rank N`) load with
no code of ours. merged: a full Hugging Face model folder with its tokenizer. gguf: the merged model as
one GGUF per --gguf-type (tokenizer and chat template inside) and an Ollama Modelfile. Every export
holds a README.md (source, gates, rank, dtype, the exact serve command) and export.json (the same as
data); its files are world-readable (0644) so a server running as another user can read them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from lightning_app.vllm import ServeSpec, max_lora_rank, serve_command
from evals.export_gap import GAP_FILE, read_ship_choice
from moe.adapter_io import read_adapter_config
from moe.base_model import load_tokenizer, native_dtype, public_base_id
from moe.config import MoELoRAConfig
from moe.export import choose_gates, export_merged, export_peft, make_readable, merged_model, write_export_info
from moe.gguf_export import GGUF_TYPES, modelfile, write_gguf
from moe.smollm2 import SMOLLM2, SMOLLM2_GGUF_PRE

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    # Plain argparse: a handful of flags of a one-shot command (--domain/--average exclusive) need no config file.
    parser = argparse.ArgumentParser(prog="python -m stages.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="adapter folder (checkpoint-final/)")
    parser.add_argument("--out", required=True, type=Path, help="new folder to write")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--domain", help="export the mixture as routed for this expert domain")
    which.add_argument("--average", action="store_true", help="export the mixture averaged over all domains")
    parser.add_argument("--gates", choices=["one-hot", "observed"], default="one-hot",
                        help="one-hot: the domain's own expert; observed: its mean routing on held-out data")
    parser.add_argument("--format", choices=["peft", "merged", "gguf"], default="peft")
    parser.add_argument("--dtype", choices=["auto", *sorted(DTYPES)], default="auto",
                        help="dtype of the merged model; auto: the base model's own (config.json)")
    parser.add_argument("--gguf-type", nargs="+", choices=sorted(GGUF_TYPES), default=["f16", "q8_0"],
                        help="GGUF tensor types to write, one file each (the Modelfile uses the first)")
    parser.add_argument("--base-id", help="the base model's Hub id to name in the export (default: derived)")
    parser.add_argument("--name", help="the served model's name (default: the --out folder's name)")
    parser.add_argument("--report", type=Path,
                        help="a stages.evaluate report folder: its export-gap figures go into README.md, and "
                        "without --domain/--average its recommended export is written (per domain: OUT/DOMAIN/)")
    args = parser.parse_args(argv)
    if args.domain is None and not args.average and args.report is None:
        parser.error("choose --domain NAME or --average, or pass --report DIR to export what the report recommends")
    return args


def gap_row(report: Path, domain: str | None, average: bool, mode: str) -> dict | None:
    """The report's export-gap row for these flags (None when the report measured no such choice)."""
    path = report / GAP_FILE
    if not path.is_file():
        return None
    rows = json.loads(path.read_text())["rows"]
    wanted = ["--average", "--gates", mode] if average else ["--domain", "DOMAIN", "--gates", mode]
    found = next((row for row in rows if row["flags"] == wanted), None)
    return found and {"choice": found["label"], "heldout_loss": found["loss"], "mixture_heldout_loss": rows[0]["loss"],
                      "gap": found["gap"], "reply_agreement": found.get("agreement"), "report": str(report)}


def export_readme(info: dict, serve: list[str]) -> str:
    """README.md of an export: what it is and the commands that serve it."""
    gates = ", ".join(f"{name} {value:.4f}" for name, value in info["gates"].items())
    lines = [
        f"# {info['name']}", "",
        f"Exported by `python -m stages.export` ({info['format']}) from the MoE-LoRA checkpoint "
        f"`{info['checkpoint']}`.", "",
        f"- base model: `{info['base_model_id']}` (project setting `{info['base_model']}`)",
        f"- gates ({info['gate_mode']}, {info['domain'] or 'average over domains'}): {gates}",
        f"- LoRA rank: {info['rank']}" + (" (added into the weights)" if info["format"] != "peft" else ""),
        f"- dtype: {info['dtype']}",
    ]
    evaluation = info.get("evaluation")
    if evaluation:
        agreement = evaluation["reply_agreement"]
        lines.append(
            f"- evaluation ({evaluation['report']}, {evaluation['choice']}): held-out loss "
            f"{evaluation['heldout_loss']:.4f} beside the token-routed mixture's {evaluation['mixture_heldout_loss']:.4f} "
            f"(gap {evaluation['gap']:+.2%})"
            + ("" if agreement is None else f"; greedy replies repeat {agreement:.0%} of the mixture's tokens")
        )
    else:
        lines.append("- evaluation: none recorded (pass --report with a stages.evaluate report folder)")
    if info.get("gguf_files"):
        lines.append("- GGUF files: " + ", ".join(f"`{name}`" for name in info["gguf_files"]))
    lines += ["", "## Serve", "", "```", *serve, "```", ""]
    return "\n".join(lines)


def serve_lines(info: dict, out: Path) -> list[str]:
    """The exact commands that serve this export."""
    folder, name = str(out.resolve()), info["name"]
    if info["format"] == "peft":
        spec = ServeSpec(model=info["base_model_id"], lora_modules={name: folder}, lora_rank=info["rank"],
                         dtype=info["serve_dtype"])
        return [serve_command(spec)]
    if info["format"] == "merged":
        return [serve_command(ServeSpec(model=folder, served_model_name=name, dtype=info["serve_dtype"]))]
    first = out.resolve() / info["gguf_files"][0]
    return [f"llama-server -m {first} --jinja", f"ollama create {name} -f {out.resolve() / 'Modelfile'}",
            f"ollama run {name}"]


def base_dtype(base: str) -> torch.dtype | None:
    """The base model's own dtype; None when its config cannot be read here (a Hub id not cached)."""
    try:
        return native_dtype(base)
    except OSError as error:
        logging.getLogger("stages.export").warning("cannot read %s's config (%s): serve with --dtype auto", base, error)
        return None


def export_recommended(args: argparse.Namespace, domains: list[str]) -> int:
    """Export what the report names to ship: one folder, or one per domain under --out."""
    label, flags = read_ship_choice(args.report)
    print(f"the report recommends: {label} ({' '.join(flags)})")
    common = ["--checkpoint", str(args.checkpoint), "--format", args.format, "--dtype", args.dtype,
              "--gguf-type", *args.gguf_type, "--report", str(args.report)]
    common += ["--base-id", args.base_id] if args.base_id else []
    if "--domain" not in flags:
        return main([*common, "--out", str(args.out), *(["--name", args.name] if args.name else []), *flags])
    for domain in domains:
        chosen = [domain if flag == "DOMAIN" else flag for flag in flags]
        code = main([*common, "--out", str(args.out / domain), *chosen])
        if code:
            return code
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    document = read_adapter_config(args.checkpoint)  # fails before any model or weight is read
    if args.domain is None and not args.average:
        return export_recommended(args, MoELoRAConfig.from_dict(document["moe"]).domains)
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"--out {args.out} exists and is not empty: choose a new folder or remove it")
    gates = choose_gates(document, args.domain, args.average, args.gates)
    domains = document["moe"]["expert_domains"]
    print("gates: " + ", ".join(f"{name} {value:.4f}" for name, value in zip(domains, gates.tolist())))
    base = document["base_model"]
    rank = int(torch.count_nonzero(gates)) * document["moe"]["r"]
    if args.dtype != "auto":
        dtype = DTYPES[args.dtype]
    else:  # a merge loads the base anyway; a PEFT export only names its dtype in the serve command
        dtype = base_dtype(base) if args.format == "peft" else native_dtype(base)
    info = {
        "name": args.name or args.out.resolve().name,
        "format": args.format,
        "checkpoint": str(args.checkpoint),
        "base_model": base,
        "base_model_id": args.base_id or public_base_id(base),
        "domain": args.domain,
        "gate_mode": args.gates,
        "gates": dict(zip(domains, gates.tolist())),
        "rank": rank,
        "dtype": "adapter" if args.format == "peft" else str(dtype).removeprefix("torch."),
        # vLLM's --dtype auto serves a float32 model in float16: name the weights' own dtype instead
        "serve_dtype": "auto" if dtype is None else str(dtype).removeprefix("torch."),
        "evaluation": gap_row(args.report, args.domain, args.average, args.gates) if args.report else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    if args.format == "peft":
        export_peft(args.checkpoint, args.out, gates, info["base_model_id"])
        print(f"wrote a PEFT LoRA adapter of rank {rank} to {args.out}")
        print(f"vLLM: --enable-lora --max-lora-rank {max_lora_rank(rank)}")
    elif args.format == "merged":
        export_merged(args.checkpoint, args.out, gates, dtype)
        print(f"wrote a merged {info['dtype']} model with its tokenizer to {args.out}")
    else:
        model, tokenizer = merged_model(args.checkpoint, gates, dtype), load_tokenizer(base)
        pre = SMOLLM2_GGUF_PRE if base == SMOLLM2 else "default"
        info["gguf_files"] = [f"{info['name']}-{kind}.gguf" for kind in args.gguf_type]
        for kind, file in zip(args.gguf_type, info["gguf_files"]):
            write_gguf(model, tokenizer, args.out / file, kind, info["name"], pre_tokenizer=pre)
            print(f"wrote {args.out / file}")
        (args.out / "Modelfile").write_text(modelfile(info["gguf_files"][0]))
    serve = serve_lines(info, args.out)
    write_export_info(args.out, info)
    (args.out / "README.md").write_text(export_readme(info, serve))
    make_readable(args.out)
    print("serve: " + "\n       ".join(serve))
    return 0


if __name__ == "__main__":
    sys.exit(main())
