"""The stage-2 chain-of-thought files (moremilk): a JSON array of `{"id", "question", "answer",
"metadata": {"difficulty", "topic", "reasoning"}}`; the reasoning is its own string.

The user turn is the question; the assistant turn shows the reasoning, then the answer, in one
layout (option `layout`, set stage-wide by the data section's `cot_layout`):
- `think` (default): `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`
- `reasoning_response` (the plan's): `Reasoning: {reasoning}\\n\\nResponse: {answer}`
A record without `metadata.reasoning` teaches no reasoning: it is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datamodules.readers.base import BadRecord, Reader, Record, convert_rows, group_of, require
from datamodules.readers.files import Skip, iter_json_records

LAYOUTS = {
    "think": "<think>\n{reasoning}\n</think>\n\n{answer}",
    "reasoning_response": "Reasoning: {reasoning}\n\nResponse: {answer}",
}


def render(reasoning: str, answer: str, layout: str) -> str:
    return LAYOUTS[layout].format(reasoning=reasoning.strip(), answer=answer.strip())


def read_cot(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
    def convert(origin: str, row: Any) -> Record:
        question, answer = require(row, "question"), require(row, "answer")
        metadata = row.get("metadata")
        reasoning = metadata.get("reasoning") if isinstance(metadata, dict) else None
        if reasoning is None:
            raise BadRecord("missing field 'metadata.reasoning'")
        if not all(isinstance(v, str) for v in (question, answer, reasoning)):
            raise BadRecord("question, answer or reasoning is not text")
        if not answer.strip():
            raise BadRecord("empty reply")
        if not reasoning.strip():
            raise BadRecord("empty reasoning")
        turns = (("user", question), ("assistant", render(reasoning, answer, options["layout"])))
        return Record(origin, turns, group_of(row, options))

    return convert_rows(iter_json_records(path), convert)


READERS = {
    "cot": Reader(read_cot, {"group_key": "id", "layout": "think"}, {"layout": tuple(LAYOUTS)}, __doc__)
}
