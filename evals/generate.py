"""Replies to the suites' conversations with the generation settings of evals/evaluate.yaml."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from evals.settings import GenerationSettings


def sampling_kwargs(tokenizer: PreTrainedTokenizerBase, settings: GenerationSettings) -> dict:
    """model.generate arguments shared by evaluation and chat; temperature 0 is greedy decoding."""
    sampling = (
        {"do_sample": True, "temperature": settings.temperature, "min_p": settings.min_p}
        if settings.temperature > 0
        else {"do_sample": False}
    )
    return {
        **sampling,
        "repetition_penalty": settings.repetition_penalty,
        "max_new_tokens": settings.max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, str]]) -> list[int]:
    """The conversation through the tokenizer's own chat template, ready for the assistant's turn."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def generate_replies(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict[str, str]]],
    settings: GenerationSettings,
    progress: bool = True,
) -> list[str]:
    """One sampled reply per conversation; seeded, so the same model and settings give the same text."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(settings.seed)
    replies: list[str] = []
    try:
        for start in tqdm(
            range(0, len(conversations), settings.batch_size), desc="generate", disable=not progress
        ):
            prompts = [prompt_ids(tokenizer, c) for c in conversations[start : start + settings.batch_size]]
            width = max(len(p) for p in prompts)
            # Left padding: every prompt ends where generation starts.
            input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
            attention_mask = torch.tensor(
                [[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device
            )
            output = model.generate(
                input_ids=input_ids, attention_mask=attention_mask, **sampling_kwargs(tokenizer, settings)
            )
            replies += tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)
    finally:
        torch.random.set_rng_state(generator_state)
    return [r.strip() for r in replies]
