"""therapist-sft-format (wesley7137/therapist-sft-format): a CSV whose `text` column is a whole
conversation on one line, `human: ... gpt: ... human: ...` (any letter case), opening with `human:`.

A speaker marker counts only at a turn boundary, so words in a turn never split it:
- `gpt:` after whitespace (the word never occurs in a reply or a question);
- `human:` at the start, after a line break, or after the end of a sentence (`.`, `!`, `?`, `…`,
  a closing quote or bracket) and a space: "I'm only human: I make mistakes" stays one turn.
A marker left inside a turn is kept as text and counted (`speaker marker inside a turn kept as
text`); two turns of one speaker in a row become one. Text before the first marker, or a text with
no marker, is a skipped record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datamodules.readers.base import BadRecord, Reader, Record, convert_rows, group_of, require
from datamodules.readers.files import Skip, iter_csv_rows

_SENTENCE_END = r"[.!?…\"'”’)\]]"
# The leading lookahead holds for every alternative (a marker opens with a space, a tab, h or g): it
# changes no match, and rejects most positions before the lookbehinds run (2.4x faster).
MARKER = re.compile(
    rf"(?=[ \thg])(?:(?:^|(?<=\n)|(?<={_SENTENCE_END}\s))[ \t]*(human)|(?<=\s)(gpt)|^(gpt))[ \t]*:",
    re.IGNORECASE,
)
INLINE = re.compile(r"(?<=\s)human\s*:", re.IGNORECASE)
INLINE_NOTE = "speaker marker inside a turn kept as text"


def split_speakers(text: str) -> tuple[tuple[tuple[str, str], ...], int]:
    """'human: hi gpt: hello' -> ((('human', 'hi'), ('gpt', 'hello')), 0): roles lower-cased,
    one speaker's consecutive turns joined; also how many markers stayed inside turns."""
    turns: list[tuple[str, str]] = []
    matches = list(MARKER.finditer(text))
    if not matches:
        raise BadRecord("no human:/gpt: speaker markers")
    if text[: matches[0].start()].strip():
        raise BadRecord("text before the first human:/gpt: marker")
    for match, following in zip(matches, [*matches[1:], None]):
        role = next(group for group in match.groups() if group).lower()
        content = text[match.end() : following.start() if following else len(text)].strip()
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]}\n{content}")
        else:
            turns.append((role, content))
    inline = sum(len(INLINE.findall(content)) for _, content in turns)
    return tuple(turns), inline


def read_therapist_sft(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
    def convert(origin: str, row: dict[str, str]) -> Record:
        turns, inline = split_speakers(require(row, "text"))
        return Record(origin, turns, group_of(row, options), notes=(INLINE_NOTE,) * inline)

    return convert_rows(iter_csv_rows(path, {"text"}), convert)


READERS = {"therapist_sft": Reader(read_therapist_sft, {"group_key": None}, description=__doc__)}
