"""Train / val / test by a stable hash of each conversation's group, and train-split weights.

Conversations that share any grouping key (a questionID, a conversation or lecture id, the
normalised text of a single question) form one group (`merge_groups`), named by its smallest key:
an Amod row and the counsel-chat answer to the same question end up on one split. A group goes wholly to
one split, chosen by where the hash of its name falls in [0, 1): below test_fraction is test, the
next val_fraction is val, the rest is train. The hash depends on the group alone, so adding data,
adding sources or reordering files never moves an existing group; growing test_fraction only moves
groups from val/train into test. The test split is what evaluation reads; nothing trains on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from datamodules.conversation import Conversation
from datamodules.dedup import deduplicate
from datamodules.registry import SourceSpec
from datamodules.sources import ReadOptions, ReadResult, read_sources, stable_hash

SPLITS = ("train", "val", "test")


def group_position(group: str) -> float:
    """Where a group falls in [0, 1); the same on every machine and in every run."""
    return stable_hash(group) / 2.0**64


def split_by_group(
    conversations: Sequence[Conversation], val_fraction: float, test_fraction: float
) -> dict[str, list[Conversation]]:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction {val_fraction} and test_fraction {test_fraction} must each be in [0, 1) "
            "and leave a train split (sum < 1)"
        )
    out: dict[str, list[Conversation]] = {name: [] for name in SPLITS}
    for conversation in merge_groups(conversations):
        position = group_position(conversation.group)
        if position < test_fraction:
            out["test"].append(conversation)
        elif position < test_fraction + val_fraction:
            out["val"].append(conversation)
        else:
            out["train"].append(conversation)
    return out


def merge_groups(conversations: Sequence[Conversation]) -> list[Conversation]:
    """The conversations with `group` set to their component's name: conversations sharing any
    key are joined (union-find), and a component is named by the smallest primary key (a record's
    own group key: its lecture, conversation or question id) among its members, so a group keeps
    the name its source gives it, and its split, as long as new data does not join it to another.
    A shared question-text key joins twins but never names the group: then a lecture's split would
    hang on whichever of its single-exchange conversations hashed lowest."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for conversation in conversations:
        keys = conversation.keys or (conversation.group,)
        first = root(keys[0])
        for key in keys[1:]:
            other = root(key)
            if other != first:
                first, other = min(first, other), max(first, other)
                parent[other] = first
    names: dict[str, str] = {}
    for conversation in conversations:
        primary = (conversation.keys or (conversation.group,))[0]
        component = root(primary)
        names[component] = min(names.get(component, primary), primary)
    named = ((c, names[root((c.keys or (c.group,))[0])]) for c in conversations)
    return [c if name == c.group else replace(c, group=name) for c, name in named]


def apply_weights(train: Sequence[Conversation], weights: dict[str, float]) -> list[Conversation]:
    """The registry's per-source `weight` on the train split: each conversation floor(w) times, and
    once more for a stable-hash share w - floor(w) of them (w = 0.5 keeps half, 1.5 repeats half).
    Sources missing from `weights` count once. Order: the input order, repeats side by side (the
    loader shuffles)."""
    out: list[Conversation] = []
    for conversation in train:
        weight = weights.get(conversation.source, 1.0)
        whole = math.floor(weight)
        extra = stable_hash(f"weight:{conversation.origin}") / 2.0**64 < weight - whole
        out.extend([conversation] * (whole + extra))
    return out


@dataclass(frozen=True)
class SplitSettings:
    """How a stage reads and splits its sources: a stage's own data and the earlier stages it
    replays go through the same settings, so a replayed group lands on the very split it has in its
    own stage."""

    data_root: str | Path
    options: ReadOptions
    val_fraction: float
    test_fraction: float
    dedup: bool
    near_duplicate_threshold: float | None


def read_and_split(
    specs: dict[str, SourceSpec], settings: SplitSettings, processes: int = 1
) -> tuple[ReadResult, dict[str, list[Conversation]]]:
    """read -> clean -> dedup -> split by group -> registry weights on train: the one spelling a
    stage's own data (datamodules.prepare) and its replayed earlier stages (datamodules.replay)
    share. Reading (a process per source) and the near-duplicate signatures run over up to
    `processes` processes; the result is the same for any number."""
    result = read_sources(specs, settings.data_root, settings.options, processes)
    if settings.dedup:
        result = deduplicate(result, settings.near_duplicate_threshold, processes=processes)
    splits = split_by_group(result.conversations, settings.val_fraction, settings.test_fraction)
    splits["train"] = apply_weights(splits["train"], {name: spec.weight for name, spec in specs.items()})
    return result, splits
