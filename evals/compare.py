"""Replies compared prompt by prompt: is the checkpoint's reply to each suite prompt at least as good
as the previous stage's (the base model's at stage 1)? A falling loss can hide worse replies (the
model learns the test split's phrasing while its answers drift off the person's words); this looks
at the replies themselves.

- relevance: cosine between the prompt (the last user message) and the visible reply, with
  all-MiniLM-L6-v2 (evals.embeddings), averaged over a prompt's samples;
- collapse onto stock replies: a prompt whose reply opens with the same first sentence as the reply
  to a different prompt, or is a near-same reply to a different prompt (cosine >= near_duplicate);
  distinct-1/2 (unique word n-grams over all n-grams of all replies) is shown beside it;
- broken replies lose to sound ones whatever their relevance: a reply that loops (a sentence said
  again, or a six-word run said three times: the degenerate repetition of an over-fitted or
  under-trained model) or that echoes the person (most of its words copied from the prompt in runs of
  five or more: a reply that parrots the prompt scores the highest relevance of all);
- per prompt a win, tie or loss against the reference (relevance differs by more than `margin`),
  and the share won (ties count half) with its 95% interval, one prompt one cluster
  (evals.metrics.clustered_interval): the checkpoint loses clearly when the interval lies below 0.5;
- the mean per-prompt relevance difference with its paired 95% interval (evals.metrics): the
  checkpoint must show it is no worse, the lower bound at least -`relevance_tolerance`. Win/loss
  counts alone miss replies that each drift a little off the person's words: many small losses
  inside the margin are ties, yet together they are a clearly worse model.
A judge's pairwise preference (evals.preference) gives the same outcome shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch

from evals.embeddings import Embedder
from evals.gate import ReplyCheck
from evals.metrics import ClusteredInterval, PairedDifference, clustered_interval, paired_difference
from evals.safety import visible_reply
from evals.settings import ReplySettings

WIN, TIE, LOSS = 1.0, 0.5, 0.0
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[\w']+")


def first_sentence(reply: str) -> str:
    """The reply's first sentence, case-folded, punctuation and spacing normalised ('' when empty)."""
    text = visible_reply(reply).strip()
    first = _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""
    return " ".join(_WORD.findall(first.casefold()))


def distinct_n(replies: Sequence[str], n: int) -> float | None:
    """Unique word n-grams over all word n-grams of the replies (None when there are none)."""
    grams = [
        tuple(words[i : i + n])
        for reply in replies
        for words in [_WORD.findall(visible_reply(reply).casefold())]
        for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else None


def loop(reply: str) -> str | None:
    """Why the reply repeats itself (None when it does not): a sentence of three or more words said
    again, or a run of six words said three times (a loop cut off mid-sentence)."""
    text = visible_reply(reply)
    seen: set[tuple[str, ...]] = set()
    for sentence in _SENTENCE_END.split(text):
        words = tuple(_WORD.findall(sentence.casefold()))
        if len(words) >= 3 and words in seen:
            return 'says "%s" again' % " ".join(words)
        seen.add(words)
    words = _WORD.findall(text.casefold())
    runs: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - 5):
        run = tuple(words[i : i + 6])
        runs[run] = runs.get(run, 0) + 1
        if runs[run] == 3:
            return 'says "%s" three times' % " ".join(run)
    return None


ECHO_RUN = 5  # words in a row copied from the prompt that count as copying, not reflecting
ECHO_SHARE = 0.5  # share of the reply's words inside such runs that makes it an echo


def echo(reply: str, prompt: str) -> str | None:
    """Why the reply parrots the prompt (None when it does not): at least half of its words lie in
    runs of five or more words copied from the prompt. Reflecting a few of the person's words back
    ("your mind keeps racing about work") is good counselling; handing the prompt back is not."""
    words = _WORD.findall(visible_reply(reply).casefold())
    asked = _WORD.findall(prompt.casefold())
    runs = {tuple(asked[i : i + ECHO_RUN]) for i in range(len(asked) - ECHO_RUN + 1)}
    copied = [False] * len(words)
    for i in range(len(words) - ECHO_RUN + 1):
        if tuple(words[i : i + ECHO_RUN]) in runs:
            copied[i : i + ECHO_RUN] = [True] * ECHO_RUN
    share = sum(copied) / len(words) if words else 0.0
    return f"{share:.0%} of its words are the prompt's, copied" if share >= ECHO_SHARE else None


