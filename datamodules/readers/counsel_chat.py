"""counsel-chat (nbertagnolli/counsel-chat): a CSV of therapists' answers, several per question.

The same columns in both layouts the registry accepts: the Hub's 20220401_counsel_chat.csv (HTML
answers) and the GitHub clone's data/20200325_counsel_chat.csv (an unnamed index column and a
`split` column more, answers de-HTML'd with sentences run together: "hang out with.Seriously",
which gets its space back). Each non-empty answer is one example (question title + text ->
answer), grouped by `questionID` and by the question text alone (Amod's Context is that text:
the same pair lands on one split in both sources). Option `answers: top` keeps only the most
upvoted answer of each question (ties: the first in the file); the others are counted as skipped.
Tags become line breaks or vanish, entities are unescaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datamodules.readers.base import Reader, Record, convert_rows, group_of, require
from datamodules.readers.files import Skip, iter_csv_rows

COLUMNS = {"questionID", "questionTitle", "questionText", "answerText"}
_BREAK = re.compile(r"<br\s*/?>|</(?:p|div|li|h\d)\s*>", re.IGNORECASE)
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_RUN_TOGETHER = re.compile(r"(?<=[a-z0-9)][.!?])(?=[A-Z][a-z])")


def html_to_text(text: str) -> str:
    """Answer HTML to plain text: block ends and <br> become newlines, other tags go, entities decode."""
    text = _TAG.sub("", _BREAK.sub("\n", text))
    text = html.unescape(text).replace("\xa0", " ")
    text = _RUN_TOGETHER.sub(" ", re.sub(r"[ \t]+\n", "\n", text))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def read_counsel_chat(path: Path, options: dict[str, Any]) -> Iterator[Record | Skip]:
    def convert(origin: str, row: dict[str, str]) -> Record:
        title = html_to_text(require(row, "questionTitle"))
        body = html_to_text(row.get("questionText") or "")
        question = f"{title}\n\n{body}" if body and body != title else title or body
        turns = (("user", question), ("assistant", html_to_text(require(row, "answerText"))))
        return Record(origin, turns, group_of(row, options), question=body or title)

    records = convert_rows(iter_csv_rows(path, COLUMNS), convert)
    if options["answers"] == "all":
        return records
    return _top_answers(records, path)


def _top_answers(records: Iterator[Record | Skip], path: Path) -> Iterator[Record | Skip]:
    """The most upvoted non-empty answer per question; file order is kept."""
    items = list(records)
    upvotes = _upvotes(path)
    best: dict[str, tuple[int, int]] = {}
    for index, item in enumerate(items):
        if isinstance(item, Record) and item.turns[1][1]:
            votes = upvotes.get(item.origin, 0)
            if item.group not in best or votes > best[item.group][0]:
                best[item.group] = (votes, index)
    chosen = {index for _, index in best.values()}
    for index, item in enumerate(items):
        if isinstance(item, Skip) or index in chosen or not item.turns[1][1]:
            yield item  # an empty answer is still counted as "empty reply" downstream
        else:
            yield Skip(item.origin, "not the most upvoted answer (answers: top)")


def _upvotes(path: Path) -> dict[str, int]:
    out = {}
    for item in iter_csv_rows(path, COLUMNS):
        if not isinstance(item, Skip):
            origin, row = item
            value = (row.get("upvotes") or "0").strip()
            out[origin] = int(float(value)) if re.fullmatch(r"\d+(\.0*)?", value) else 0
    return out


READERS = {
    "counsel_chat": Reader(
        read_counsel_chat,
        {"group_key": "questionID", "answers": "all"},
        {"answers": ("all", "top")},
        __doc__,
    )
}
