"""Reasoning shown where it belongs (clinical cases) and absent where it does not (small talk)."""

from __future__ import annotations

import re

from evals.metrics import Metric, share
from evals.settings import ReasoningSettings
from evals.suites import Probe


def shown_reasoning(reply: str, settings: ReasoningSettings) -> str | None:
    """The reasoning text of a reply when it shows at least `min_words` words of it, else None."""
    for pattern in settings.patterns:
        match = re.search(pattern, reply, flags=re.DOTALL)
        if match and len(match.group(1).split()) >= settings.min_words:
            return match.group(1).strip()
    return None


def reasoning_metrics(
    clinical: list[Probe], small_talk: list[Probe], replies: dict[str, str], settings: ReasoningSettings
) -> list[Metric]:
    shown = sum(shown_reasoning(replies[p.id], settings) is not None for p in clinical)
    absent = sum(shown_reasoning(replies[p.id], settings) is None for p in small_talk)
    return [
        share(
            "reasoning_shown", shown, len(clinical), "share of clinical cases with visible reasoning", "rules"
        ),
        share(
            "reasoning_absent",
            absent,
            len(small_talk),
            "share of small talk without visible reasoning",
            "rules",
        ),
    ]
