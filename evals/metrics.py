"""The one shape every scorer returns, so the gate and the report treat all scores alike.

Every metric carries its uncertainty: a rate (pass/fail items) its Wilson 95% interval, a mean of
0..1 scores its standard error, clustered by prompt when a prompt was sampled several times (the
epochs of one prompt are not independent). A metric counts only when at least MIN_COVERAGE of its
items were scored: a judge that answered 1 item of 30 measured nothing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

# How a score was obtained ("human": the blind side-by-side review). A "proxy" score is reported but
# never passes a gate.
METHODS = ("rules", "judge", "proxy", "classifier", "human")
# Share of a metric's items that must carry a score for the metric to count as measured.
MIN_COVERAGE = 0.95
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Metric:
    """A score on its raw scale and normalised to 0..1 (higher is better), with a 95% interval.

    value None means "not measured" (no judge configured, too many judge answers malformed, too few
    items); the gate then says `incomplete`, never `proceed`. n: scored items (prompt x sample);
    unscored: items that were due a score and got none.
    """

    name: str
    value: float | None
    raw: float | None
    scale: str
    method: str
    n: int = 0
    unscored: int = 0
    note: str = ""
    lower: float | None = None
    upper: float | None = None
    stderr: float | None = None
    failures: int | None = None  # for rates: items that failed

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"metric {self.name}: method {self.method!r} is not one of {METHODS}")
        if self.value is not None and not 0.0 <= self.value <= 1.0:
            raise ValueError(f"metric {self.name}: normalised value {self.value} is outside 0..1")

    @property
    def measured(self) -> bool:
        return self.value is not None

    @property
    def coverage(self) -> float:
        due = self.n + self.unscored
        return self.n / due if due else 0.0

    def interval(self) -> str:
        if self.value is None:
            return "n/a"
        if self.lower is None or self.upper is None:
            return f"{self.value:.3f}"
        return f"{self.value:.3f} [{self.lower:.3f}, {self.upper:.3f}]"

    def to_dict(self) -> dict:
        return {**asdict(self), "coverage": self.coverage}


def unmeasured(name: str, scale: str, method: str, note: str, unscored: int = 0, n: int = 0) -> Metric:
    return Metric(
        name=name, value=None, raw=None, scale=scale, method=method, n=n, unscored=unscored, note=note
    )


def wilson(passed: int, total: int) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial share (exact enough at 0 and n failures, unlike Wald)."""
    if total == 0:
        return 0.0, 1.0
    p = passed / total
    denominator = 1 + Z95**2 / total
    centre = (p + Z95**2 / (2 * total)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / denominator
    lower = 0.0 if passed == 0 else max(0.0, centre - half)  # exact at the edges, no rounding residue
    upper = 1.0 if passed == total else min(1.0, centre + half)
    return lower, upper


def _coverage_problem(name: str, scored: int, unscored: int) -> str | None:
    due = scored + unscored
    if due == 0:
        return "no items to score"
    if scored / due < MIN_COVERAGE:
        return (
            f"only {scored} of {due} items scored ({scored / due:.0%} < {MIN_COVERAGE:.0%}): "
            f"{name} is not measured"
        )
    return None


def share(
    name: str, passed: int, total: int, scale: str, method: str, note: str = "", unscored: int = 0
) -> Metric:
    """A pass rate with its Wilson interval: raw and normalised are the same share."""
    problem = _coverage_problem(name, total, unscored)
    if problem:
        return unmeasured(name, scale, method, "; ".join(p for p in (note, problem) if p), unscored, total)
    rate = passed / total
    lower, upper = wilson(passed, total)
    return Metric(
        name=name,
        value=rate,
        raw=rate,
        scale=scale,
        method=method,
        n=total,
        unscored=unscored,
        note=note,
        lower=lower,
        upper=upper,
        stderr=math.sqrt(rate * (1 - rate) / total),
        failures=total - passed,
    )


def mean_metric(
    name: str,
    values: Sequence[tuple[str, float | None]],
    scale: str,
    method: str,
    note: str = "",
    raw_scale: tuple[float, float] = (0.0, 1.0),
) -> Metric:
    """Mean of per-item 0..1 scores; values: (prompt id, score or None when unscored).

    The standard error is clustered by prompt (the spread of per-prompt means), so five samples of
    one prompt do not count as five independent prompts. raw_scale maps the mean back to the raw scale.
    """
    scored = [(cluster, v) for cluster, v in values if v is not None]
    unscored = len(values) - len(scored)
    problem = _coverage_problem(name, len(scored), unscored)
    if problem:
        return unmeasured(name, scale, method, "; ".join(p for p in (note, problem) if p), unscored, len(scored))
    mean = sum(v for _, v in scored) / len(scored)
    clusters: dict[str, list[float]] = defaultdict(list)
    for cluster, v in scored:
        clusters[cluster].append(v)
    k = len(clusters)
    if k > 1:
        means = [sum(c) / len(c) for c in clusters.values()]
        centre = sum(means) / k
        stderr = math.sqrt(sum((m - centre) ** 2 for m in means) / (k - 1) / k)
    else:
        stderr = 0.0 if len(scored) == 1 else math.sqrt(
            sum((v - mean) ** 2 for _, v in scored) / (len(scored) - 1) / len(scored)
        )
    low, high = raw_scale
    return Metric(
        name=name,
        value=min(1.0, max(0.0, mean)),
        raw=low + mean * (high - low),
        scale=scale,
        method=method,
        n=len(scored),
        unscored=unscored,
        note=note,
        lower=max(0.0, mean - Z95 * stderr),
        upper=min(1.0, mean + Z95 * stderr),
        stderr=stderr,
    )
