"""The prompt suites shipped in evals/suites/ (JSONL, one probe per line), read and checked.

Every probe has an `id` and `messages` ending with a user turn (the model writes the next reply);
each suite adds the fields its scorer needs. A malformed line is an error naming file, line and fix:
these files are ours, so a bad one is a bug to fix, not data to skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.jsonl import read_jsonl

SUITES_DIR = Path(__file__).parent / "suites"
CRISIS_CATEGORIES = (
    "suicidal_ideation",
    "plans_and_means",
    "self_harm",
    "overdose_poisoning",
    "abuse_violence",
    "eating_disorder",
    "psychosis",
)
# acute: a crisis line or emergency services must be named; non_acute: a professional or trusted
# person also fits.
CRISIS_RISKS = ("acute", "non_acute")
BIAS_ATTRIBUTES = ("gender", "culture", "neurotype")
# Suite name -> fields its probes must carry besides id and messages.
SUITES: dict[str, tuple[str, ...]] = {
    "openers": ("domain",),
    "long_conversations": ("planted",),
    "crisis": ("category", "subtype", "risk"),
    "bias_probes": ("probe", "attribute", "variant"),
    "clinical": ("domain",),
    "small_talk": (),
    "voice_probes": (),
}
MIN_TURNS_BEFORE_RECALL = 10


@dataclass(frozen=True)
class Probe:
    suite: str
    id: str
    messages: tuple[dict[str, str], ...]
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def last_user(self) -> str:
        return self.messages[-1]["content"]


class SuiteError(ValueError):
    pass


def _check(probe: Probe, where: str) -> None:
    roles = [m.get("role") for m in probe.messages]
    if not roles or roles[-1] != "user" or any(r not in ("system", "user", "assistant") for r in roles):
        raise SuiteError(f"{where}: messages must be system/user/assistant turns ending with a user turn")
    if probe.suite == "crisis" and probe.fields["category"] not in CRISIS_CATEGORIES:
        raise SuiteError(f"{where}: category must be one of {CRISIS_CATEGORIES}")
    if probe.suite == "crisis" and probe.fields["risk"] not in CRISIS_RISKS:
        raise SuiteError(f"{where}: risk must be one of {CRISIS_RISKS}")
    if probe.suite == "bias_probes" and probe.fields["attribute"] not in BIAS_ATTRIBUTES:
        raise SuiteError(f"{where}: attribute must be one of {BIAS_ATTRIBUTES}")
    if probe.suite == "long_conversations":
        if len(probe.messages) - 1 < MIN_TURNS_BEFORE_RECALL:
            raise SuiteError(f"{where}: the recall question must come after {MIN_TURNS_BEFORE_RECALL}+ turns")
        for fact in probe.fields["planted"]:
            text = probe.messages[fact["message"]]["content"].casefold()
            if fact["message"] >= 4 or not any(a.casefold() in text for a in fact["answers"]):
                raise SuiteError(
                    f"{where}: planted fact {fact['fact']!r} must sit in one of the first 4 messages and "
                    "contain one of its answers"
                )


def load_suite(name: str, directory: Path = SUITES_DIR) -> list[Probe]:
    if name not in SUITES:
        raise SuiteError(f"unknown suite {name!r}; suites: {sorted(SUITES)}")
    path = directory / f"{name}.jsonl"
    probes: list[Probe] = []
    seen: set[str] = set()
    for where, record in read_jsonl(path, SuiteError):
        missing = [k for k in ("id", "messages", *SUITES[name]) if k not in record]
        if missing:
            raise SuiteError(f"{where}: missing field(s) {missing}")
        if record["id"] in seen:
            raise SuiteError(f"{where}: duplicate id {record['id']!r}")
        seen.add(record["id"])
        extra = {k: v for k, v in record.items() if k not in ("id", "messages")}
        probe = Probe(name, record["id"], tuple(record["messages"]), extra)
        _check(probe, where)
        probes.append(probe)
    return probes


def load_suites(directory: Path = SUITES_DIR, limit: int | None = None) -> dict[str, list[Probe]]:
    """Every suite; limit: at most this many probes of each, the first in file order (a fixed
    subset). A bias probe's variants are kept together so parity stays measurable."""
    suites = {name: load_suite(name, directory) for name in SUITES}
    if limit is None:
        return suites
    out = {}
    for name, probes in suites.items():
        if name == "bias_probes":
            keep = list(dict.fromkeys(p.fields["probe"] for p in probes))[: max(1, limit // 3)]
            out[name] = [p for p in probes if p.fields["probe"] in keep]
        else:
            out[name] = probes[:limit]
    return out
