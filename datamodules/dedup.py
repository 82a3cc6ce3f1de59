"""Remove exact and near-duplicate conversations across sources, before splitting.

Two conversations are duplicates when both their prompts (user turns) and their replies (assistant
turns) match: exactly after lower-casing and whitespace folding, or nearly, when the MinHash
estimate of the word 5-gram Jaccard similarity of the replies AND of the prompts reaches the
threshold. Comparing both sides keeps several therapists' answers to one long question, and one
stock reply to different questions; system turns are ignored, so the LLAMA3 set's re-rendering of
Amod's rows (same pair, added system prompt) is caught. The first copy seen is kept: sources in
registry order, records in file order. Removals are counted in each source's report as
`exact duplicate of <source>` / `near duplicate of <source>`.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from tqdm.auto import tqdm

from datamodules.conversation import Conversation
from datamodules.parallel import worker_pool
from datamodules.sources import ReadResult, SourceReport

SHINGLE_WORDS = 5
_MULTIPLIER = 1_000_003
_GOLDEN = 0x9E3779B97F4A7C15  # spreads consecutive word ids over 64 bits
_PUNCTUATION = str.maketrans({ch: " " for ch in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"})


def deduplicate(
    result: ReadResult,
    near_threshold: float | None = 0.85,
    num_perm: int = 64,
    progress: bool = True,
    processes: int = 1,
) -> ReadResult:
    """A new ReadResult without duplicates, each source's `kept` and `skipped` updated.

    near_threshold: None checks exact duplicates only. The near check shingles the whole text of
    each side: two conversations that share an opening and differ later are not duplicates.
    processes: the MinHash signatures are computed over this many processes, a block of
    conversations at a time; the words' ids and the comparisons stay in this process, in order, so
    the result is the same for any number.
    """
    template = MinHash(num_perm=num_perm)
    lsh = MinHashLSH(threshold=near_threshold, num_perm=num_perm) if near_threshold is not None else None
    seen: dict[bytes, str] = {}
    signatures: dict[int, tuple[LeanMinHash, LeanMinHash, str]] = {}
    # A word's id is the order of its first appearance in the run (every conversation's words, in
    # order: an exact duplicate brings no new word, so skipping it would give the same ids).
    vocabulary: defaultdict[str, int] = defaultdict(itertools.count().__next__)
    kept: list[Conversation] = []
    report = {
        name: replace(r, skipped=r.skipped.copy(), examples=list(r.examples), cleaned=r.cleaned.copy())
        for name, r in result.report.items()
    }
    bar = tqdm(total=len(result.conversations), desc="dedup", unit=" conv", disable=not progress, leave=False)
    # a worker per _PER_PROCESS conversations at most: a fork costs more than a few signatures
    workers = min(processes, -(-len(result.conversations) // _PER_PROCESS)) if lsh is not None else 1
    with worker_pool(workers, chunksize=64) as map_in_order:
        for block in range(0, len(result.conversations), _BLOCK):
            conversations = result.conversations[block : block + _BLOCK]
            sides = [_sides(conversation) for conversation in conversations]
            hashes: list[Any] = [None] * len(sides)
            if lsh is not None:
                jobs = [(_word_ids(p, vocabulary), _word_ids(r, vocabulary), num_perm) for p, r in sides]
                hashes = [
                    (_minhash(prompt, template), _minhash(reply, template))
                    for prompt, reply in map_in_order(_signature_values, jobs)
                ]
            for offset, (conversation, (prompt, reply), pair) in enumerate(zip(conversations, sides, hashes)):
                bar.update()
                folded = f"{_fold(prompt)}\x00{_fold(reply)}"
                key = hashlib.blake2b(folded.encode("utf-8", "surrogatepass")).digest()
                if key in seen:
                    _drop(report, conversation, f"exact duplicate of {seen[key]}")
                    continue
                if lsh is not None:
                    prompt_hash, reply_hash = pair
                    match = next(
                        (
                            signatures[other][2]
                            for other in lsh.query(reply_hash)
                            if signatures[other][0].jaccard(prompt_hash) >= near_threshold
                            and signatures[other][1].jaccard(reply_hash) >= near_threshold
                        ),
                        None,
                    )
                    if match is not None:
                        _drop(report, conversation, f"near duplicate of {match}")
                        continue
                    index = block + offset
                    lsh.insert(index, reply_hash)
                    signatures[index] = (prompt_hash, reply_hash, conversation.source)
                seen[key] = conversation.source
                kept.append(conversation)
    bar.close()
    return ReadResult(kept, report)


_BLOCK = 4096  # conversations whose word ids are held at once
_PER_PROCESS = 1024


def _drop(report: dict[str, SourceReport], conversation: Conversation, reason: str) -> None:
    source = report.setdefault(conversation.source, SourceReport())
    source.kept -= 1
    source.skipped[reason] += 1


def _sides(conversation: Conversation) -> tuple[str, str]:
    def side(role: str) -> str:
        return "\n".join(m["content"] for m in conversation.messages if m["role"] == role)

    return side("user"), side("assistant")


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def _word_ids(text: str, vocabulary: defaultdict[str, int]) -> np.ndarray:
    """The ids of the text's words (lower-cased, punctuation as spaces) in one vocabulary shared by
    the whole run: a dict lookup, where building and hashing a string per shingle, datasketch's
    default, cost ten times more."""
    words = text.lower().translate(_PUNCTUATION).split()
    return np.fromiter(map(vocabulary.__getitem__, words), dtype=np.uint64, count=len(words))


def _signature_values(job: tuple[np.ndarray, np.ndarray, int]) -> tuple[np.ndarray, np.ndarray]:
    """The MinHash values of both sides' word 5-grams (run in a worker process)."""
    prompt_ids, reply_ids, num_perm = job
    signature = _signature(num_perm)
    values = []
    for ids in (prompt_ids, reply_ids):
        signature.clear()
        signature.update_batch(_shingle_hashes(ids).tolist())
        values.append(signature.digest())
    return values[0], values[1]


@lru_cache(maxsize=4)
def _signature(num_perm: int) -> MinHash:
    """A process's one working MinHash (its permutations are every MinHash's of this num_perm and
    the default seed; the shingle hashes are already integers)."""
    return MinHash(num_perm=num_perm, hashfunc=int)


def _minhash(values: np.ndarray, template: MinHash) -> LeanMinHash:
    """The MinHash of a side, from its values (computed in a worker)."""
    return LeanMinHash(seed=template.seed, hashvalues=values, scheme=template.scheme)


def _shingle_hashes(ids: np.ndarray) -> np.ndarray:
    """One 32-bit hash per run of SHINGLE_WORDS consecutive word ids (one for a shorter text)."""
    words = (ids if len(ids) else np.zeros(1, dtype=np.uint64)) * np.uint64(_GOLDEN) + np.uint64(1)
    width = min(SHINGLE_WORDS, len(words))
    count = len(words) - width + 1
    combined = np.zeros(count, dtype=np.uint64)
    for offset in range(width):  # polynomial rolling combination, mod 2**64 by overflow
        combined = combined * np.uint64(_MULTIPLIER) + words[offset : offset + count]
    return (combined ^ (combined >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
