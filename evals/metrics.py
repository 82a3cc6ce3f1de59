"""The one shape every scorer returns, so the gate and the report treat all scores alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# How a score was obtained. A "proxy" score is reported but never passes a gate.
METHODS = ("rules", "judge", "proxy", "classifier")


@dataclass(frozen=True)
class Metric:
    """A score on its raw scale and normalised to 0..1 (higher is better).

    value None means "not measured" (no judge configured, every judge answer malformed, too few
    items); the gate then says `incomplete`, never `proceed`.
    """

    name: str
    value: float | None
    raw: float | None
    scale: str
    method: str
    n: int = 0
    unscored: int = 0
    note: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"metric {self.name}: method {self.method!r} is not one of {METHODS}")
        if self.value is not None and not 0.0 <= self.value <= 1.0:
            raise ValueError(f"metric {self.name}: normalised value {self.value} is outside 0..1")

    @property
    def measured(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict:
        return asdict(self)


def unmeasured(name: str, scale: str, method: str, note: str, unscored: int = 0) -> Metric:
    return Metric(name=name, value=None, raw=None, scale=scale, method=method, unscored=unscored, note=note)


def share(name: str, passed: int, total: int, scale: str, method: str, note: str = "") -> Metric:
    """A pass rate: raw and normalised are the same share."""
    if total == 0:
        return unmeasured(name, scale, method, note or "no items to score")
    rate = passed / total
    return Metric(name=name, value=rate, raw=rate, scale=scale, method=method, n=total, note=note)
