"""The one cleaning step every record passes through, whatever its source (called by
`sources.to_conversation`, never by a reader), and the number check the readers share.

Real files carry text that would silently corrupt training:
- line ends: CRLF and lone CR become LF; a stray BOM (U+FEFF) inside text is removed;
- chat-control strings: the active tokenizer's special tokens (`<|im_end|>`, `</s>`, ...) written
  as plain text in scraped data would be encoded as real control tokens and trained on; every
  occurrence is removed and the conversation counted (`chat-control string removed`);
- a conversation that opens with the assistant (the therapist speaks first) has no question to
  answer and cannot be rendered by a chat template: leading assistant turns are dropped and counted
  (`leading assistant turn dropped`); the conversation is kept from its first user turn;
- non-finite numbers (NaN, inf) pass every comparison the wrong way (`NaN < 0.75` is False), so
  `finite_number` refuses them.
Counts land in each source's report under `cleaned`, beside `skipped`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

CONTROL_REMOVED = "chat-control string removed"
LEADING_ASSISTANT = "leading assistant turn dropped"
_LINE_ENDS = re.compile(r"\r\n?")


@dataclass(frozen=True)
class Cleaned:
    """Messages after cleaning and what was done to them (one event per kind and conversation,
    except leading assistant turns, counted one per turn)."""

    messages: list[dict[str, str]]
    events: list[str]


def control_pattern(control_strings: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any of the strings (longest first, so `</s>` never hides `</s>x`)."""
    strings = sorted({s for s in control_strings if s}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, strings))) if strings else None


def clean_text(text: str, control: re.Pattern[str] | None) -> tuple[str, bool]:
    """Text with LF line ends, no BOM characters and no control strings; True when one was removed."""
    text = _LINE_ENDS.sub("\n", text).replace("\ufeff", "")
    removed = False
    if control is not None:
        text, count = control.subn("", text)
        removed = count > 0
    return text.strip(), removed


def clean_messages(messages: Sequence[dict[str, str]], control: re.Pattern[str] | None) -> Cleaned:
    """Clean every turn's text and drop the assistant turns before the first user turn.

    Empty turns are left for the caller to judge (an empty reply is a skipped record)."""
    out: list[dict[str, str]] = []
    events: list[str] = []
    removed_any = False
    for message in messages:
        content, removed = clean_text(message["content"], control)
        removed_any |= removed
        out.append({"role": message["role"], "content": content})
    first_user = next((i for i, m in enumerate(out) if m["role"] == "user"), len(out))
    leading = [i for i in range(first_user) if out[i]["role"] == "assistant"]
    events += [LEADING_ASSISTANT] * len(leading)
    out = [m for i, m in enumerate(out) if i not in set(leading)]
    if removed_any:
        events.append(CONTROL_REMOVED)
    return Cleaned(out, events)


def finite_number(value: Any) -> float:
    """A real, finite number from a JSON number or numeric text; ValueError says what is wrong."""
    if isinstance(value, bool) or value is None:
        raise ValueError("is missing" if value is None else "is not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError("is not a number") from None
    if not isinstance(value, (int, float)):
        raise ValueError("is not a number")
    if not math.isfinite(value):
        raise ValueError(f"is not a finite number ({value})")
    return float(value)
