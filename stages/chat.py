"""Chat with a checkpoint, tokens streamed as they are generated.

    python -m stages.chat --checkpoint therapeutic_moe_stage1/checkpoint-final
    python -m stages.chat --checkpoint exports/stage1-peft --prompt "I can't sleep before exams."

--checkpoint takes a mixture checkpoint, an exported PEFT adapter or merged model, or `base` (with
--base-model). Sampling follows evals/evaluate.yaml (Wayfarer's card), seeded. An empty line or
Ctrl-D ends an interactive chat; nothing said is logged or saved.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import torch
from transformers import TextStreamer

from evals.generate import prompt_ids, sampling_kwargs
from evals.loading import LoadedModel, load_model
from evals.settings import DEFAULT_SETTINGS, GenerationSettings, load_settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.chat", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint-final/, PEFT adapter, merged model, or base"
    )
    parser.add_argument("--base-model", help="base model for `--checkpoint base` (Hub id, folder or tiny)")
    parser.add_argument("--prompt", help="answer this one message and exit")
    parser.add_argument("--system", help="a system prompt for the conversation")
    parser.add_argument(
        "--settings", default=str(DEFAULT_SETTINGS), help="evaluation settings YAML (generation)"
    )
    parser.add_argument("--max-new-tokens", type=int, help="override generation.max_new_tokens")
    return parser.parse_args(argv)


@torch.no_grad()
def reply(loaded: LoadedModel, messages: list[dict[str, str]], settings: GenerationSettings) -> str:
    """Generate the assistant's next turn, printing tokens as they come; returns the text."""
    ids = prompt_ids(loaded.tokenizer, messages)
    device = next(loaded.model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    streamer = TextStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    output = loaded.model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        streamer=streamer,
        **sampling_kwargs(loaded.tokenizer, settings),
    )
    return loaded.tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True).strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(args.settings).generation
    if args.max_new_tokens:
        settings = replace(settings, max_new_tokens=args.max_new_tokens)
    loaded = load_model(args.checkpoint, args.base_model)
    torch.manual_seed(settings.seed)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    if args.prompt is not None:
        reply(loaded, [*messages, {"role": "user", "content": args.prompt}], settings)
        return 0
    print(f"chatting with {loaded.source} ({loaded.kind}); an empty line ends", file=sys.stderr)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        messages.append({"role": "user", "content": text})
        print("assistant> ", end="", flush=True)
        messages.append({"role": "assistant", "content": reply(loaded, messages, settings)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
