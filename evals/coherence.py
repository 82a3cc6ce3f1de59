"""Coherence over long conversations: are facts planted in the first turns recalled after turn 10?"""

from __future__ import annotations

import re

from evals.suites import Probe


def _mentions(reply: str, answer: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(answer.casefold())}(?!\w)", reply.casefold()) is not None


def recall(probe: Probe, reply: str) -> float:
    """Share of the probe's planted facts that the reply names (any of each fact's answers)."""
    facts = probe.fields["planted"]
    return sum(any(_mentions(reply, a) for a in fact["answers"]) for fact in facts) / len(facts)
