"""The one shape every scorer returns, so the gate and the report treat all scores alike.

Every metric carries its uncertainty: rates (pass/fail items) and means of 0..1 scores alike get a
95% Wilson interval whose unit is the prompt (the samples of one prompt are not independent) with a
Student-t quantile for the number of prompts (clustered_interval). A metric
counts only when at least MIN_COVERAGE of its items were scored: a judge that answered 1 item of 30
measured nothing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from scipy.stats import t as student_t

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
    # prompt id -> the prompt's mean over its samples (paired no-regression checks pair these)
    per_prompt: dict[str, float] | None = field(default=None, repr=False)

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


def t_quantile(clusters: int) -> float:
    """The two-sided 95% Student-t quantile with clusters - 1 degrees of freedom (inf for one cluster):
    with 5 prompts a z quantile would claim a third more certainty than the data hold."""
    if clusters < 2:
        return math.inf
    return float(student_t.ppf(0.975, clusters - 1))


def wilson_interval(p: float, n: float, q: float) -> tuple[float, float]:
    """Wilson score interval of a share p seen on n (effective) items, at quantile q."""
    if n <= 0 or math.isinf(q):
        return 0.0, 1.0
    denominator = 1 + q**2 / n
    centre = (p + q**2 / (2 * n)) / denominator
    half = q * math.sqrt(max(0.0, p * (1 - p)) / n + q**2 / (4 * n**2)) / denominator
    # Exact at the edges: no rounding residue above 0 or below 1.
    lower = 0.0 if p <= 0.0 else max(0.0, centre - half)
    upper = 1.0 if p >= 1.0 else min(1.0, centre + half)
    return lower, upper


def wilson(passed: int, total: int) -> tuple[float, float]:
    """Wilson score 95% interval (z quantile) of a binomial share of independent items."""
    if total == 0:
        return 0.0, 1.0
    return wilson_interval(passed / total, total, Z95)


@dataclass(frozen=True)
class PairedDifference:
    """One model's per-prompt value minus another's, averaged over the prompts both have, with the
    Student-t 95% interval of that mean (the prompt is the unit: paired, so what both models find
    hard cancels out)."""

    mean: float
    lower: float
    upper: float
    prompts: int

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.lower:+.3f}, {self.upper:+.3f}] over {self.prompts} prompts"


def paired_difference(now: dict[str, float], before: dict[str, float]) -> PairedDifference | None:
    """now, before: prompt id -> value. None when fewer than 2 prompts are in both."""
    diffs = [now[p] - before[p] for p in now if p in before]
    k = len(diffs)
    if k < 2:
        return None
    mean = sum(diffs) / k
    half = t_quantile(k) * math.sqrt(sum((d - mean) ** 2 for d in diffs) / (k - 1) / k)
    return PairedDifference(mean, mean - half, mean + half, k)


@dataclass(frozen=True)
class ClusteredInterval:
    """A 0..1 mean over items grouped in clusters (the samples of one prompt), with its 95% interval."""

    mean: float
    lower: float
    upper: float
    stderr: float
    clusters: int


def clustered_interval(items: Sequence[tuple[str, float]]) -> ClusteredInterval:
    """The mean of 0..1 scores with a 95% interval whose unit is the prompt (the cluster).

    The prompts are the sample: the samples of one prompt are not independent (with greedy decoding
    they are copies), so the interval is the Wilson interval of the mean at n = the number of
    prompts, with a Student-t quantile on prompts - 1 degrees of freedom. Each prompt's mean lies in
    0..1 with overall mean p, so their variance is at most p(1 - p): the interval is conservative for
    graded scores as for pass/fail ones, monotone in the share passed, and never zero-width when
    every item agrees. `stderr` is the cluster-robust standard error, reported beside it.
    """
    if not items:
        raise ValueError("clustered_interval needs at least one item")
    clusters: dict[str, list[float]] = defaultdict(list)
    for cluster, value in items:
        clusters[cluster].append(value)
    n, k = len(items), len(clusters)
    p = min(1.0, max(0.0, sum(v for _, v in items) / n))
    residual = sum((sum(vs) - p * len(vs)) ** 2 for vs in clusters.values())
    stderr = math.sqrt(k / (k - 1) * residual) / n if k > 1 else 0.0
    lower, upper = wilson_interval(p, k, t_quantile(k))
    return ClusteredInterval(p, lower, upper, stderr, k)


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
    name: str,
    passed: int,
    total: int,
    scale: str,
    method: str,
    note: str = "",
    unscored: int = 0,
    clusters: Sequence[str] | None = None,
) -> Metric:
    """A pass rate: raw and normalised are the same share. clusters: each item's prompt id, in the
    order of the items, the passed ones first (default: every item its own prompt)."""
    problem = _coverage_problem(name, total, unscored)
    if problem:
        return unmeasured(name, scale, method, "; ".join(p for p in (note, problem) if p), unscored, total)
    ids = list(clusters) if clusters is not None else [str(i) for i in range(total)]
    if len(ids) != total:
        raise ValueError(f"metric {name}: {len(ids)} cluster ids for {total} items")
    return _from_items(name, [(c, float(i < passed)) for i, c in enumerate(ids)], scale, method, note, unscored,
                       failures=total - passed)


def rate_metric(name: str, values: Sequence[tuple[str, bool | None]], scale: str, method: str, note: str = "") -> Metric:
    """A pass rate over (prompt id, passed or None when unscored) items, clustered by prompt."""
    scored = [(cluster, bool(v)) for cluster, v in values if v is not None]
    unscored = len(values) - len(scored)
    problem = _coverage_problem(name, len(scored), unscored)
    if problem:
        return unmeasured(name, scale, method, "; ".join(p for p in (note, problem) if p), unscored, len(scored))
    return _from_items(name, [(c, float(v)) for c, v in scored], scale, method, note, unscored,
                       failures=sum(not v for _, v in scored))


def _from_items(
    name: str,
    items: Sequence[tuple[str, float]],
    scale: str,
    method: str,
    note: str,
    unscored: int,
    failures: int | None = None,
    raw_scale: tuple[float, float] = (0.0, 1.0),
) -> Metric:
    interval = clustered_interval(items)
    low, high = raw_scale
    return Metric(
        name=name,
        value=interval.mean,
        raw=low + interval.mean * (high - low),
        scale=scale,
        method=method,
        n=len(items),
        unscored=unscored,
        note=note,
        lower=interval.lower,
        upper=interval.upper,
        stderr=interval.stderr,
        failures=failures,
        per_prompt=per_prompt_means(items),
    )


def per_prompt_means(items: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Each prompt's mean over its samples: what a paired comparison between two models pairs."""
    clusters: dict[str, list[float]] = defaultdict(list)
    for cluster, value in items:
        clusters[cluster].append(value)
    return {cluster: sum(vs) / len(vs) for cluster, vs in clusters.items()}


def mean_metric(
    name: str,
    values: Sequence[tuple[str, float | None]],
    scale: str,
    method: str,
    note: str = "",
    raw_scale: tuple[float, float] = (0.0, 1.0),
) -> Metric:
    """Mean of per-item 0..1 scores; values: (prompt id, score or None when unscored), clustered by
    prompt (evals.metrics.clustered_interval). raw_scale maps the mean back to the raw scale."""
    scored = [(cluster, v) for cluster, v in values if v is not None]
    unscored = len(values) - len(scored)
    problem = _coverage_problem(name, len(scored), unscored)
    if problem:
        return unmeasured(name, scale, method, "; ".join(p for p in (note, problem) if p), unscored, len(scored))
    return _from_items(name, scored, scale, method, note, unscored, raw_scale=raw_scale)
