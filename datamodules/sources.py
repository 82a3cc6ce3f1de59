"""Sources to Conversations: check every path before anything heavy, read, validate, count skips.

`check_sources` is cheap (paths, schemas, options, domains) and raises `SourceError` naming the
source, the resolved path and what was expected. `read_sources` runs each schema's reader, turns its
records into `Conversation`s with the tokenizer's role names, and counts every record it leaves out
by reason with the first few `file:line` examples. A source whose records all fail is an error.
Conversation text never reaches a log: reports hold origins and reasons only.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from datamodules.cleaning import clean_messages, control_pattern
from datamodules.conversation import Conversation
from datamodules.parallel import ordered_map
from datamodules.readers import READERS
from datamodules.readers.base import Record
from datamodules.readers.cot import LAYOUTS as COT_LAYOUTS
from datamodules.readers.files import FileFormatError, Skip
from datamodules.registry import SourceSpec

# Source role names -> the tokenizer's. One table for every schema; anything else is skipped.
ROLE_NAMES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "client": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "therapist": "assistant",
}
_SURROGATE = re.compile("[\ud800-\udfff]")


class SourceError(Exception):
    """A source cannot be used as configured: the message names source, path and the fix."""


@dataclass
class SourceReport:
    """Per-source figures: records read, conversations kept, records skipped by reason, and what
    the cleaning step changed in kept records (`cleaning.py`), by kind."""

    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    cleaned: Counter = field(default_factory=Counter)

    def skip(self, origin: str, reason: str, max_examples: int) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < max_examples:
            self.examples.append(f"{origin}: {reason}")


@dataclass
class ReadResult:
    conversations: list[Conversation]
    report: dict[str, SourceReport]


@dataclass(frozen=True)
class ReadOptions:
    """Stage-wide reading settings (the stage YAML's `data:` section passes them on).

    cot_layout:     how a CoT record's assistant turn shows reasoning then answer: `think`
                    (`<think>\\nreasoning\\n</think>\\n\\nanswer`) or `reasoning_response` (the plan's
                    `Reasoning: ...` / `Response: ...`). A source's own `options: {layout: ...}` wins.
    expert_domains: the MoE's domain names; a label outside them is an error (entry) or a skip (record).
    max_examples:   skipped-record examples kept per source.
    progress:       tqdm bars while reading.
    control_strings: the active tokenizer's special-token strings (template.control_strings),
                    removed wherever a record's text spells one out.
    """

    cot_layout: str = "think"
    expert_domains: tuple[str, ...] | None = None
    max_examples: int = 5
    progress: bool = True
    control_strings: tuple[str, ...] = ()


def check_sources(
    specs: dict[str, SourceSpec],
    data_root: str | Path,
    expert_domains: tuple[str, ...] | list[str] | None = None,
) -> dict[str, list[Path]]:
    """Fail fast on anything that would stop a read, naming every bad source at once; return each
    source's files, in read order (their sizes and times make a cache key)."""
    files: dict[str, list[Path]] = {}
    problems: list[str] = []
    for name, spec in specs.items():
        try:
            _check_spec(spec, data_root, expert_domains)
            files[name] = _source_files(spec, data_root)
        except SourceError as err:
            problems.append(str(err))
    if problems:
        raise SourceError("\n".join(problems))
    return files


def _check_spec(
    spec: SourceSpec, data_root: str | Path, expert_domains: tuple[str, ...] | list[str] | None
) -> None:
    name = spec.name
    reader = READERS.get(spec.schema)
    if reader is None:
        raise SourceError(
            f"source {name!r}: unknown schema {spec.schema!r} (path {spec.resolved_path(data_root)}); "
            f"expected one of {sorted(READERS)}"
        )
    unknown = set(spec.options) - set(reader.options)
    if unknown:
        raise SourceError(
            f"source {name!r}: option(s) {sorted(unknown)} mean nothing to schema {spec.schema!r}; "
            f"it accepts {sorted(reader.options)}"
        )
    for option, allowed in reader.choices.items():
        value = spec.options.get(option, reader.options[option])
        if value not in allowed:
            raise SourceError(f"source {name!r}: option {option}={value!r}; expected one of {list(allowed)}")
    if expert_domains is not None and spec.domain not in expert_domains:
        raise SourceError(
            f"source {name!r}: domain {spec.domain!r} is not an expert domain; expected one of "
            f"{list(expert_domains)} (change the entry's `domain`)"
        )


def _source_files(spec: SourceSpec, data_root: str | Path) -> list[Path]:
    path = spec.resolved_path(data_root)
    fix = (
        "set data_root (--data.data_root DIR), override this entry's path/root under the stage YAML's "
        f"`data: sources: {spec.name}:`, or set `enabled: false` there"
    )
    if not path.exists():
        wanted = f"a folder holding {_describe(spec.files)}" if spec.files else f"a {spec.schema} file"
        raise SourceError(f"source {spec.name!r}: {path} does not exist; expected {wanted}; {fix}")
    if path.is_file():
        if spec.files:
            raise SourceError(
                f"source {spec.name!r}: {path} is a file but the entry names files {_describe(spec.files)} "
                "inside a folder; point `path` at the folder or drop `files`"
            )
        return [path]
    if not spec.files:
        raise SourceError(
            f"source {spec.name!r}: {path} is a folder; the entry must name the files it reads "
            "(`files: [glob, ...]`) so that stray files are never read"
        )
    found: list[Path] = []
    for item in spec.files:
        alternatives = (item,) if isinstance(item, str) else item
        matches = next((hits for hits in (_glob(path, p) for p in alternatives) if hits), [])
        if not matches:
            present = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())[:10]
            wanted = _describe((item,))
            raise SourceError(
                f"source {spec.name!r}: no file in {path} matches {wanted}; the folder holds {present}; {fix}"
            )
        found.extend(m for m in matches if m not in found)
    return found


