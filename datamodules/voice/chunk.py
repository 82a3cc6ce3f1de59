"""Punctuated lectures into passages at sentence boundaries, and MinHash dedup of passages.

A passage remembers where its words sit in the cleaned transcript (`start`, `end` word indices):
the grounding filter compares every assistant turn with that span, not with the passage text itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH

from datamodules.voice.clean import normalized_words
from datamodules.voice.punctuate import split_sentences

SHINGLE_WORDS = 5
NUM_PERM = 128


@dataclass(frozen=True)
class Passage:
    lecture_id: str
    text: str  # punctuated, verbatim words of the speaker
    start: int  # word span in the cleaned transcript
    end: int

    @property
    def words(self) -> int:
        return self.end - self.start


def sentence_spans(sentences: list[str]) -> list[tuple[int, int]]:
    spans, position = [], 0
    for sentence in sentences:
        count = len(sentence.split())
        spans.append((position, position + count))
        position += count
    return spans


def split_long(sentences: list[str], max_words: int) -> list[str]:
    """A "sentence" longer than a passage (rule segmentation found no break) is cut into word runs."""
    out = []
    piece = max(1, max_words // 2)
    for sentence in sentences:
        words = sentence.split()
        if len(words) <= max_words:
            out.append(sentence)
        else:
            out.extend(" ".join(words[i : i + piece]) for i in range(0, len(words), piece))
    return out


def chunk(lecture_id: str, punctuated: str, min_words: int, max_words: int, counts: Counter) -> list[Passage]:
    """Greedy: sentences accumulate until a passage has `min_words`; never more than `max_words`.

    A short tail joins the previous passage when that stays within `max_words`, else it is dropped
    and counted (`short_tail`), as is a whole lecture shorter than `min_words` (`short_lecture`).
    """
    sentences = split_long(split_sentences(punctuated), max_words)
    spans = sentence_spans(sentences)
    groups: list[list[int]] = [[]]
    for index, (start, end) in enumerate(spans):
        group = groups[-1]
        size = spans[group[-1]][1] - spans[group[0]][0] if group else 0
        if group and (size >= min_words or size + end - start > max_words):
            groups.append([])
        groups[-1].append(index)
    groups = [g for g in groups if g]

    def size_of(group: list[int]) -> int:
        return spans[group[-1]][1] - spans[group[0]][0]

    if groups and size_of(groups[-1]) < min_words:
        tail = groups.pop()
        if groups and size_of(groups[-1]) + size_of(tail) <= max_words:
            groups[-1].extend(tail)
        else:
            counts["short_lecture" if not groups else "short_tail"] += 1
    return [
        Passage(lecture_id, " ".join(sentences[i] for i in g), spans[g[0]][0], spans[g[-1]][1])
        for g in groups
    ]


def minhash(text: str) -> MinHash:
    words = normalized_words(text)
    shingles = {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))}
    signature = MinHash(num_perm=NUM_PERM, seed=1)
    signature.update_batch([s.encode() for s in shingles])
    return signature


def drop_near_duplicates(passages: list[Passage], threshold: float, counts: Counter) -> list[Passage]:
    """Keep the first of each group of passages whose 5-word-shingle Jaccard exceeds `threshold`
    (MinHash LSH): a lecture re-uploaded or a story told in several talks trains once."""
    index = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    kept = []
    for number, passage in enumerate(passages):
        signature = minhash(passage.text)
        if index.query(signature):
            counts["near_duplicate"] += 1
            continue
        index.insert(str(number), signature)
        kept.append(passage)
    return kept