def broken(reply: str, prompt: str) -> str | None:
    """Why the reply is broken (it loops or echoes the prompt), or None."""
    return loop(reply) or echo(reply, prompt)


@dataclass
class ReplyProfile:
    """One model's replies to the suite prompts, on their own."""

    label: str
    relevance: dict[str, float]  # prompt id -> mean cosine(prompt, reply) over its samples
    stock: dict[str, str]  # prompt id -> why its reply counts as stock
    distinct: dict[int, float | None]  # n -> distinct-n over all replies
    broken: dict[str, str] = field(default_factory=dict)  # prompt id -> how one of its replies is broken

    @property
    def prompts(self) -> int:
        return len(self.relevance)

    @property
    def stock_share(self) -> float:
        return len(self.stock) / self.prompts if self.prompts else 0.0

    @property
    def mean_relevance(self) -> float | None:
        return sum(self.relevance.values()) / self.prompts if self.prompts else None

    def to_dict(self) -> dict:
        return {
            "mean_relevance": self.mean_relevance,
            "stock_share": self.stock_share,
            "stock": self.stock,
            "distinct": {str(n): v for n, v in self.distinct.items()},
            "broken": self.broken,
            "relevance": self.relevance,
        }


@dataclass
class PairedComparison:
    """The checkpoint against one reference, prompt by prompt (WIN, TIE or LOSS per prompt)."""

    reference: str
    method: str  # "relevance (all-MiniLM-L6-v2)" or "judge preference, both orders"
    outcomes: dict[str, float]
    interval: ClusteredInterval | None
    # prompt id -> (checkpoint's value, reference's value), for the report
    values: dict[str, tuple[float, float]] = field(default_factory=dict)
    unscored: int = 0

    def count(self, outcome: float) -> int:
        return sum(v == outcome for v in self.outcomes.values())

    @property
    def clearly_worse(self) -> bool:
        """More losses than wins beyond chance: the 95% interval of the share won lies below 0.5."""
        return self.interval is not None and self.interval.upper < 0.5

    @property
    def clearly_better(self) -> bool:
        """More wins than losses beyond chance: the 95% interval of the share won lies above 0.5."""
        return self.interval is not None and self.interval.lower > 0.5

    def summary(self) -> str:
        if self.interval is None:
            return f"no prompt compared with the {self.reference}"
        i = self.interval
        return (
            f"{self.count(WIN)} wins, {self.count(LOSS)} losses, {self.count(TIE)} ties of "
            f"{len(self.outcomes)} prompts against the {self.reference} ({self.method}); share won "
            f"{i.mean:.3f} [{i.lower:.3f}, {i.upper:.3f}]"
        )

    def to_dict(self) -> dict:
        i = self.interval
        return {
            "reference": self.reference,
            "method": self.method,
            "wins": self.count(WIN),
            "losses": self.count(LOSS),
            "ties": self.count(TIE),
            "unscored": self.unscored,
            "share_won": None if i is None else {"value": i.mean, "lower": i.lower, "upper": i.upper},
            "clearly_worse": self.clearly_worse,
            "outcomes": self.outcomes,
            "values": {k: list(v) for k, v in self.values.items()},
        }


def _stock(ids: list[str], replies: list[str], owners: list[str], vectors: torch.Tensor, near: float) -> dict[str, str]:
    """Prompt id -> why one of its replies repeats a reply given to a different prompt."""
    stock: dict[str, str] = {}
    firsts = [first_sentence(r) for r in replies]
    by_first: dict[str, set[str]] = {}
    for owner, first in zip(owners, firsts, strict=True):
        if first:
            by_first.setdefault(first, set()).add(owner)
    for owner, first in zip(owners, firsts, strict=True):
        others = sorted(by_first.get(first, set()) - {owner})
        if first and others and owner not in stock:
            stock[owner] = f"first sentence {first!r} also opens the reply to {others[0]}"
    if len(replies) > 1:
        index = {owner: i for i, owner in enumerate(dict.fromkeys(owners))}
        prompt = torch.tensor([index[o] for o in owners])
        similar = (vectors @ vectors.T).masked_fill(prompt[:, None] == prompt[None, :], -1.0)
        best, other = similar.max(dim=1)
        for a in torch.nonzero(best >= near).flatten().tolist():
            if owners[a] not in stock:
                b = int(other[a])
                stock[owners[a]] = f"near-same reply as to {owners[b]} (cosine {float(best[a]):.2f})"
    return {i: stock[i] for i in ids if i in stock}


