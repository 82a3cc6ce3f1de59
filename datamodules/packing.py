"""Tokenized examples -> rows that follow the batch contract (moe/batch.py: keys, dtypes, shapes).

Packed mode: rows of exactly max_seq_length filled with whole examples by best-fit decreasing;
position ids restart at 0 for each example. The unused tail of a row is padding: its own position
run, labels IGNORE_INDEX, domain NO_DOMAIN, token_mask False. Padding mode: one example per row,
unpadded here (the collate pads the batch).

Rows are assembled on access from the (memory-mapped) tokenized examples and a packing plan (lists
of example indices), so the cache stores each token once, as int32, not once per padded row.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
import datasets
import torch
from torch.utils.data import Dataset

from moe.batch import IGNORE_INDEX, NO_DOMAIN


def plan_rows(lengths: Sequence[int], max_seq_length: int) -> list[list[int]]:
    """Best-fit decreasing bin packing: example indices per row, every row's total <= max_seq_length.

    Free space is kept per distinct capacity (at most max_seq_length of them), so each example costs
    a bisect over capacities, not a scan over rows. Deterministic for the same lengths.
    """
    rows: list[list[int]] = []
    capacities: list[int] = []  # sorted distinct free capacities of open rows
    rows_with: dict[int, list[int]] = {}  # capacity -> open rows with exactly that much free
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        length = lengths[index]
        if not 0 < length <= max_seq_length:
            raise ValueError(f"example {index} has {length} tokens; packing needs 1..{max_seq_length}")
        k = bisect.bisect_left(capacities, length)
        if k == len(capacities):
            row, free = len(rows), max_seq_length
            rows.append([])
        else:
            free = capacities[k]
            row = rows_with[free].pop()
            if not rows_with[free]:
                del rows_with[free]
                capacities.pop(k)
        rows[row].append(index)
        free -= length
        if free:
            if free not in rows_with:
                bisect.insort(capacities, free)
                rows_with[free] = []
            rows_with[free].append(row)
    return rows


def packing_efficiency(lengths: Sequence[int], rows: Sequence[Sequence[int]], max_seq_length: int) -> float:
    """Share of row positions holding real tokens."""
    return sum(lengths) / (len(rows) * max_seq_length) if rows else 0.0


class RowDataset(Dataset):
    """Rows from tokenized examples (columns input_ids, labels, domain_id) and a plan.

    Packed: each item is a full row of `max_seq_length` (several examples + tail padding).
    Padding mode (`packed=False`): each plan entry is one example, returned unpadded.
    """

    def __init__(
        self,
        examples: datasets.Dataset,
        plan: Sequence[Sequence[int]],
        max_seq_length: int,
        pad_token_id: int,
        packed: bool = True,
    ) -> None:
        self.examples = examples
        self.plan = plan
        self.max_seq_length = max_seq_length
        self.pad_token_id = pad_token_id
        self.packed = packed

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, row: int) -> dict[str, torch.Tensor]:
        parts = self.examples[list(self.plan[row])]
        input_ids, labels, positions, domains = [], [], [], []
        for ids, example_labels, domain in zip(parts["input_ids"], parts["labels"], parts["domain_id"]):
            input_ids += ids
            labels += example_labels
            positions += range(len(ids))
            domains += [domain] * len(ids)
        real = len(input_ids)
        tail = self.max_seq_length - real if self.packed else 0
        return {
            "input_ids": torch.tensor(input_ids + [self.pad_token_id] * tail, dtype=torch.long),
            "labels": torch.tensor(labels + [IGNORE_INDEX] * tail, dtype=torch.long),
            # The tail is its own position run, so varlen attention (flash-attn) sees it as a sequence.
            "position_ids": torch.tensor(positions + list(range(tail)), dtype=torch.long),
            "domain_ids": torch.tensor(domains + [NO_DOMAIN] * tail, dtype=torch.long),
            "token_mask": torch.tensor([True] * real + [False] * tail, dtype=torch.bool),
        }
