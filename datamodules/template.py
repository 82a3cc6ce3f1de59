"""Conversation -> token ids and labels through the tokenizer's own chat template.

Template-agnostic: nothing here knows ChatML. Each assistant turn's place in the rendered text is
found by rendering prefixes of the conversation with the template (`messages[:i]` plus the
generation prompt, then `messages[:i+1]`); the character span of the assistant's content is mapped
to tokens through the fast tokenizer's offsets. Loss falls on the assistant content and the
end-of-turn special token the template puts after it (so the model learns to stop), nowhere else.

`check_template` is the independent self-check the training entry point runs at start: it decodes
the labelled token runs with the real tokenizer and compares them with the assistant texts.
"""

from __future__ import annotations

import bisect
import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from transformers import PreTrainedTokenizerBase

from datamodules.conversation import Conversation

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
AssistantTurns = Literal["all", "last"]
Overflow = Literal["truncate", "drop"]

# Status of one encoded conversation; every status but these two means "not kept".
KEPT = "kept"
TRUNCATED = "truncated"
TOO_LONG = "too_long"


class TemplateError(ValueError):
    """The chat template cannot be used for assistant-only labels, or the self-check failed."""


@dataclass(frozen=True)
class TemplateOptions:
    """How conversations become training examples (values come from the stage YAML's `data:`)."""

    max_seq_length: int = 2048
    system_prompt: str | None = None  # added when a conversation has no system turn; None/"" adds none
    assistant_turns: AssistantTurns = "all"  # train every assistant turn, or the last one only
    overflow: Overflow = "truncate"  # over-long: cut after the last assistant turn that fits, or drop

    def __post_init__(self) -> None:
        if self.max_seq_length < 8:
            raise ValueError(f"max_seq_length must be at least 8, got {self.max_seq_length}")
        if self.assistant_turns not in ("all", "last"):
            raise ValueError(f"assistant_turns must be 'all' or 'last', got {self.assistant_turns!r}")
        if self.overflow not in ("truncate", "drop"):
            raise ValueError(f"overflow must be 'truncate' or 'drop', got {self.overflow!r}")


@dataclass(frozen=True)
class Encoded:
    """One conversation as tokens. `status` is KEPT, TRUNCATED (cut at a turn boundary) or TOO_LONG
    (dropped: ids and labels are empty)."""

    input_ids: list[int]
    labels: list[int]
    status: str
    num_messages: int  # messages encoded, counting an added system prompt (fewer when truncated)


