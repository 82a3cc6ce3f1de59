"""Generic schemas for the user's own files (JSON array, JSON Lines, CSV or parquet), and Amod's.

Every reader accepts `group_key` (the field that keeps one conversation on one split) and the
chat-list readers accept `domain_field` (a per-record domain label that replaces the entry's).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datamodules.readers.base import (
    Reader,
    Record,
    convert_rows,
    domain_of,
    group_of,
    require,
    turns_from_list,
)
from datamodules.readers.files import Skip, iter_rows


def read_messages(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
    """OpenAI chat: `{"messages": [{"role", "content"}, ...]}` (PsyDTCorpus, the stage-3 voice file)."""

    def convert(origin: str, row: Any) -> Record:
        turns = turns_from_list(require(row, "messages"), "role", "content")
        return Record(origin, turns, group_of(row, options), domain_of(row, options))

    return convert_rows(iter_rows(path, {"messages"}), convert)


def read_sharegpt(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
    """ShareGPT: `{"conversations": [{"from": "human"|"gpt"|"system", "value"}, ...]}`."""

    def convert(origin: str, row: Any) -> Record:
        turns = turns_from_list(require(row, "conversations"), "from", "value")
        return Record(origin, turns, group_of(row, options), domain_of(row, options))

    return convert_rows(iter_rows(path, {"conversations"}), convert)


def read_alpaca(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
    """Alpaca: `{"instruction", "input", "output"}`, one exchange (Psych8k).

    Option `instruction`: `user` (default) puts the instruction, a blank line and the input in the
    user turn; `system` makes the instruction a system turn and the input the user turn (right when
    the instruction is one fixed prompt, as in Psych8k, and the input is what the client says).
    """

    def convert(origin: str, row: Any) -> Record:
        instruction, output = str(require(row, "instruction")).strip(), require(row, "output")
        given = str(row.get("input") or "").strip()
        if options["instruction"] == "system" and given:
            turns = (("system", instruction), ("user", given), ("assistant", output))
        else:
            turns = (("user", f"{instruction}\n\n{given}" if given else instruction), ("assistant", output))
        return Record(origin, turns, group_of(row, options))

    return convert_rows(iter_rows(path, {"instruction", "output"}), convert)


def _pair_reader(question: str, answer: str, doc: str):
    def read(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
        def convert(origin: str, row: Any) -> Record:
            turns = (("user", require(row, question)), ("assistant", require(row, answer)))
            return Record(origin, turns, group_of(row, options))

        return convert_rows(iter_rows(path, {question, answer}), convert)

    read.__doc__ = doc
    return read


read_context_response = _pair_reader(
    "Context", "Response", 'Amod\'s counselling pairs: `{"Context", "Response"}` (its .json is JSON Lines).'
)
read_prompt_response = _pair_reader("prompt", "response", '`{"prompt", "response"}` pairs.')
read_question_answer = _pair_reader("question", "answer", '`{"question", "answer"}` pairs.')

GROUP = {"group_key": None}
READERS = {
    "messages": Reader(read_messages, {**GROUP, "domain_field": None}, description=read_messages.__doc__),
    "sharegpt": Reader(read_sharegpt, {**GROUP, "domain_field": None}, description=read_sharegpt.__doc__),
    "alpaca": Reader(
        read_alpaca,
        {**GROUP, "instruction": "user"},
        {"instruction": ("user", "system")},
        read_alpaca.__doc__,
    ),
    "context_response": Reader(read_context_response, dict(GROUP), description=read_context_response.__doc__),
    "prompt_response": Reader(read_prompt_response, dict(GROUP), description=read_prompt_response.__doc__),
    "question_answer": Reader(read_question_answer, dict(GROUP), description=read_question_answer.__doc__),
}
