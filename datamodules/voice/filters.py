"""Checks every conversation passes before it is written; each drop is counted by its reason.

A conversation is checked one exchange (client turn + assistant turn) at a time and cut before the
first exchange that fails; what remains is kept when it still has enough turns. Reasons:
grounding (assistant turn drifted from its transcript span), client_length, client_not_text
(e.g. a random-weight model's byte soup), safety (self-harm method information, either side),
duplicate_client (the same client message already written).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from rapidfuzz import fuzz
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from datamodules.voice.clean import normalized_words

# Self-harm *method* information: how, with what, how much. Talking about self-harm, suicidal
# feelings or recovery is not matched; these rules look for means combined with instructions,
# amounts or lethality. Rules miss paraphrases: a classifier or a judge is the stronger check.
SELF_HARM_METHOD = [
    re.compile(p, re.IGNORECASE)
    for p in (
        (
            r"\b(?:how|ways?|best way|easiest way|quickest way|painless(?:ly)?)\b[^.?!]{0,40}"
            r"\b(?:kill (?:my|your|him|her|them)sel(?:f|ves)|commit suicide|end (?:it all|(?:my|your|their) li(?:fe|ves))"
            r"|overdose|hang (?:my|your)self|slit)\b"
        ),
        r"\b(?:lethal|fatal|deadly|toxic)\s+(?:dose|amount|quantity|level)s?\b",
        (
            r"\bhow (?:many|much)\b[^.?!]{0,40}\b(?:pills|tablets|mg|milligrams|grams|paracetamol|acetaminophen"
            r"|tylenol|ibuprofen|insulin|sleeping pills)\b[^.?!]{0,40}\b(?:kill|die|overdose|fatal|lethal|enough)\b"
        ),
        (
            r"\b(?:cut|cutting|slit|slitting)\b[^.?!]{0,25}\b(?:deeper|vertically|along the vein|arter(?:y|ies)"
            r"|down the arm|without (?:anyone|people) (?:seeing|noticing))\b"
        ),
        r"\b(?:tie|tying|make|making)\s+(?:a\s+)?(?:noose|ligature)\b",
        r"\b(?:jump|jumping)\s+(?:off|from)\b[^.?!]{0,30}\b\d+\s*(?:stor(?:e?y|ies)|floors?|feet|metres|meters)\b",
        (
            r"\b(?:carbon monoxide|charcoal|helium|exhaust fumes)\b[^.?!]{0,40}"
            r"\b(?:bag|car|garage|tent|sealed|inhale|breathe|die|kill)\b"
        ),
    )
]
MIN_TEXT_SHARE = 0.9  # letters, digits, spaces and ordinary punctuation in a client message
# English prose is about half function words; word soup from a broken or random model is not.
MIN_FUNCTION_WORD_SHARE = 0.2
ORDINARY = re.compile(r"[A-Za-z0-9\s.,;:!?'\"()\-–—’‘“”]")


def carries_self_harm_method(text: str) -> bool:
    return any(pattern.search(text) for pattern in SELF_HARM_METHOD)


def grounding(assistant: str, span: str) -> float:
    """Similarity (0-1) of the assistant turn's words to its transcript span, case and punctuation
    ignored: 1.0 for the verbatim span, lower when a word was changed, added or lost."""
    return fuzz.ratio(" ".join(normalized_words(assistant)), " ".join(normalized_words(span))) / 100


def is_text(message: str) -> bool:
    """Ordinary characters and enough English function words to be a sentence, not word soup."""
    words = normalized_words(message)
    return (
        bool(words)
        and len(ORDINARY.findall(message)) >= MIN_TEXT_SHARE * len(message)
        and sum(w in ENGLISH_STOP_WORDS for w in words) >= MIN_FUNCTION_WORD_SHARE * len(words)
    )


@dataclass
class FilterSettings:
    grounding_threshold: float
    min_client_words: int
    max_client_words: int


@dataclass
class FilterCounts:
    exchanges_dropped: Counter = field(default_factory=Counter)
    conversations_dropped: Counter = field(default_factory=Counter)
    conversations_trimmed: int = 0


class ConversationFilter:
    """Stateful across one build: it remembers client messages already kept."""

    def __init__(self, settings: FilterSettings):
        self.settings = settings
        self.seen_clients: set[str] = set()
        self.counts = FilterCounts()

    def exchange_problem(self, client: str, assistant: str, span: str, earlier: set[str]) -> str | None:
        words = len(client.split())
        if not self.settings.min_client_words <= words <= self.settings.max_client_words:
            return "client_length"
        if not is_text(client):
            return "client_not_text"
        if grounding(assistant, span) < self.settings.grounding_threshold:
            return "grounding"
        if carries_self_harm_method(client) or carries_self_harm_method(assistant):
            return "safety"
        if " ".join(normalized_words(client)) in self.seen_clients | earlier:
            return "duplicate_client"
        return None

    def __call__(
        self, exchanges: list[tuple[str, str, str]], min_exchanges: int
    ) -> list[dict[str, str]] | None:
        """`exchanges`: (client, assistant, transcript span). The messages kept, or None if dropped."""
        kept: list[tuple[str, str]] = []
        problem = None
        for client, assistant, span in exchanges:
            earlier = {" ".join(normalized_words(c)) for c, _ in kept}
            problem = self.exchange_problem(client, assistant, span, earlier)
            if problem:
                self.counts.exchanges_dropped[problem] += 1
                break
            kept.append((client, assistant))
        if len(kept) < min_exchanges:
            self.counts.conversations_dropped[problem or "too_short"] += 1
            return None
        if problem:
            self.counts.conversations_trimmed += 1
        self.seen_clients.update(" ".join(normalized_words(c)) for c, _ in kept)
        return [
            message
            for client, assistant in kept
            for message in ({"role": "user", "content": client}, {"role": "assistant", "content": assistant})
        ]
