"""Replay: a later stage trains on a share of the earlier stages' training data as well.

Stage 2 alone trains only on records with reasoning, so nothing shows it when reasoning is NOT
wanted; stage 3 alone trains only on the voice data, so nothing protects what stages 1 and 2 taught.
Mixing `replay_share` of the train split's tokens from earlier stages (stage 2: stage-1
conversations without reasoning; stage 3: stages 1 and 2) addresses both, the usual remedy for
forgetting in sequential fine-tuning.

What may be replayed: the earlier stages' enabled registry sources, read, deduplicated and split
exactly as those stages split them (`split_by_group` with this stage's val/test fractions; the
stage YAMLs share them through stages/common.yaml), and then only their train split: an earlier
stage's validation and test (held-out) groups are never replayed into training. Which of them:
a stable-hash order of groups (the same on every run and machine), taken until the replayed
tokens reach `share` of the mixed train split's tokens, counted with the stage's own tokenizer and
template. Registry weights and caps of the earlier sources apply as they do in their own stage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from datamodules.conversation import Conversation
from datamodules.registry import SourceSpec
from datamodules.sources import stable_hash
from datamodules.splits import SplitSettings, read_and_split
from datamodules.template import TOO_LONG, TemplateOptions, encode_batch

ENCODE_BATCH = 256


@dataclass(frozen=True)
class ReplayPlan:
    """Where replay comes from: the earlier stages it reads and the share of train tokens it fills."""

    share: float
    stages: tuple[int, ...]

    @classmethod
    def for_stage(cls, stage: int, share: float, stages: list[int] | None) -> ReplayPlan:
        if not 0 <= share < 1:
            raise ValueError(f"replay_share must be in [0, 1), got {share}")
        chosen = tuple(sorted(set(stages))) if stages is not None else tuple(range(1, stage))
        later = [s for s in chosen if s >= stage]
        if later:
            raise ValueError(f"stage {stage} can replay only earlier stages, not {later} (replay_stages)")
        return cls(share if chosen else 0.0, chosen if share else ())

    def sources(self, registry: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        """The enabled registry sources of the replayed stages, in registry order."""
        return {n: s for n, s in registry.items() if s.enabled and s.stage in self.stages}


def replay_pool(specs: dict[str, SourceSpec], settings: SplitSettings) -> list[Conversation]:
    """The earlier stages' train split (weights applied), in stable-hash order: val and test never."""
    _, splits = read_and_split(specs, settings)
    train = splits["train"]
    # By group (an origin is only `file:line`, the same for every record of a JSON array)
    order = sorted(range(len(train)), key=lambda i: (stable_hash(f"replay:{train[i].group}"), i))
    return [train[i] for i in order]


def target_tokens(stage_tokens: int, share: float) -> int:
    """Replayed tokens R such that R / (stage_tokens + R) == share."""
    return round(share / (1 - share) * stage_tokens)


def choose_replay(
    pool: list[Conversation],
    stage_tokens: int,
    share: float,
    tokenizer: PreTrainedTokenizerBase,
    template: TemplateOptions,
) -> tuple[list[Conversation], dict[str, Any]]:
    """Conversations from `pool`, in order, while each brings the replayed total closer to the
    target; tokenized a batch at a time, so only about what is replayed is ever encoded."""
    target = target_tokens(stage_tokens, share)
    chosen: list[Conversation] = []
    total = 0
    tokens_by_source: Counter = Counter()
    for start in range(0, len(pool), ENCODE_BATCH):
        if total >= target:
            break
        batch = pool[start : start + ENCODE_BATCH]
        encoded_batch = encode_batch([list(c.messages) for c in batch], tokenizer, template)
        for conversation, examples in zip(batch, encoded_batch, strict=True):
            # A long conversation becomes several windows; all of them are replayed together.
            length = sum(len(e.input_ids) for e in examples if e.status != TOO_LONG)
            if not length or total >= target:
                continue
            if total + length - target <= target - total:  # adding it lands nearer the target
                chosen.append(conversation)
                total += length
                tokens_by_source[conversation.source] += length
    mixed = stage_tokens + total
    figures = {
        "share_setting": share,
        "share": round(total / mixed, 4) if mixed else 0.0,
        "tokens": total,
        "target_tokens": target,
        "conversations": len(chosen),
        "pool_conversations": len(pool),
        "tokens_per_source": dict(tokens_by_source),
    }
    return chosen, figures
