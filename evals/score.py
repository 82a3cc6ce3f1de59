"""The judge's calibration: its scores for held-out human replies, reported beside the model's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evals.judge import JudgeClient, Rubric, score_replies
from evals.metrics import Metric
from evals.proxy import proxy_empathy_metric


def calibration(
    human: Sequence[tuple[Sequence[Mapping[str, str]], str]],
    judge: JudgeClient | None,
    rubrics: Mapping[str, Rubric],
) -> dict[str, Metric]:
    """The judge's (or the proxy's) scores for held-out human replies: (context, human reply) pairs."""
    if not human:
        return {}
    if judge is None:
        return {"empathy": proxy_empathy_metric([reply for _, reply in human])}
    items = {f"human-{i}": pair for i, pair in enumerate(human)}
    out: dict[str, Metric] = {}
    for name in ("empathy", "counselbench"):
        out.update({m.name: m for m in score_replies(judge, rubrics[name], items).metrics()})
    return out
