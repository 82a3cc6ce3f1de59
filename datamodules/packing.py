"""Tokenized examples -> rows the LightningModule trains on (the batch contract in contracts.md).

Packed mode: rows of exactly max_seq_length filled with whole examples by best-fit decreasing;
position ids restart at 0 for each example, and the model is called with attention_mask=None and
use_cache=False, which is what makes transformers keep packed examples apart. The
unused tail of a row is padding: its own position run, labels -100, domain -1, token_mask False.

flash-attn is the exception: transformers reads restarting position ids as packing only for a batch
of ONE row, so a micro-batch of several packed rows would let examples attend to each other. The
collate therefore also returns the per-example boundaries of the micro-batch flattened into one row
(`cu_seq_lens`, `max_length`, computed here on the CPU so no step waits on the GPU for them), and
`flatten_rows` turns the batch into that one row, as transformers' DataCollatorWithFlattening does.
sdpa and eager keep the [rows, max_seq_length] layout (flattening would make their dense attention
rows times as wide).

Padding mode: one example per row, right-padded to the longest in its batch, with attention_mask.

Rows are assembled on access from the (memory-mapped) tokenized examples and a packing plan (lists
of example indices), so the cache stores each token once, as int32, not once per padded row.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from torch.utils.data import Dataset

from datamodules.template import IGNORE_INDEX

NO_DOMAIN = -1


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


# The batch keys that hold one value per token (everything flatten_rows reshapes).
TOKEN_KEYS = ("input_ids", "labels", "position_ids", "domain_ids", "token_mask")


def sequence_boundaries(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(cu_seq_lens int32 [S + 1], longest sequence) of position ids laid end to end: a sequence starts
    wherever the position is 0 (each packed example, and a row's padding tail, is one)."""
    flat = position_ids.flatten()
    starts = torch.nonzero(flat == 0).flatten()
    if starts.numel() == 0 or starts[0] != 0:
        raise ValueError("packed position ids must start at 0 at the beginning of every row")
    cu_seq_lens = torch.cat([starts, torch.tensor([flat.numel()])]).to(torch.int32)
    return cu_seq_lens, int(cu_seq_lens.diff().max())


def flatten_rows(batch: dict[str, Any]) -> dict[str, Any]:
    """The packed micro-batch as ONE row [1, rows * max_seq_length] plus the flash-attn varlen kwargs
    (cu_seq_lens_q/k, max_length_q/k) that keep every example to itself. Views, no copies."""
    flat = {key: batch[key].reshape(1, -1) for key in TOKEN_KEYS}
    lengths, longest = batch["cu_seq_lens"], batch["max_length"]
    return {
        **flat,
        "cu_seq_lens_q": lengths,
        "cu_seq_lens_k": lengths,
        "max_length_q": longest,
        "max_length_k": longest,
    }


def needs_flattening(attn_implementation: str | None) -> bool:
    """flash-attn variants (flash_attention_2/3/4, hub kernels) isolate packed examples only within one
    row; sdpa, eager and flex build a block mask from the position ids of every row."""
    return attn_implementation is not None and "flash" in attn_implementation


@dataclass(frozen=True)
class Collate:
    """Stack rows into a batch (packed: plus the flattened boundaries, see `flatten_rows`); in padding
    mode right-pad to the longest row and add attention_mask."""

    pad_token_id: int
    packed: bool = True

    def __call__(self, rows: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        if self.packed:
            batch: dict[str, Any] = {key: torch.stack([row[key] for row in rows]) for key in rows[0]}
            batch["cu_seq_lens"], batch["max_length"] = sequence_boundaries(batch["position_ids"])
            return batch
        fill = {
            "input_ids": self.pad_token_id,
            "labels": IGNORE_INDEX,
            "position_ids": 0,
            "domain_ids": NO_DOMAIN,
            "token_mask": False,
        }
        batch = {
            key: torch.nn.utils.rnn.pad_sequence(
                [row[key] for row in rows], batch_first=True, padding_value=value
            )
            for key, value in fill.items()
        }
        batch["attention_mask"] = batch["token_mask"].long()
        return batch
