"""The one record shape every reader produces and everything downstream consumes."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Conversation:
    """A chat in the tokenizer's role names, with what training and splitting need to know.

    messages: ({"role": "system"|"user"|"assistant", "content": str}, ...), at least one assistant turn.
    domain:   one of the MoE expert domains; becomes the per-token domain id.
    source:   the registry name of the source it came from (per-source figures, dedup counts).
    group:    split key: one conversation, question or lecture never spans train and test.
    origin:   "file:line" (or "file:row"), for error messages and skipped-record examples.
    keys:     every grouping key of the record (its source id, its normalised question); the split
              joins conversations that share any key into one group (`splits.merge_groups`).
              Empty: `group` alone.
    """

    messages: tuple[dict[str, str], ...]
    domain: str
    source: str
    group: str
    origin: str
    keys: tuple[str, ...] = ()
