"""Coherence over long conversations: are facts planted in the first turns recalled after turn 10?"""

from __future__ import annotations

import re

from evals.metrics import Metric, unmeasured
from evals.suites import Probe


def _mentions(reply: str, answer: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(answer.casefold())}(?!\w)", reply.casefold()) is not None


def recall(probe: Probe, reply: str) -> float:
    """Share of the probe's planted facts that the reply names (any of each fact's answers)."""
    facts = probe.fields["planted"]
    return sum(any(_mentions(reply, a) for a in fact["answers"]) for fact in facts) / len(facts)


def coherence_metric(probes: list[Probe], replies: dict[str, str]) -> tuple[Metric, dict[str, float]]:
    per_probe = {p.id: recall(p, replies[p.id]) for p in probes}
    if not per_probe:
        return unmeasured("coherence", "planted-fact recall 0..1", "rules", "no long conversations"), {}
    mean = sum(per_probe.values()) / len(per_probe)
    metric = Metric(
        "coherence", mean, mean, "planted-fact recall after 10+ turns, 0..1", "rules", n=len(per_probe)
    )
    return metric, per_probe
