"""Offline lexical proxy for empathy, used only when no judge is configured.

It counts EPITOME-style cues (emotional reactions, interpretations, explorations), 0-2 each. Phrases
are easy to produce without empathy, so every metric it feeds is labelled method "proxy" and the gate
never lets a proxy score pass.
"""

from __future__ import annotations

import re

from evals.metrics import Metric, mean_metric

_I = re.IGNORECASE
CUES: dict[str, re.Pattern] = {
    "emotional_reactions": re.compile(
        r"\b(i'?m (so |really )?sorry|that sounds (really |so )?(hard|difficult|painful|exhausting|"
        r"overwhelming|scary|lonely)|i can (only )?imagine|it makes sense|understandable|i'?m glad you|"
        r"thank you for (sharing|telling))",
        _I,
    ),
    "interpretations": re.compile(
        r"\b(it sounds like|it seems (like|that)|i hear (that|you)|you('re| are| might be| may be) feeling|"
        r"what i'?m hearing|you feel|that must (be|have been))",
        _I,
    ),
    "explorations": re.compile(
        r"(\b(what|how|when|who|would you|could you|can you tell me|tell me more)\b[^.?!]*\?)", _I
    ),
}
SCALE = "lexical EPITOME proxy, sum of three cues 0-2 each (0-6)"


def empathy_cues(reply: str) -> dict[str, int]:
    return {name: min(2, len(pattern.findall(reply))) for name, pattern in CUES.items()}


def proxy_empathy(reply: str) -> float:
    """Per-reply proxy empathy normalised to 0..1."""
    return sum(empathy_cues(reply).values()) / 6


def proxy_empathy_metric(replies: list[str]) -> Metric:
    return mean_metric(
        "empathy",
        [(str(i), proxy_empathy(r)) for i, r in enumerate(replies)],
        SCALE,
        "proxy",
        "offline lexical proxy: no judge configured; never passes a gate",
        (0.0, 6.0),
    )
