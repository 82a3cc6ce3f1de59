"""Read a folder of lecture transcripts (.txt, .vtt, .srt, YouTube .json export), recursively.

Each file becomes one `Transcript` whose id is the file stem (a trailing language code such as
`.en` from yt-dlp is dropped, so `abc.en.vtt` and `abc.info.json` meet as lecture `abc`). A file
that is empty, binary, not UTF-8, malformed or holds no speech is skipped; the build goes on. Every
file under the folder is listed in the report with what happened to it (read, skipped and why, or
ignored as not a transcript format), and each skipped one is logged with its reason.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pysrt
import webvtt
import webvtt.errors

from datamodules.voice.clean import clean_text, merge_cues, strip_markup

# When one lecture exists in several formats, the first of these wins (fewest caption artefacts).
FORMATS = (".json", ".srt", ".vtt", ".txt")
LANGUAGE_SUFFIX = re.compile(r"\.[a-z]{2,3}(?:-[A-Za-z0-9]+)*$")
INFO_SUFFIX = ".info.json"
TITLE_LINE = re.compile(r"^\s*title\s*:\s*(.+)$", re.IGNORECASE)
TIMESTAMP_LINE = re.compile(r"^\s*\(?\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?\)?\s*(?:-->.*)?$")
# Latin-1/cp1252 text decoded as UTF-8 twice shows these pairs; real English transcripts do not.
MOJIBAKE = re.compile(r"Ã[\x80-\xbf]|â€|Â[\x80-\xbf ]")
MAX_EXAMPLES = 20

log = logging.getLogger(__name__)


class TranscriptError(ValueError):
    """A file that cannot be read as a transcript; the message says why and how to fix it."""


@dataclass(frozen=True)
class Transcript:
    lecture_id: str
    title: str | None
    path: Path
    text: str  # cleaned spoken words; punctuation only where the source had it


@dataclass
class IngestReport:
    files: int = 0
    read: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    # every file found: {"path", "status": read|skipped|ignored, "reason", "detail"}
    listing: list[dict[str, str]] = field(default_factory=list)

    def skip(self, path: Path, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{path}: {detail}")
        self.listing.append({"path": str(path), "status": "skipped", "reason": reason, "detail": detail})
        log.warning("transcript skipped: %s: %s", path, detail)

    def add_read(self, path: Path) -> None:
        self.read += 1
        self.listing.append({"path": str(path), "status": "read", "reason": "", "detail": ""})

    def ignore(self, path: Path, detail: str) -> None:
        self.listing.append(
            {"path": str(path), "status": "ignored", "reason": "not a transcript", "detail": detail}
        )


def lecture_id_of(path: Path) -> str:
    name = path.name[: -len(INFO_SUFFIX)] if path.name.endswith(INFO_SUFFIX) else path.stem
    return LANGUAGE_SUFFIX.sub("", name) or name


def decode(path: Path) -> str:
    """UTF-8 (BOM allowed) or BOM-marked UTF-16 text; raises TranscriptError with a reason first word."""
    data = path.read_bytes()
    if not data.strip():
        raise TranscriptError("empty: the file has no text")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:8192]:
        raise TranscriptError("binary: NUL bytes, not a text transcript")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise TranscriptError(
            f"encoding: not UTF-8 (byte {error.start}); re-save it as UTF-8, e.g. `iconv -f cp1252 -t utf-8`"
        ) from None
    if len(MOJIBAKE.findall(text)) >= 3:
        raise TranscriptError("encoding: mojibake (text was decoded with the wrong encoding); re-export it")
    return text


def read_vtt(text: str) -> list[str]:
    try:
        captions = webvtt.from_string(text).captions
    except (webvtt.errors.MalformedFileError, webvtt.errors.MalformedCaptionError) as error:
        raise TranscriptError(f"malformed: not WebVTT ({error})") from None
    return [caption.raw_text for caption in captions]


def read_srt(text: str) -> list[str]:
    try:
        items = pysrt.from_string(text, error_handling=pysrt.ERROR_RAISE)
    except pysrt.Error as error:
        raise TranscriptError(f"malformed: not SubRip ({error})") from None
    return [item.text for item in items]


def read_json(text: str) -> tuple[list[str], str | None]:
    """The YouTube transcript export: `[{text, start, duration}]`, or `{title, transcript|segments}`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise TranscriptError(f"malformed: invalid JSON at line {error.lineno} ({error.msg})") from None
    title = None
    if isinstance(data, dict):
        title = data.get("title")
        data = data.get("transcript", data.get("segments"))
    if not isinstance(data, list) or not all(isinstance(s, dict) and "text" in s for s in data):
        raise TranscriptError(
            "malformed: expected a list of {text, start, duration} segments "
            "(or an object with `title` and `transcript`)"
        )
    segments = sorted(data, key=lambda s: float(s.get("start", 0.0)))
    return [str(s["text"]) for s in segments], title


