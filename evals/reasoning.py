"""Reasoning shown where it belongs (clinical cases) and absent where it does not (small talk)."""

from __future__ import annotations

import re

from evals.settings import ReasoningSettings


def shown_reasoning(reply: str, settings: ReasoningSettings) -> str | None:
    """The reasoning text of a reply when it shows at least `min_words` words of it, else None."""
    for pattern in settings.patterns:
        match = re.search(pattern, reply, flags=re.DOTALL)
        if match and len(match.group(1).split()) >= settings.min_words:
            return match.group(1).strip()
    return None