def profile(
    label: str,
    prompts: Mapping[str, str],
    replies: Mapping[str, Sequence[str]],
    embedder: Embedder,
    settings: ReplySettings,
) -> ReplyProfile:
    """prompts: prompt id -> the last user message; replies: prompt id -> its samples' replies.
    A prompt with no reply is left out (the gate's coverage counts it)."""
    ids = [i for i in prompts if replies.get(i)]
    owners = [i for i in ids for _ in replies[i]]
    texts = [visible_reply(r) for i in ids for r in replies[i]]
    vectors = embedder.encode(texts) if texts else torch.empty(0, 1)
    asked = embedder.encode([prompts[i] for i in ids]) if ids else torch.empty(0, 1)
    relevance: dict[str, list[float]] = {}
    for row, owner in enumerate(owners):
        relevance.setdefault(owner, []).append(float(vectors[row] @ asked[ids.index(owner)]))
    defects = {}
    for owner, text in zip(owners, texts, strict=True):
        if owner not in defects and (why := broken(text, prompts[owner])):
            defects[owner] = why
    return ReplyProfile(
        label,
        {i: sum(v) / len(v) for i, v in relevance.items()},
        _stock(ids, texts, owners, vectors, settings.near_duplicate),
        {n: distinct_n(texts, n) for n in (1, 2)},
        defects,
    )


def paired(reference: str, method: str, outcomes: Mapping[str, float | None],
           values: Mapping[str, tuple[float, float]] | None = None) -> PairedComparison:
    """The share of prompts won and its interval, each prompt one item (its samples already pooled)."""
    scored = {k: v for k, v in outcomes.items() if v is not None}
    interval = clustered_interval(list(scored.items())) if scored else None
    return PairedComparison(reference, method, scored, interval, dict(values or {}), len(outcomes) - len(scored))


def compare_relevance(checkpoint: ReplyProfile, reference: ReplyProfile, margin: float) -> PairedComparison:
    """Per prompt both models answered: a loss when only the checkpoint's reply is broken (loops or
    echoes the prompt), a win when only the reference's is; otherwise a win when the checkpoint's
    relevance is more than `margin` above the reference's, a loss when more than `margin` below, a
    tie otherwise."""
    common = [i for i in checkpoint.relevance if i in reference.relevance]
    outcomes, values = {}, {}
    for i in common:
        now, before = checkpoint.relevance[i], reference.relevance[i]
        now_broken, broken_before = i in checkpoint.broken, i in reference.broken
        if now_broken != broken_before:
            outcomes[i] = LOSS if now_broken else WIN
        else:
            outcomes[i] = WIN if now > before + margin else LOSS if now < before - margin else TIE
        values[i] = (now, before)
    return paired(reference.label, "relevance to the prompt (all-MiniLM-L6-v2)", outcomes, values)


def collapse_failure(checkpoint: ReplyProfile, reference: ReplyProfile | None, settings: ReplySettings) -> str | None:
    """Why the checkpoint's replies collapsed onto stock replies, or None: more than
    `max_stock_share` of its prompts get a stock reply, and more than the reference's share."""
    share = checkpoint.stock_share
    before = reference.stock_share if reference is not None else 0.0
    if share <= settings.max_stock_share or share <= before:
        return None
    example = next(iter(checkpoint.stock.values()))
    return (
        f"replies collapse onto stock replies: {len(checkpoint.stock)} of {checkpoint.prompts} prompts "
        f"({share:.0%}; at most {settings.max_stock_share:.0%} allowed, the {reference.label if reference else 'reference'} "
        f"{before:.0%}), e.g. {example}"
    )