def read_txt(text: str) -> tuple[str, str | None]:
    """Plain text; an optional first line `Title: ...`; timestamp-only lines (copied players) dropped."""
    lines = text.splitlines()
    title = None
    if lines and (match := TITLE_LINE.match(lines[0])):
        title, lines = match.group(1).strip(), lines[1:]
    return " ".join(line for line in lines if not TIMESTAMP_LINE.match(line)), title


def read_transcript(path: Path, title: str | None = None) -> Transcript:
    text = decode(path)
    suffix = path.suffix.lower()
    if suffix == ".vtt":
        words = merge_cues(read_vtt(text))
    elif suffix == ".srt":
        words = merge_cues(read_srt(text))
    elif suffix == ".json":
        cues, json_title = read_json(text)
        words, title = merge_cues(cues), title or json_title
    else:
        words, txt_title = read_txt(text)
        title = title or txt_title
    cleaned = clean_text(words)
    if not cleaned:
        raise TranscriptError("no speech: no spoken words left after removing timing and tags")
    return Transcript(lecture_id_of(path), strip_markup(title) if title else None, path, cleaned)


def sidecar_titles(files: list[Path]) -> dict[str, str]:
    """yt-dlp's `<id>.info.json` holds the video title."""
    titles = {}
    for path in files:
        if path.name.endswith(INFO_SUFFIX):
            try:
                title = json.loads(path.read_text(encoding="utf-8")).get("title")
            except (ValueError, UnicodeDecodeError, AttributeError):
                continue
            if title:
                titles[lecture_id_of(path)] = str(title)
    return titles


def read_transcripts(directory: Path) -> tuple[list[Transcript], IngestReport]:
    """Every transcript under `directory`, sorted by lecture id, and what was skipped and why."""
    if not directory.is_dir():
        raise FileNotFoundError(f"transcripts folder {directory} does not exist (set --transcripts)")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    titles = sidecar_titles(files)
    candidates = [p for p in files if p.suffix.lower() in FORMATS and not p.name.endswith(INFO_SUFFIX)]
    candidates.sort(key=lambda p: (lecture_id_of(p), FORMATS.index(p.suffix.lower()), str(p)))
    report = IngestReport(files=len(candidates))
    for path in files:
        if path.name.endswith(INFO_SUFFIX):
            report.ignore(path, "yt-dlp metadata: its title is used for the lecture")
        elif path.suffix.lower() not in FORMATS:
            report.ignore(path, f"{path.suffix or 'no extension'} is not one of {', '.join(FORMATS)}")
    transcripts: dict[str, Transcript] = {}
    for path in candidates:
        lecture_id = lecture_id_of(path)
        if lecture_id in transcripts:
            report.skip(
                path,
                "duplicate lecture",
                f"lecture {lecture_id} already read from {transcripts[lecture_id].path.name}",
            )
            continue
        try:
            transcripts[lecture_id] = read_transcript(path, titles.get(lecture_id))
        except TranscriptError as error:
            report.skip(path, str(error).split(":", 1)[0], str(error))
        else:
            report.add_read(path)
    return list(transcripts.values()), report
