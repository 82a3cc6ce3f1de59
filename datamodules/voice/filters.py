"""Checks every conversation passes before it is written; each drop is counted by its reason.

A conversation is checked one exchange (client turn + assistant turn) at a time and cut before the
first exchange that fails; what remains is kept when it still has enough turns (a conversation that
ends in a safe reply to a risk disclosure is kept with one). Reasons: grounding (a verbatim reply
drifted from its transcript span), unsupported_claim (the judge found a claim in a rewritten reply
that its passage does not hold), unfaithful (the lexical tripwire: a rewritten reply with too few
of its passage's content words or 3-grams), client_length, client_not_text (e.g. a random-weight
model's byte soup), the client-turn checks of datamodules/voice/client_checks.py (assistant_speak,
preamble, refusal, mentions_source, truncated), safety (self-harm method information, either side),
duplicate_client (the same client message already written), span_reused (a verbatim reply whose
sentences `max_span_uses` conversations written earlier already hold), curation (with a judge: a curation
score below `curate_min_score`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from rapidfuzz import fuzz
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from datamodules.voice.clean import normalized_words
from datamodules.voice.client_checks import client_problem
from datamodules.voice.punctuate import split_sentences

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


FAITHFUL_NGRAM = 3


ACKNOWLEDGEMENT_SENTENCES = 2  # a written reply may open by acknowledging the person


def faithfulness(reply: str, span: str) -> tuple[float, float]:
    """(share of the reply's content words that are in the span, share of its word 3-grams that
    are), over the reply after its first sentences of acknowledgement (when any text remains): a
    lexical tripwire for a reply that left its passage behind, not a check of its claims."""
    sentences = split_sentences(reply)
    explained = " ".join(sentences[ACKNOWLEDGEMENT_SENTENCES:]) or " ".join(sentences[1:]) or reply
    words, source = normalized_words(explained), normalized_words(span)
    content = [w for w in words if w not in ENGLISH_STOP_WORDS]
    vocabulary = set(source)
    word_share = sum(w in vocabulary for w in content) / len(content) if content else 0.0
    grams = {tuple(words[i : i + FAITHFUL_NGRAM]) for i in range(len(words) - FAITHFUL_NGRAM + 1)}
    source_grams = {tuple(source[i : i + FAITHFUL_NGRAM]) for i in range(len(source) - FAITHFUL_NGRAM + 1)}
    gram_share = len(grams & source_grams) / len(grams) if grams else 0.0
    return word_share, gram_share


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
    min_faithful_words: float = 0.5
    min_faithful_ngrams: float = 0.1
    curate_min_score: int | None = None  # None: no judge, no curation
    speaker: str = ""  # a client turn naming him quotes the source
    max_span_uses: int | None = None  # a lecture sentence in the verbatim replies of at most this many conversations


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
        self.span_uses: Counter = Counter()
        self.counts = FilterCounts()

    def exchange_problem(
        self, client: str, assistant: str, span: str, kind: str, earlier: set[str], verdicts: dict | None = None
    ) -> str | None:
        """kind: verbatim (a transcript span), rewrite (written from the span) or safe (risk reply);
        verdicts: the judge's, journalled with the exchange (`faithful`, `curation`)."""
        verdicts = verdicts or {}
        words = len(client.split())
        if not self.settings.min_client_words <= words <= self.settings.max_client_words:
            return "client_length"
        if not is_text(client):
            return "client_not_text"
        problem = client_problem(client, self.settings.speaker)
        if problem:
            return problem
        if kind == "verbatim" and grounding(assistant, span) < self.settings.grounding_threshold:
            return "grounding"
        limit = self.settings.max_span_uses
        if limit is not None and any(self.span_uses[s] >= limit for s in verdicts.get("sentences", ())):
            return "span_reused"
        if kind == "rewrite" and verdicts.get("faithful", {}).get("unsupported"):
            return "unsupported_claim"
        if kind == "rewrite":
            word_share, gram_share = faithfulness(assistant, span)
            settings = self.settings
            if word_share < settings.min_faithful_words or gram_share < settings.min_faithful_ngrams:
                return "unfaithful"
        if carries_self_harm_method(client) or carries_self_harm_method(assistant):
            return "safety"
        key = " ".join(normalized_words(client))
        # a disclosure may recur: its safe reply is the behaviour to learn, not a copied question
        if kind != "safe" and (key in self.seen_clients or key in earlier):
            return "duplicate_client"
        minimum = self.settings.curate_min_score
        if minimum is not None:
            scores = verdicts.get("curation", {}).get("scores")
            if not scores or min(scores.values()) < minimum:
                return "curation"  # no verdict is no pass: only what the judge rated well is kept
        return None

    def __call__(self, exchanges: list[tuple], min_exchanges: int) -> list[dict[str, str]] | None:
        """`exchanges`: (client, assistant, transcript span, kind[, judge verdicts]). The messages
        kept, or None."""
        kept: list[tuple[str, str]] = []
        used: list = []
        problem = None
        safe_end = False
        for client, assistant, span, kind, *verdicts in exchanges:
            earlier = {" ".join(normalized_words(c)) for c, _ in kept}
            problem = self.exchange_problem(client, assistant, span, kind, earlier, *verdicts)
            if problem:
                self.counts.exchanges_dropped[problem] += 1
                break
            kept.append((client, assistant))
            used.extend(verdicts[0].get("sentences", ()) if verdicts else ())
            safe_end = kind == "safe"
        if not kept or (len(kept) < min_exchanges and not safe_end):
            self.counts.conversations_dropped[problem or "too_short"] += 1
            return None
        if problem:
            self.counts.conversations_trimmed += 1
        self.seen_clients.update(" ".join(normalized_words(c)) for c, _ in kept)
        self.span_uses.update(set(used))
        return [
            message
            for client, assistant in kept
            for message in ({"role": "user", "content": client}, {"role": "assistant", "content": assistant})
        ]