def with_system_prompt(messages: Sequence[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """The stage's system prompt first, unless the conversation brings its own."""
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def special_ids(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Ids of every special token, including added ones (e.g. <|im_start|>) that are not in the
    named special-token map."""
    added = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    return frozenset(added | set(tokenizer.all_special_ids))


def _render(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], generation_prompt: bool
) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


@dataclass(frozen=True)
class _Rendered:
    text: str
    content_spans: list[tuple[int, int]]  # character span of each assistant turn's content
    turn_ends: list[int]  # character offset where each assistant turn's rendering ends


def _render_with_spans(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> _Rendered:
    text = _render(tokenizer, messages, generation_prompt=False)
    spans, ends = [], []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        last = i == len(messages) - 1
        upto = text if last else _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (text.startswith(upto) and upto.startswith(before)):
            raise TemplateError(
                "the tokenizer's chat template renders a conversation differently from its prefixes "
                f"(assistant turn at message {i}), so assistant spans cannot be located; give the tokenizer "
                "a template that renders earlier turns the same whatever follows (e.g. ChatML)"
            )
        content = message["content"]
        start = text.find(content, len(before), len(upto))
        if start < 0 or not content:
            raise TemplateError(
                f"the chat template does not reproduce assistant message {i} verbatim (it may strip or "
                "rewrite content); assistant-only labels need the content to appear as it is"
            )
        spans.append((start, start + len(content)))
        ends.append(len(upto))
    return _Rendered(text, spans, ends)


def _labels(
    text: str,
    offsets: list[tuple[int, int]],
    input_ids: list[int],
    spans: list[tuple[int, int]],
    specials: frozenset[int],
) -> list[int]:
    """Labels = ids on the tokens overlapping an assistant content span and on the first special
    token after it (whitespace-only tokens in between stay unlabelled)."""
    starts = [s for s, _ in offsets]
    ends = [e for _, e in offsets]
    labels = [IGNORE_INDEX] * len(input_ids)
    for span_start, span_end in spans:
        first = bisect.bisect_right(ends, span_start)
        last = bisect.bisect_left(starts, span_end)
        labels[first:last] = input_ids[first:last]
        k = last
        while k < len(input_ids) and input_ids[k] not in specials and not text[starts[k] : ends[k]].strip():
            k += 1
        if k == len(input_ids) or input_ids[k] not in specials:
            raise TemplateError(
                "the chat template puts no end-of-turn special token after an assistant message, so the "
                "model could never learn to stop; use a template that closes each turn (e.g. ChatML <|im_end|>)"
            )
        labels[k] = input_ids[k]
    return labels


def encode_batch(
    batch: Sequence[Sequence[dict[str, str]]], tokenizer: PreTrainedTokenizerBase, options: TemplateOptions
) -> list[Encoded]:
    """Conversations -> ids and labels (not shifted), each cut or dropped per `options.overflow`.
    One tokenizer call for the batch (the fast tokenizer encodes it in parallel)."""
    conversations = [with_system_prompt(messages, options.system_prompt) for messages in batch]
    rendered = [_render_with_spans(tokenizer, messages) for messages in conversations]
    for r in rendered:
        if not r.content_spans:
            raise TemplateError("conversation has no assistant turn: nothing to train on")
    encodings = tokenizer([r.text for r in rendered], add_special_tokens=False, return_offsets_mapping=True)
    specials = special_ids(tokenizer)
    results = []
    for messages, r, input_ids, offsets in zip(
        conversations, rendered, encodings["input_ids"], encodings["offset_mapping"]
    ):
        if len(input_ids) <= options.max_seq_length:
            spans = r.content_spans if options.assistant_turns == "all" else r.content_spans[-1:]
            labels = _labels(r.text, offsets, input_ids, spans, specials)
            results.append(Encoded(input_ids, labels, KEPT, len(messages)))
        else:
            results.append(_overflow(messages, r, offsets, tokenizer, options))
    return results


def _overflow(
    messages: list[dict[str, str]],
    rendered: _Rendered,
    offsets: list[tuple[int, int]],
    tokenizer: PreTrainedTokenizerBase,
    options: TemplateOptions,
) -> Encoded:
    """Cut after the last assistant turn whose rendering fits, or drop."""
    if options.overflow == "truncate":
        starts = [s for s, _ in offsets]
        assistant_positions = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        fitting = [
            position
            for position, end in zip(assistant_positions, rendered.turn_ends)
            if bisect.bisect_left(starts, end) <= options.max_seq_length
        ]
        if fitting:
            # Re-encoded on its own (the system turn is already in `messages`). A prefix may tokenize
            # a little differently at its end than inside the whole text: if it still does not fit,
            # this recursion cuts it further.
            cut = encode_batch([messages[: fitting[-1] + 1]], tokenizer, options)[0]
            if cut.status != TOO_LONG:
                return Encoded(cut.input_ids, cut.labels, TRUNCATED, cut.num_messages)
    return Encoded([], [], TOO_LONG, 0)


def encode(
    messages: Sequence[dict[str, str]], tokenizer: PreTrainedTokenizerBase, options: TemplateOptions
) -> Encoded:
    """One conversation -> ids and labels; see encode_batch."""
    return encode_batch([messages], tokenizer, options)[0]


def trained_texts(messages: Sequence[dict[str, str]], options: TemplateOptions) -> list[str]:
    """The assistant texts that should carry loss, in order."""
    texts = [m["content"] for m in messages if m["role"] == "assistant"]
    return texts if options.assistant_turns == "all" else texts[-1:]


def labelled_runs(labels: Sequence[int]) -> list[range]:
    """Positions of each contiguous run of labelled tokens."""
    runs: list[range] = []
    start = None
    for position, label in enumerate([*labels, IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = position
        elif label == IGNORE_INDEX and start is not None:
            runs.append(range(start, position))
            start = None
    return runs


def _clip(text: str, around: int, width: int = 60) -> str:
    start = max(0, around - width)
    return (
        ("..." if start else "")
        + text[start : around + width]
        + ("..." if around + width < len(text) else "")
    )


def _mismatch(origin: str, turn: int, got: str, expected: str) -> str:
    at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    diff = "\n".join(
        difflib.unified_diff(
            [_clip(expected, at)], [_clip(got, at)], "assistant text", "decoded labels", lineterm="", n=0
        )
    )
    return f"{origin}, trained assistant turn {turn}: first difference at character {at}\n{diff}"


def check_template(
    conversations: Sequence[Conversation],
    tokenizer: PreTrainedTokenizerBase,
    options: TemplateOptions,
    n: int = 4,
) -> int:
    """Encode the first `n` conversations and check that the labelled tokens decode to exactly the
    assistant texts, each followed by one end-of-turn special token, and to nothing else.

    Raises TemplateError with a readable diff on the first mismatch; returns how many were checked.
    Runs in seconds, so a template mismatch stops a run before hours of training on wrong labels.
    """
    specials = special_ids(tokenizer)
    special_texts = {tokenizer.convert_ids_to_tokens(i) for i in specials}
    end_tokens: set[str] = set()
    checked = 0
    for conversation in conversations[:n]:
        encoded = encode(conversation.messages, tokenizer, options)
        if encoded.status == TOO_LONG:
            continue
        messages = with_system_prompt(conversation.messages, options.system_prompt)
        expected = trained_texts(messages[: encoded.num_messages], options)
        runs = labelled_runs(encoded.labels)
        if len(runs) != len(expected):
            raise TemplateError(
                f"{conversation.origin}: {len(runs)} labelled spans for {len(expected)} trained assistant turns; "
                "labels cover text outside the assistant turns or miss some"
            )
        for turn, (run, text) in enumerate(zip(runs, expected)):
            ids = encoded.input_ids[run.start : run.stop]
            decoded = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            end = decoded[len(text) :].strip()
            if not decoded.startswith(text) or end not in special_texts:
                raise TemplateError(
                    "template self-check failed: labelled tokens are not the assistant text plus one "
                    "end-of-turn token\n"
                    + _mismatch(conversation.origin, turn, decoded, text + "<end-of-turn>")
                )
            if encoded.labels[run.start : run.stop] != ids:
                raise TemplateError(
                    f"{conversation.origin}: labels differ from the token ids at their positions; labels must "
                    "be the input ids themselves (the model shifts them)"
                )
            end_tokens.add(end)
        checked += 1
    if checked == 0 and len(conversations) > 0:
        raise TemplateError(f"template self-check: none of the first {n} conversations fits max_seq_length")
    if tokenizer.eos_token and end_tokens - {tokenizer.eos_token}:
        log.warning(
            "assistant turns end with %s but the tokenizer's eos is %s: make sure generation stops at it",
            sorted(end_tokens),
            tokenizer.eos_token,
        )
    log.info("template self-check passed on %d conversations (end of turn: %s)", checked, sorted(end_tokens))
    return checked