def _describe(files: tuple[str | tuple[str, ...], ...]) -> str:
    return ", ".join(repr(f) if isinstance(f, str) else "one of " + " or ".join(map(repr, f)) for f in files)


def _glob(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def read_sources(
    specs: dict[str, SourceSpec],
    data_root: str | Path,
    options: ReadOptions | None = None,
    processes: int = 1,
) -> ReadResult:
    """Read every given source (callers pass `stage_sources(...)`), in order; the sources are read
    side by side over up to `processes` processes, and the result is the same for any number."""
    options = options or ReadOptions()
    if options.cot_layout not in COT_LAYOUTS:
        raise SourceError(f"cot_layout {options.cot_layout!r}: expected one of {sorted(COT_LAYOUTS)}")
    files = check_sources(specs, data_root, options.expert_domains)
    jobs = [(spec, files[name], options) for name, spec in specs.items()]
    conversations: list[Conversation] = []
    report: dict[str, SourceReport] = {}
    for name, (kept, report[name]) in zip(specs, ordered_map(_read_source, jobs, processes)):
        conversations.extend(kept)
    return ReadResult(conversations, report)


def _read_source(job: tuple[SourceSpec, list[Path], ReadOptions]) -> tuple[list[Conversation], SourceReport]:
    spec, files, options = job
    reader = READERS[spec.schema]
    stage_settings = {"layout": options.cot_layout}
    reader_options = {
        **reader.options,
        **{k: v for k, v in stage_settings.items() if k in reader.options},
        **spec.options,
    }
    report = SourceReport()
    kept: list[Conversation] = []
    control = control_pattern(options.control_strings)
    bar = tqdm(desc=f"read {spec.name}", unit=" rec", disable=not options.progress, leave=False)
    for path in files:
        try:
            for item in reader.read(path, reader_options):
                report.read += 1
                bar.update()
                if isinstance(item, Skip):
                    report.skip(item.origin, item.reason, options.max_examples)
                    continue
                result, events = to_conversation(item, spec, options.expert_domains, control)
                if isinstance(result, Skip):
                    report.skip(result.origin, result.reason, options.max_examples)
                else:
                    report.cleaned.update(events)
                    kept.append(result)
        except FileFormatError as err:
            raise SourceError(f"source {spec.name!r}: {err}") from err
    bar.close()
    if not kept:
        reasons = (
            ", ".join(f"{r} x{n}" for r, n in report.skipped.most_common(3)) or "the files hold no records"
        )
        raise SourceError(
            f"source {spec.name!r} ({', '.join(map(str, files))}): none of its {report.read} records is "
            f"usable as schema {spec.schema!r} ({reasons}); first: {report.examples[:3]}. "
            "Fix the schema or options in the registry, or disable the source"
        )
    if spec.cap is not None and len(kept) > spec.cap:
        # A stable choice (hash of group, then origin): whole groups tend to stay or go together,
        # and the same files give the same selection on every run.
        ranked = sorted(range(len(kept)), key=lambda i: (stable_hash(kept[i].group), kept[i].origin))
        chosen = set(ranked[: spec.cap])
        report.skipped[f"over cap {spec.cap}"] += len(kept) - spec.cap
        kept = [c for i, c in enumerate(kept) if i in chosen]
    report.kept = len(kept)
    return kept, report


def stable_hash(text: str) -> int:
    """A hash that is the same in every process and on every machine (Python's `hash` is not)."""
    return int.from_bytes(
        hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big"
    )


def to_conversation(
    record: Record,
    spec: SourceSpec,
    expert_domains: tuple[str, ...] | None = None,
    control: re.Pattern[str] | None = None,
) -> tuple[Conversation | Skip, list[str]]:
    """Map roles, check every turn, clean (cleaning.py), and give the conversation its domain and
    grouping keys; also returns the cleaning events (the reader's notes included)."""
    messages: list[dict[str, str]] = []
    for role, content in record.turns:
        name = ROLE_NAMES.get(role.strip().lower()) if isinstance(role, str) else None
        if name is None:
            return Skip(record.origin, f"unknown role {str(role)[:30]!r}"), []
        if isinstance(content, float) and math.isnan(content):
            return Skip(record.origin, f"{name} content is NaN (a missing value)"), []
        if not isinstance(content, str):
            return Skip(record.origin, f"{name} content is not text"), []
        if _SURROGATE.search(content):
            return Skip(record.origin, "invalid UTF-8"), []  # an escaped lone surrogate cannot be tokenized
        messages.append({"role": name, "content": content})
    cleaned = clean_messages(messages, control)
    messages = []
    for message in cleaned.messages:
        if not message["content"]:
            if message["role"] == "system":
                continue
            reason = "empty reply" if message["role"] == "assistant" else "empty user turn"
            return Skip(record.origin, reason), []
        messages.append(message)
    while messages and messages[-1]["role"] != "assistant":
        messages.pop()  # a trailing question has no reply to learn from
    if not messages:
        return Skip(record.origin, "no assistant reply"), []
    domain = record.domain or spec.domain
    if expert_domains is not None and domain not in expert_domains:
        return Skip(record.origin, f"unknown domain {domain[:30]!r}"), []
    keys = group_keys(messages, spec.name, record)
    return Conversation(tuple(messages), domain, spec.name, keys[0], record.origin, keys), [
        *record.notes,
        *cleaned.events,
    ]


def group_keys(messages: list[dict[str, str]], source: str, record: Record) -> tuple[str, ...]:
    """The keys that must keep the record on one split with others that share any of them:
    the source's own id (`source:id`), and, for a single question and its answer, the normalised
    question text, the same key in every source (an Amod row and its counsel-chat twin, one
    question answered by several therapists). A longer conversation without an id: its whole text
    (openers such as "hi" are too common to group by)."""
    keys = [f"{source}:{record.group}"] if record.group is not None else []
    users = [m["content"] for m in messages if m["role"] == "user"]
    if len(users) == 1:
        keys.append(text_key(record.question or users[0]))
    elif not keys:
        keys.append(text_key("\x00".join(m["content"] for m in messages if m["role"] != "system")))
    return tuple(keys)


def text_key(text: str) -> str:
    """A grouping key from text alone, never from its source: letter case, punctuation, markup
    and spacing do not count ("How do I sleep?" and "how do i sleep" are one question)."""
    words = " ".join(re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold()))
    return "text:" + hashlib.blake2b(words.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
