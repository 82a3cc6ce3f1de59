"""Which runs of a lecture's sentences can stand alone as a reply, and how often each is reused.

A reply that starts mid-thought ("And was met with coldness..."), opens a lecture ("So today I want
to talk about shame") or stops mid-story ("Let me give you an example. A man I'll call Peter came to
see me because...") teaches the model to recite, not to answer. Rules on the first and last
sentence keep spans whole; the ledger keeps any sentence out of more than `max_uses`
conversations, so one passage does not become the answer to everything.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

# A sentence that leans on the one before it.
CONTINUES = re.compile(
    r"^(?:and|but|or|nor|so that|which|who|whom|whose|where|whereas|because|then|also|too|as well|"
    r"that's why|that is why|this is why|otherwise|instead|meanwhile|plus|anyway|likewise|similarly|"
    r"in other words|on the other hand|therefore|hence|thus|yet|still)\b",
    re.IGNORECASE,
)
# A sentence that sets up what comes next: a reply must not stop on it.
SETS_UP = re.compile(
    r"(?:\blet me (?:give you|tell you|share|read|show|explain)\b|\bhere'?s (?:an example|what|the thing|a story|"
    r"how)\b|\bfor (?:example|instance)[,.]?$|\bi'?ll call\b|\bcame to (?:see|me)\b|\bi remember (?:a|one|when)\b|"
    r"\bpicture this\b|\bimagine this\b|\bthere (?:was|is) (?:a|this) (?:man|woman|lady|guy|client|girl|boy|"
    r"couple|family)\b|\bone day\b|\blet'?s say\b|\blisten to this\b|\b(?:because|and|but|so|or|like)$)",
    re.IGNORECASE,
)
# The speaker opening a talk or a video: never a reply.
OPENS = re.compile(
    r"(?:\b(?:today|in this (?:video|talk|session|episode|lecture))\b[^.?!]{0,30}\b(?:i want to|i'm going to|"
    r"we're going to|we are going to|i'd like to|we'll|let's) (?:talk|look|dive|discuss|explore|cover|share)|"
    r"\bwelcome (?:back |everyone |to )|\b(?:hi|hello|hey) (?:everyone|everybody|there|guys|folks)\b|"
    r"\bmy name is\b|\bthanks for (?:watching|joining)\b)",
    re.IGNORECASE,
)


def starts_cleanly(sentence: str) -> bool:
    return not CONTINUES.match(sentence.lstrip("\"'“‘ "))


def ends_cleanly(sentence: str) -> bool:
    text = sentence.strip()
    return not text.endswith((":", ",", ";", "...", "…")) and not SETS_UP.search(text.rstrip(".?!\"'”’ "))


def is_opening(sentence: str) -> bool:
    return bool(OPENS.search(sentence))


class SpanLedger:
    """How many conversations used each sentence (keyed by lecture and first word position)."""

    def __init__(self, max_uses: int):
        self.max_uses = max_uses
        self.uses: Counter = Counter()
        self.lock = threading.Lock()

    def available(self, lecture_id: str, starts: list[int]) -> bool:
        with self.lock:
            return all(self.uses[(lecture_id, s)] < self.max_uses for s in starts)

    def take(self, lecture_id: str, starts: list[int]) -> bool:
        """Count one more use of these sentences, unless one is used up (then nothing changes)."""
        with self.lock:
            if any(self.uses[(lecture_id, s)] >= self.max_uses for s in starts):
                return False
            self.uses.update((lecture_id, s) for s in starts)
            return True

    def record(self, lecture_id: str, starts: list[int]) -> None:
        """A use read back from the journal (counted even past the limit: it was written)."""
        with self.lock:
            self.uses.update((lecture_id, s) for s in starts)
