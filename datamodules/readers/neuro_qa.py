"""neuro_qa_SFT_Trainer (wesley7137/neuro_qa_SFT_Trainer): train.json is a JSON array holding ONE
element whose `text` is a list of `{"role": "user"|"assistant", "content"}` turns: 4,448 unrelated
questions and answers one after another, not a conversation.

So each user turn and the assistant turn after it is its own example (origin `file:line pair N`),
grouped by its question text like every single question and answer. A turn that is not part of
such a pair (a question without an answer, an answer without a question) is skipped and counted.
Several elements are read the same way, one after another.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datamodules.readers.base import BadRecord, Reader, Record, turns_from_list
from datamodules.readers.files import Skip, iter_json_records


def read_neuro_qa(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
    for item in iter_json_records(path):
        if isinstance(item, Skip):
            yield item
            continue
        origin, row = item
        try:
            if not isinstance(row, dict):
                raise BadRecord(f"record is a {type(row).__name__}, not an object")
            turns = turns_from_list(row.get("text"), "role", "content")
        except BadRecord as err:
            yield Skip(origin, f"{err} under 'text'")
            continue
        yield from pairs(origin, turns)


def pairs(origin: str, turns: tuple[tuple[Any, Any], ...]) -> Iterator[Record | Skip]:
    """Each user turn followed by an assistant turn -> one Record; anything else a Skip."""
    index, number = 0, 0
    while index < len(turns):
        role = str(turns[index][0]).strip().lower()
        following = str(turns[index + 1][0]).strip().lower() if index + 1 < len(turns) else None
        if role == "user" and following == "assistant":
            number += 1
            yield Record(f"{origin} pair {number}", (turns[index], turns[index + 1]))
            index += 2
        else:
            yield Skip(f"{origin} turn {index + 1}", f"{role} turn outside a question-answer pair")
            index += 1


READERS = {"neuro_qa": Reader(read_neuro_qa, description=__doc__)}