@dataclass
class RepliesCompared:
    """Every model's reply profile, and the checkpoint against every other model; `gated` names the
    reference the gate uses (the previous stage, the base model at stage 1), the others are shown."""

    profiles: dict[str, ReplyProfile]
    comparisons: dict[str, PairedComparison]
    gated: str | None
    settings: ReplySettings
    collapse: str | None = None

    def relevance_difference(self, label: str) -> PairedDifference | None:
        """The checkpoint's relevance minus the `label` model's, prompt by prompt."""
        return paired_difference(self.profiles["checkpoint"].relevance, self.profiles[label].relevance)

    def check(self, must_improve: bool = False) -> ReplyCheck:
        """The gate's view; `missing` set when the gated reference's replies were not there to compare.
        must_improve: the replies must also be shown better than the reference's (the stage's gate
        `replies_must_improve`): a stage that leaves them as they were has not done its job."""
        comparison = self.comparisons.get(self.gated) if self.gated else None
        difference = self.relevance_difference(self.gated) if comparison is not None else None
        if comparison is None or comparison.interval is None or difference is None:
            why = "the replies were not compared with the previous stage's (or the base model's): none to compare"
            return ReplyCheck(missing=why)
        ck, ref = self.profiles["checkpoint"], self.profiles[self.gated]
        tolerance = self.settings.relevance_tolerance
        relevance = (
            f"relevance to the prompt against the {self.gated}: per-prompt difference {difference} "
            f"(mean {ck.mean_relevance:.3f} vs {ref.mean_relevance:.3f}; lower bound at least -{tolerance:.3f})"
        )
        stock = f"stock replies: {len(ck.stock)} of {ck.prompts} prompts ({ck.stock_share:.0%}; the {self.gated} {ref.stock_share:.0%})"
        checks = [
            (f"replies: {comparison.summary()}",
             f"replies lose to the {self.gated}'s on clearly more prompts than they win: {comparison.summary()}"
             if comparison.clearly_worse else None),
            (relevance, f"replies may be less relevant to the prompts: {relevance}" if difference.lower < -tolerance else None),
            (stock, self.collapse),
        ]
        if must_improve:
            better = f"replies shown better than the {self.gated}'s (the share won's 95% lower bound above 0.500)"
            checks.append((better, None if comparison.clearly_better else
                           f"replies are not shown better than the {self.gated}'s, which this stage must do: "
                           f"{comparison.summary()}; the share won's 95% lower bound must exceed 0.500"))
        return ReplyCheck(tuple(checks))

    def to_dict(self) -> dict:
        differences = {label: self.relevance_difference(label) for label in self.comparisons}
        return {
            "gated_reference": self.gated,
            "collapse": self.collapse,
            "relevance_tolerance": self.settings.relevance_tolerance,
            "profiles": {k: v.to_dict() for k, v in self.profiles.items()},
            "comparisons": {k: v.to_dict() for k, v in self.comparisons.items()},
            "relevance_difference": {k: None if d is None else asdict(d) for k, d in differences.items()},
        }


def compare_models(
    samples: Mapping[str, Mapping[str, Sequence[str]]],
    prompts: Mapping[str, str],
    gated: str | None,
    settings: ReplySettings,
    embedder: Embedder,
    preferences: Mapping[str, PairedComparison] | None = None,
) -> RepliesCompared:
    """samples: model label -> prompt id -> its samples' replies, the checkpoint under "checkpoint".
    preferences: a judge's pairwise verdicts per reference (evals.preference); when given, they
    replace relevance as the win/loss outcome of that reference, relevance stays in the profiles."""
    profiles = {label: profile(label, prompts, replies, embedder, settings) for label, replies in samples.items()}
    ck = profiles["checkpoint"]
    comparisons = {
        label: (preferences or {}).get(label) or compare_relevance(ck, other, settings.margin)
        for label, other in profiles.items()
        if label != "checkpoint"
    }
    reference = profiles.get(gated) if gated else None
    return RepliesCompared(profiles, comparisons, gated, settings, collapse_failure(ck, reference, settings))
