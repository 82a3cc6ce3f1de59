"""The batch contract: what a data loader hands the model, the one definition both sides import.

Every batch is a dict of tensors (B rows, T tokens per row):

| key | dtype | shape | meaning |
|---|---|---|---|
| `input_ids` | int64 | [B, T] | token ids; padding is the tokenizer's pad id |
| `labels` | int64 | [B, T] | the token's own id where it is trained, `IGNORE_INDEX` elsewhere (prompts, padding); the model shifts them (moe.losses.next_token_targets) |
| `position_ids` | int64 | [B, T] | restart at 0 at every example; a packed row's padding tail is its own run from 0 |
| `domain_ids` | int64 | [B, T] | the example's index in the MoE config's `expert_domains`, `NO_DOMAIN` for padding and for examples without a domain |
| `token_mask` | bool | [B, T] | True on real tokens, False on padding |
| `cu_seq_lens` | int32 | [S + 1] | packed only: start offsets of the S sequences of the batch laid end to end, then B*T |
| `max_length` | int | - | packed only: the longest of those sequences |
| `attention_mask` | int64 | [B, T] | padding mode only: `token_mask` as 0/1 |

Packed mode: rows of exactly T = max_seq_length, each holding whole examples; the model is called
with attention_mask=None and use_cache=False, which is what makes transformers keep packed examples
apart through the restarting position ids. flash-attn is the exception: transformers reads
restarting position ids as packing only for a batch of ONE row, so `flatten_rows` turns the batch
into that one row with the per-example boundaries (`cu_seq_lens`, `max_length`, computed by the
collate on the CPU so no step waits on the GPU for them), as transformers'
DataCollatorWithFlattening does. sdpa and eager keep the [B, T] layout (flattening would make their
dense attention B times as wide).

Padding mode: one example per row, right-padded to the longest in its batch, with attention_mask.

The model package owns this contract (it is what the forward consumes); the data package builds
rows that follow it and imports it from here, so the dependency runs one way: datamodules -> moe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

IGNORE_INDEX = -100  # labels: not trained (the value torch's cross_entropy ignores by default)
NO_DOMAIN = -1  # domain_ids: padding, or an example without a domain label

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
