"""Conversation -> token ids and labels through the tokenizer's own chat template.

Template-agnostic: nothing here knows ChatML. Each assistant turn's place in the rendered text is
found from renderings whose contents are placeholders (they depend on the roles alone, so one
serves every conversation of that shape), checked against the conversation's own rendering, or
else from renderings of its prefixes; the character span of the assistant's content is mapped to
tokens through the fast tokenizer's offsets. An over-long conversation's windows take their
tokens from the whole conversation's where they can (cut at special tokens). Loss falls on the
assistant content and the end-of-turn special token the template puts after it (so the model
learns to stop), nowhere else.

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
from moe.batch import IGNORE_INDEX

log = logging.getLogger(__name__)

AssistantTurns = Literal["all", "last"]
Overflow = Literal["window", "truncate", "drop"]
OVERFLOWS = ("window", "truncate", "drop")

# Status of one encoded example; every status but TOO_LONG means "kept".
KEPT = "kept"
TRUNCATED = "truncated"
WINDOW = "window"
TOO_LONG = "too_long"


class TemplateError(ValueError):
    """The chat template cannot be used for assistant-only labels, or the self-check failed."""


@dataclass(frozen=True)
class TemplateOptions:
    """How conversations become training examples (values come from the stage YAML's `data:`)."""

    max_seq_length: int = 2048
    system_prompt: str | None = None  # added when a conversation has no system turn; None/"" adds none
    assistant_turns: AssistantTurns = "all"  # train every assistant turn, or the last one only
    # over-long: windows that each end on an assistant turn, cut after the last turn that fits, or drop
    overflow: Overflow = "window"

    def __post_init__(self) -> None:
        if self.max_seq_length < 8:
            raise ValueError(f"max_seq_length must be at least 8, got {self.max_seq_length}")
        if self.assistant_turns not in ("all", "last"):
            raise ValueError(f"assistant_turns must be 'all' or 'last', got {self.assistant_turns!r}")
        if self.overflow not in OVERFLOWS:
            raise ValueError(f"overflow must be one of {list(OVERFLOWS)}, got {self.overflow!r}")


@dataclass(frozen=True)
class Encoded:
    """One training example made from a conversation.

    status:   KEPT (whole), TRUNCATED (cut after a turn), WINDOW (one of several windows of a long
              conversation) or TOO_LONG (nothing fits: ids and labels are empty).
    messages: the conversation's messages this example holds (without an added stage system prompt).
    trained:  indices into `messages` of the assistant turns that carry loss.
    lost:     labelled tokens of the conversation that no example of it trains (counted once, on its
              first example).
    """

    input_ids: list[int]
    labels: list[int]
    status: str
    messages: tuple[dict[str, str], ...]
    trained: tuple[int, ...]
    lost: int = 0


def control_strings(tokenizer: PreTrainedTokenizerBase) -> tuple[str, ...]:
    """The text of every special token: written in data, each would become a control token."""
    added = {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
    return tuple(sorted(added | set(tokenizer.all_special_tokens)))


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


class _Renderer:
    """Renders through the tokenizer's chat template for one batch of conversations, remembering the
    skeletons (renderings whose every content is a numbered placeholder): a skeleton depends on the
    roles alone, so one rendering serves every conversation, prefix and window of that shape."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self._skeletons: dict[tuple[tuple[str, ...], bool], str] = {}

    def render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )

    def skeleton(self, roles: tuple[str, ...], generation_prompt: bool) -> str:
        key = (roles, generation_prompt)
        if key not in self._skeletons:
            marked = [{"role": role, "content": _mark(i)} for i, role in enumerate(roles)]
            self._skeletons[key] = self.render(marked, generation_prompt)
        return self._skeletons[key]


@dataclass(frozen=True)
class _Rendered:
    text: str
    assistants: list[int]  # message index of each assistant turn
    content_spans: list[tuple[int, int]]  # character span of each assistant turn's content
    # each message's placeholder span in the skeleton (None: found from prefix renderings instead)
    marks: list[tuple[int, int]] | None = None


_PREFIXES = (
    "the tokenizer's chat template renders a conversation differently from its prefixes "
    "(message {i}), so assistant spans cannot be located; give the tokenizer a template that renders "
    "earlier turns the same whatever follows (e.g. ChatML)"
)


def _render_with_spans(renderer: _Renderer, messages: list[dict[str, str]]) -> _Rendered:
    """The rendering and each assistant content's place in it, from one rendering of the
    conversation and two skeletons shared by every conversation with the same roles:

    - the conversation itself;
    - its skeleton, every content replaced by a numbered placeholder: where the placeholders fall
      is where the contents are, and filling them in must give the conversation's rendering
      exactly (a template that strips or rewrites content fails this);
    - the skeleton's prefix before the last assistant turn, with the generation prompt, which must
      begin the skeleton: the template renders the earlier turns the same whatever follows.

    A conversation that holds a placeholder character, or a template that fails a check, goes
    through one prefix rendering per assistant turn instead (`_render_with_prefixes`), which names
    the problem."""
    if any(_MARK_OPEN in m["content"] or _MARK_CLOSE in m["content"] for m in messages):
        return _render_with_prefixes(renderer, messages)
    text = renderer.render(messages, generation_prompt=False)
    roles = tuple(m["role"] for m in messages)
    skeleton = renderer.skeleton(roles, generation_prompt=False)
    assistants = [i for i, role in enumerate(roles) if role == "assistant"]
    if assistants:
        before = renderer.skeleton(roles[: assistants[-1]], generation_prompt=True)
        if not skeleton.startswith(before) or skeleton.find(_mark(assistants[-1])) < len(before):
            return _render_with_prefixes(renderer, messages)
    pieces, starts, marks, position, cursor = [], {}, [], 0, 0
    for i, message in enumerate(messages):
        mark = _mark(i)
        at = skeleton.find(mark, cursor)
        if at < 0:
            return _render_with_prefixes(renderer, messages)
        pieces.append(skeleton[cursor:at])
        position += at - cursor
        starts[i] = position
        marks.append((at, at + len(mark)))
        pieces.append(message["content"])
        position += len(message["content"])
        cursor = at + len(mark)
    pieces.append(skeleton[cursor:])
    if "".join(pieces) != text or any(not messages[i]["content"] for i in assistants):
        return _render_with_prefixes(renderer, messages)
    spans = [(starts[i], starts[i] + len(messages[i]["content"])) for i in assistants]
    return _Rendered(text, assistants, spans, marks)


# Placeholder brackets (Unicode private use): a conversation never needs them.
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"


def _mark(index: int) -> str:
    return f"{_MARK_OPEN}{index}{_MARK_CLOSE}"


def _render_with_prefixes(renderer: _Renderer, messages: list[dict[str, str]]) -> _Rendered:
    """The rendering and each assistant content's place in it: one prefix rendering (with the
    generation prompt) per assistant turn, the content right after it. The slow path of
    `_render_with_spans`, and the one whose errors name what is wrong with the template."""
    text = renderer.render(messages, generation_prompt=False)
    assistants, spans = [], []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        assistants.append(i)
        before = renderer.render(messages[:i], generation_prompt=True)
        if not text.startswith(before) or (spans and spans[-1][1] > len(before)):
            raise TemplateError(_PREFIXES.format(i=i))  # or the previous content is not where it was
        content = message["content"]
        start = text.find(content, len(before))
        if start < 0 or not content:
            raise TemplateError(
                f"the chat template does not reproduce assistant message {i} verbatim (it may strip or "
                "rewrite content); assistant-only labels need the content to appear as it is"
            )
        spans.append((start, start + len(content)))
    return _Rendered(text, assistants, spans)


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


def _targets(rendered: _Rendered, options: TemplateOptions) -> list[int]:
    """Message indices of the assistant turns that should carry loss."""
    return rendered.assistants if options.assistant_turns == "all" else rendered.assistants[-1:]


def _turn_tokens(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> int:
    """Labelled tokens of one assistant turn: its content tokens and its end-of-turn token."""
    first = bisect.bisect_right([e for _, e in offsets], span[0])
    last = bisect.bisect_left([s for s, _ in offsets], span[1])
    return last - first + 1


def _example(
    conversation: list[dict[str, str]],
    kept: Sequence[int],
    trained: Sequence[int],
    added: int,
    encoded: tuple[list[int], list[int]],
    status: str,
    lost: int = 0,
) -> Encoded:
    """An Encoded whose messages and trained indices leave out an added stage system prompt."""
    own = [i for i in kept if not (added and i == 0)]
    messages = tuple(conversation[i] for i in own)
    return Encoded(*encoded, status, messages, tuple(own.index(i) for i in trained), lost)


def _encode_part(
    whole: _Whole,
    kept: Sequence[int],
    trained: Sequence[int],
    options: TemplateOptions,
) -> tuple[list[int], list[int]] | None:
    """Ids and labels of the conversation's messages at `kept` (a head, then consecutive messages)
    with loss on `trained`; None when over-long. The ids are cut from the whole conversation's
    where the part's rendering allows it (`_Whole.cut`), else the part is tokenized."""
    rendered = _render_with_spans(whole.renderer, [whole.conversation[i] for i in kept])
    first = len(kept) - 1
    while first > 0 and kept[first - 1] == kept[first] - 1:
        first -= 1
    cut = whole.cut(rendered.text, kept[first], kept[-1])
    if cut is None:
        tokenizer = whole.renderer.tokenizer
        encoding = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
        cut = encoding["input_ids"], encoding["offset_mapping"]
    ids, offsets = cut
    if len(ids) > options.max_seq_length:
        return None
    positions = {kept.index(i) for i in trained}
    spans = [span for i, span in zip(rendered.assistants, rendered.content_spans) if i in positions]
    return ids, _labels(rendered.text, offsets, ids, spans, whole.specials)


def encode_batch(
    batch: Sequence[Sequence[dict[str, str]]], tokenizer: PreTrainedTokenizerBase, options: TemplateOptions
) -> list[list[Encoded]]:
    """Conversations -> the examples each becomes: itself when it fits, else windows, one cut
    example or nothing (`options.overflow`); nothing is one TOO_LONG Encoded. Ids and labels are
    not shifted. One tokenizer call for the batch (the fast tokenizer encodes it in parallel)."""
    conversations = [with_system_prompt(messages, options.system_prompt) for messages in batch]
    renderer = _Renderer(tokenizer)
    rendered = [_render_with_spans(renderer, messages) for messages in conversations]
    for r in rendered:
        if not r.content_spans:
            raise TemplateError("conversation has no assistant turn: nothing to train on")
    encodings = tokenizer([r.text for r in rendered], add_special_tokens=False, return_offsets_mapping=True)
    specials = special_ids(tokenizer)
    results = []
    for original, conversation, r, input_ids, offsets in zip(
        batch, conversations, rendered, encodings["input_ids"], encodings["offset_mapping"]
    ):
        added = len(conversation) - len(original)  # 1 when the stage system prompt was added
        targets = _targets(r, options)
        everything = range(len(conversation))
        if len(input_ids) <= options.max_seq_length:
            spans = [span for i, span in zip(r.assistants, r.content_spans) if i in targets]
            encoded = (input_ids, _labels(r.text, offsets, input_ids, spans, specials))
            results.append([_example(conversation, everything, targets, added, encoded, KEPT)])
            continue
        whole = _Whole(renderer, conversation, r, input_ids, offsets, specials)
        if options.overflow == "window":
            parts = _windows(whole, targets, options)
        elif options.overflow == "truncate":
            parts = _truncate(whole, targets, options)
        else:
            parts = []
        trained = {i for _, turns, _ in parts for i in turns}
        lost = sum(
            _turn_tokens(offsets, span)
            for i, span in zip(r.assistants, r.content_spans)
            if i in targets and i not in trained
        )
        if not parts:
            results.append([_example(conversation, everything, [], added, ([], []), TOO_LONG, lost)])
            continue
        status = WINDOW if options.overflow == "window" else TRUNCATED
        results.append(
            [
                _example(conversation, kept, turns, added, encoded, status, lost if k == 0 else 0)
                for k, (kept, turns, encoded) in enumerate(parts)
            ]
        )
    return results


Part = tuple[list[int], list[int], tuple[list[int], list[int]]]  # kept messages, trained turns, encoding


def _message_chars(conversation: list[dict[str, str]], rendered: _Rendered, renderer: _Renderer) -> list[int]:
    """Where each message starts in the conversation's rendering: the length of the rendering of
    the messages before it. From the skeletons of those prefixes, which the roles alone decide (the
    placeholders before the cut stand for their contents, whose lengths are known), when each one
    begins the conversation's skeleton and ends between two placeholders; otherwise from one
    rendering of each prefix, which must begin the conversation's rendering."""
    if rendered.marks is not None:
        roles = tuple(m["role"] for m in conversation)
        whole = renderer.skeleton(roles, generation_prompt=False)
        chars, shift = [0], 0
        for i in range(1, len(conversation)):
            mark_start, mark_end = rendered.marks[i - 1]
            shift += len(conversation[i - 1]["content"]) - (mark_end - mark_start)
            prefix = renderer.skeleton(roles[:i], generation_prompt=False)
            if not (whole.startswith(prefix) and mark_end <= len(prefix) <= rendered.marks[i][0]):
                break
            chars.append(len(prefix) + shift)
        else:
            return chars
    chars = [0]
    for i in range(1, len(conversation)):
        prefix = renderer.render(conversation[:i], generation_prompt=False)
        if not rendered.text.startswith(prefix):
            raise TemplateError(_PREFIXES.format(i=i))
        chars.append(len(prefix))
    return chars


class _Whole:
    """An over-long conversation's rendering and tokens, which its parts are cut from."""

    def __init__(
        self,
        renderer: _Renderer,
        conversation: list[dict[str, str]],
        rendered: _Rendered,
        ids: list[int],
        offsets: Sequence[tuple[int, int]],
        specials: frozenset[int],
    ) -> None:
        self.renderer, self.conversation, self.rendered = renderer, conversation, rendered
        self.ids, self.offsets, self.specials = ids, offsets, specials
        self.starts = [s for s, _ in offsets]
        # where each message starts in the text, then the text's length
        self.chars = _message_chars(conversation, rendered, renderer) + [len(rendered.text)]

    def token_positions(self) -> tuple[list[int], dict[int, int]]:
        """Where each message starts, and each assistant turn ends, in the conversation's tokens
        (the estimate a part's exact encoding then confirms)."""
        message_starts = [bisect.bisect_left(self.starts, c) for c in self.chars]
        return message_starts[:-1], {i: message_starts[i + 1] for i in self.rendered.assistants}

    def cut(self, text: str, first: int, last: int) -> tuple[list[int], list[tuple[int, int]]] | None:
        """The ids and offsets of `text`, the rendering of a part that ends with messages
        first..last, cut from the conversation's, or None. A fast tokenizer splits a text at its
        special tokens before anything else and tokenizes each piece alone, so when the part's
        rendering is a prefix of the conversation's rendering followed by those messages' rendering
        in it, each cut falling where a special token starts, its tokens are those pieces' tokens."""
        whole = self.rendered.text
        begin, end = self.chars[first], self.chars[last + 1]
        head = len(text) - (end - begin)
        if head < 0 or text[head:] != whole[begin:end] or text[:head] != whole[:head]:
            return None
        at = [self._boundary(c) for c in (head, begin, end)]
        if None in at:
            return None
        k_head, k_begin, k_end = at
        shift = head - begin
        ids = self.ids[:k_head] + self.ids[k_begin:k_end]
        offsets = [*self.offsets[:k_head], *((a + shift, b + shift) for a, b in self.offsets[k_begin:k_end])]
        return ids, offsets

    def _boundary(self, char: int) -> int | None:
        """The index of the token at which the text can be cut at `char` (a special token starts
        there, or the text begins or ends there); None where it cannot."""
        if char == 0:
            return 0
        if char == len(self.rendered.text):
            return len(self.ids)
        k = bisect.bisect_left(self.starts, char)
        return k if k < len(self.ids) and self.starts[k] == char and self.ids[k] in self.specials else None


def _truncate(whole: _Whole, targets: list[int], options: TemplateOptions) -> list[Part]:
    """The longest prefix that ends on an assistant turn and fits, as the only part."""
    _, turn_ends = whole.token_positions()
    for end in reversed(whole.rendered.assistants):
        if turn_ends[end] > options.max_seq_length:
            continue
        kept = list(range(end + 1))
        trained = [i for i in targets if i <= end]
        encoded = _encode_part(whole, kept, trained, options)
        if encoded is not None:  # a prefix may tokenize a little differently at its end
            return [(kept, trained, encoded)]
    return []


def _windows(whole: _Whole, targets: list[int], options: TemplateOptions) -> list[Part]:
    """Windows that each end on an assistant turn and train the turns no earlier window trained,
    with the system turn and as much earlier context (whole turns, from a user turn) as fits.
    A turn that does not fit even with its own question alone is lost."""
    conversation = whole.conversation
    head = [0] if conversation[0]["role"] == "system" else []
    message_starts, turn_ends = whole.token_positions()
    head_tokens = message_starts[1] if head else 0
    users = [i for i, m in enumerate(conversation) if m["role"] == "user"]

    def estimate(start: int, end: int) -> int:
        return head_tokens + turn_ends[end] - message_starts[start]

    def window(t: int) -> Part | None:
        """The window that trains targets[t] and as many following turns as fit."""
        latest = max((u for u in users if u < targets[t]), default=None)
        if latest is None:
            return None
        for j in reversed(range(t, len(targets))):
            if estimate(latest, targets[j]) > options.max_seq_length:
                continue
            for start in (u for u in users if u <= latest):
                if estimate(start, targets[j]) > options.max_seq_length:
                    continue
                kept = head + list(range(start, targets[j] + 1))
                encoded = _encode_part(whole, kept, targets[t : j + 1], options)
                if encoded is not None:  # the estimate can be a token or two off
                    return kept, targets[t : j + 1], encoded
        return None

    parts: list[Part] = []
    t = 0
    while t < len(targets):
        part = window(t)
        if part is not None:
            parts.append(part)
            t += len(part[1])
        else:
            t += 1  # this turn is lost (the caller counts its tokens)
    return parts


def encode(
    messages: Sequence[dict[str, str]], tokenizer: PreTrainedTokenizerBase, options: TemplateOptions
) -> list[Encoded]:
    """One conversation -> its examples; see encode_batch."""
    return encode_batch([messages], tokenizer, options)[0]


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
        pieces = [e for e in encode(conversation.messages, tokenizer, options) if e.status != TOO_LONG]
        for encoded in pieces:
            expected = [encoded.messages[i]["content"] for i in encoded.trained]
            runs = labelled_runs(encoded.labels)
            if len(runs) != len(expected):
                raise TemplateError(
                    f"{conversation.origin}: {len(runs)} labelled spans for {len(expected)} trained "
                    "assistant turns; labels cover text outside the assistant turns or miss some"
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
                        f"{conversation.origin}: labels differ from the token ids at their positions; labels "
                        "must be the input ids themselves (the model shifts them)"
                    )
                end_tokens.add(end)
        checked += bool(pieces)
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
