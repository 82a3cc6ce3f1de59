"""Held-out figures and generation on the built-in tiny model."""

import math
from dataclasses import replace

import pytest
import torch

from evals.generate import generate_replies
from evals.heldout import heldout_figures
from evals.settings import load_settings
from moe.base_model import TINY, load_base_model, load_tokenizer


@pytest.fixture(scope="module")
def tiny():
    return load_base_model(TINY), load_tokenizer(TINY)


def _padded_batch(tokenizer, texts, prompt_chars):
    """One example per row, right-padded, labels only on the part after prompt_chars (contract shape)."""
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    prompts = [len(tokenizer(t[:prompt_chars], add_special_tokens=False)["input_ids"]) for t in texts]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "labels": torch.tensor(
            [[-100] * p + r[p:] + [-100] * (width - len(r)) for r, p in zip(rows, prompts, strict=True)]
        ),
        "position_ids": torch.tensor([list(range(width)) for _ in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
    }


def test_heldout_loss_per_source_and_domain_matches_the_model_loss(tiny):
    model, tokenizer = tiny
    texts = [
        "user: I feel low. assistant: That sounds hard.",
        "user: hi. assistant: hello!",
        "user: I can't sleep at all lately. assistant: How long has this been going on?",
    ]
    batches = [_padded_batch(tokenizer, texts[:2], 9), _padded_batch(tokenizer, texts[2:], 9)]
    figures = heldout_figures(
        model,
        batches,
        sources=["amod", "counsel_chat", "amod"],
        domains=["mental_health", "mental_health", "psychology"],
    )
    # Each example alone, through the model's own loss (mean over its scored tokens).
    alone = []
    for text in texts:
        one = _padded_batch(tokenizer, [text], 9)
        with torch.no_grad():
            loss = model(input_ids=one["input_ids"], labels=one["labels"], use_cache=False).loss.item()
        alone.append((loss, int((one["labels"][0, 1:] != -100).sum())))
    amod = (alone[0][0] * alone[0][1] + alone[2][0] * alone[2][1]) / (alone[0][1] + alone[2][1])
    assert figures["per_source"]["amod"]["loss"] == pytest.approx(amod, rel=1e-4)
    assert figures["per_source"]["counsel_chat"]["loss"] == pytest.approx(alone[1][0], rel=1e-4)
    assert figures["per_domain"]["psychology"]["tokens"] == alone[2][1]
    assert figures["overall"]["tokens"] == sum(n for _, n in alone)
    assert figures["overall"]["perplexity"] == pytest.approx(math.exp(figures["overall"]["loss"]))
    # A random-weight model over a 2k vocabulary sits near log(2048) nats per token.
    assert 5.0 < figures["overall"]["loss"] < 9.0

    # A different model on the very same batches gives different figures.
    other = load_base_model(TINY)
    with torch.no_grad():
        other.lm_head.weight.mul_(0.5)
    other_figures = heldout_figures(other, batches, ["amod", "counsel_chat", "amod"], ["m", "m", "p"])
    assert other_figures["overall"]["tokens"] == figures["overall"]["tokens"]
    assert other_figures["overall"]["loss"] != pytest.approx(figures["overall"]["loss"])
    with pytest.raises(ValueError, match="more examples than the 2 sources"):
        heldout_figures(model, batches, ["a", "b"], ["m", "m"])


def test_generation_is_seeded_and_leaves_global_rng_alone(tiny):
    model, tokenizer = tiny
    settings = replace(load_settings().generation, max_new_tokens=12, batch_size=2)
    conversations = [
        [{"role": "user", "content": "hi"}],
        [{"role": "user", "content": "I feel low today."}],
        [{"role": "user", "content": "How are you?"}],
    ]
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    first = generate_replies(model, tokenizer, conversations, settings, progress=False)
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert first == generate_replies(model, tokenizer, conversations, settings, progress=False)
    assert len(first) == 3 and all(isinstance(r, str) for r in first)
    reseeded = generate_replies(model, tokenizer, conversations, replace(settings, seed=99), progress=False)
    assert reseeded != first
