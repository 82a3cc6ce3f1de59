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
from dataclasses import replace

import numpy as np
from datasketch import MinHash, MinHashLSH
from tqdm.auto import tqdm

from datamodules.conversation import Conversation
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
) -> ReadResult:
    """A new ReadResult without duplicates, each source's `kept` and `skipped` updated.

    near_threshold: None checks exact duplicates only. The near check shingles the whole text of
    each side: two conversations that share an opening and differ later are not duplicates.
    """
    template = MinHash(num_perm=num_perm)
    lsh = MinHashLSH(threshold=near_threshold, num_perm=num_perm) if near_threshold is not None else None
    seen: dict[bytes, str] = {}
    signatures: dict[int, tuple[MinHash, MinHash, str]] = {}
    vocabulary: dict[str, int] = {}
    kept: list[Conversation] = []
    report = {
        name: replace(r, skipped=r.skipped.copy(), examples=list(r.examples), cleaned=r.cleaned.copy())
        for name, r in result.report.items()
    }
    for index, conversation in enumerate(
        tqdm(result.conversations, desc="dedup", unit=" conv", disable=not progress, leave=False)
    ):
        prompt, reply = _sides(conversation)
        key = hashlib.blake2b(f"{_fold(prompt)}\x00{_fold(reply)}".encode("utf-8", "surrogatepass")).digest()
        if key in seen:
            _drop(report, conversation, f"exact duplicate of {seen[key]}")
            continue
        if lsh is not None:
            prompt_hash = _minhash(prompt, template, vocabulary)
            reply_hash = _minhash(reply, template, vocabulary)
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
            lsh.insert(index, reply_hash)
            signatures[index] = (prompt_hash, reply_hash, conversation.source)
        seen[key] = conversation.source
        kept.append(conversation)
    return ReadResult(kept, report)


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


def _minhash(text: str, template: MinHash, vocabulary: dict[str, int]) -> MinHash:
    """MinHash of the word 5-grams of the whole text.

    Words become ids from one vocabulary shared by the whole run (a dict lookup; the same input
    gives the same ids every run) and 5-grams are combined in numpy: building and hashing a string
    per shingle, datasketch's default, cost ten times more.
    """
    words = text.lower().translate(_PUNCTUATION).split()
    ids = [vocabulary.setdefault(word, len(vocabulary)) for word in words]
    signature = MinHash(
        num_perm=template.num_perm, permutations=template.permutations, scheme=template.scheme, hashfunc=int
    )
    signature.update_batch(_shingle_hashes(ids).tolist())
    return signature


def _shingle_hashes(ids: list[int]) -> np.ndarray:
    """One 32-bit hash per run of SHINGLE_WORDS consecutive word ids (one for a shorter text)."""
    words = np.array(ids or [0], dtype=np.uint64) * np.uint64(_GOLDEN) + np.uint64(1)
    width = min(SHINGLE_WORDS, len(words))
    count = len(words) - width + 1
    combined = np.zeros(count, dtype=np.uint64)
    for offset in range(width):  # polynomial rolling combination, mod 2**64 by overflow
        combined = combined * np.uint64(_MULTIPLIER) + words[offset : offset + count]
    return (combined ^ (combined >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
