"""The blind side-by-side review's data: which reply pairs a report folder offers, and reviews.jsonl.

A pair is one prompt of the report's replies.jsonl with the checkpoint's reply and another model's
(the previous stage, or the base model). Every review line records the reviewer's typed name, the
time, the prompt, the hidden order (which model stood as A and B), the choice mapped back to model
names, any unsafe flags and a digest of the two replies, so a review of replies that a later
evaluation overwrote is recognised as stale instead of counted. Lines are appended as they are made
(one write and an fsync each): a closed page or a crash loses at most the rating being made.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from evals.jsonl import read_jsonl
from evals.suites import SuiteError, load_suites

REPLIES, REVIEWS = "replies.jsonl", "reviews.jsonl"
CHECKPOINT, PREVIOUS, BASE = "checkpoint", "previous stage", "base"
CHOICES = ("A", "B", "tie", "skip")
MAX_REASON = 300


class ReviewFileError(ValueError):
    pass


@dataclass(frozen=True)
class Pair:
    prompt_id: str
    suite: str
    messages: tuple[dict[str, str], ...]  # the conversation up to the user turn replied to
    replies: dict[str, str]  # model label -> reply, exactly two

    @property
    def digest(self) -> str:
        """Names the two replies, so a review of since-overwritten replies is recognised."""
        text = "\0".join(f"{label}\0{self.replies[label]}" for label in sorted(self.replies))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _report_rows(path: Path) -> list[dict]:
    """The rows of a report's replies.jsonl or reviews.jsonl: written by the evaluation and the page,
    so a bad line is one to fix or delete."""
    return [row for _, row in read_jsonl(path, ReviewFileError, "fix or delete that line")]


def compared_model(models: list[str] | dict, against: str) -> str:
    """The report's label for `against` (previous | base): stage 1's previous stage is the base model."""
    if against == "base":
        label = BASE
    elif against == "previous":
        label = PREVIOUS if PREVIOUS in models else BASE
    else:
        raise ValueError(f"against must be 'previous' or 'base', not {against!r}")
    if label not in models:
        raise ReviewFileError(f"the report has no {label!r} replies to compare with (models: {sorted(models)})")
    return label


def _conversations() -> dict[str, tuple[dict[str, str], ...]]:
    """The shipped suites' full conversations by probe id (replies.jsonl keeps only the last user turn)."""
    try:
        return {p.id: p.messages for probes in load_suites().values() for p in probes}
    except (SuiteError, OSError):
        return {}


def load_pairs(report: Path, against: str = "previous") -> tuple[str, list[Pair]]:
    """The compared model's label and every prompt where both it and the checkpoint replied."""
    path = Path(report) / REPLIES
    if not path.is_file():
        raise ReviewFileError(f"{path} does not exist: run python -m stages.evaluate --out {report} first")
    rows = _report_rows(path)
    models = sorted({k for row in rows for k in row} - {"id", "suite", "user", "messages"})
    if CHECKPOINT not in models:
        raise ReviewFileError(f"{path}: no {CHECKPOINT!r} replies (columns: {models})")
    other = compared_model(models, against)
    conversations = _conversations()
    pairs = []
    for number, row in enumerate(rows, start=1):
        if "id" not in row:
            raise ReviewFileError(f"{path}:{number}: no prompt id; the file is not a report's replies.jsonl")
        mine, theirs = row.get(CHECKPOINT), row.get(other)
        if not mine or not theirs:
            continue
        messages = row.get("messages") or conversations.get(row["id"])
        if not messages or messages[-1].get("content") != row.get("user", messages[-1].get("content")):
            messages = ({"role": "user", "content": row.get("user", "")},)
        pairs.append(Pair(row["id"], row.get("suite", ""), tuple(messages), {CHECKPOINT: mine, other: theirs}))
    return other, pairs


RECORD_KEYS = ("reviewer", "prompt_id", "order", "choice", "replies_digest")


def read_reviews(report: Path) -> list[dict]:
    """Every review line; one without the fields the page writes is an error naming its line."""
    path = Path(report) / REVIEWS
    rows = _report_rows(path) if path.is_file() else []
    for number, row in enumerate(rows, start=1):
        missing = [k for k in RECORD_KEYS if k not in row]
        if missing or not isinstance(row["order"], dict) or row["choice"] not in CHOICES:
            raise ReviewFileError(
                f"{path}: review {number} lacks {missing or 'a valid order or choice'}; the page writes these "
                "lines: fix or delete that one"
            )
    return rows


def reviewer_order(pairs: list[Pair], reviewer: str) -> list[Pair]:
    """The reviewer's queue: the same shuffle on every visit (so a reload resumes in place), a
    different one per reviewer (so no suite always comes first or last in a long session)."""
    seed = int.from_bytes(hashlib.sha256(reviewer.strip().casefold().encode("utf-8")).digest()[:8], "big")
    queue = list(pairs)
    random.Random(seed).shuffle(queue)
    return queue


def still_to_review(pairs: list[Pair], reviews: list[dict], reviewer: str, other: str) -> list[Pair]:
    """The reviewer's queue (reviewer_order) without the pairs they have rated or skipped against
    `other`: the same name after a reload, or on another day, resumes where it stopped."""
    name = reviewer.strip().casefold()
    done = {
        (r.get("prompt_id"), r.get("replies_digest"))
        for r in reviews
        if str(r.get("reviewer", "")).strip().casefold() == name and other in (r.get("order") or {}).values()
    }
    return [p for p in reviewer_order(pairs, reviewer) if (p.prompt_id, p.digest) not in done]


def review_record(
    pair: Pair,
    reviewer: str,
    order: dict[str, str],
    choice: str,
    unsafe: dict[str, str],
) -> dict:
    """One reviews.jsonl line. order: {"A": model, "B": model}; unsafe: {"A"|"B": reason}."""
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {CHOICES}, not {choice!r}")
    if sorted(order) != ["A", "B"] or sorted(order.values()) != sorted(pair.replies):
        raise ValueError(f"order {order} does not name the pair's two models {sorted(pair.replies)}")
    preferred = {"A": order["A"], "B": order["B"], "tie": "tie", "skip": None}[choice]
    return {
        "reviewer": reviewer.strip(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prompt_id": pair.prompt_id,
        "suite": pair.suite,
        "order": dict(order),
        "choice": choice,
        "preferred": preferred,
        "unsafe": [
            {"reply": side, "model": order[side], "reason": reason.strip()[:MAX_REASON]}
            for side, reason in sorted(unsafe.items())
        ],
        "replies_digest": pair.digest,
    }


def append_review(report: Path, record: dict) -> None:
    """Appends one line and syncs it to disk before the page moves on."""
    with open(Path(report) / REVIEWS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
