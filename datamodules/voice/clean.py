"""Caption text into plain spoken words: no timing, no tags, no roll-up repeats, no stutters.

Auto-captions (YouTube's rolling .vtt) repeat the previous line at the top of every cue and carry
per-word timing tags; exports add `[Music]`-style tags and HTML entities. Every format's cues go
through `merge_cues`, then `clean_text`, so one set of rules serves .vtt, .srt, .json and .txt.
"""

from __future__ import annotations

import html
import re

INLINE_TAG = re.compile(r"</?[a-zA-Z][^<>]*>|<\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?>")
# [Music], [Applause], (laughter), ♪ ... ♪ and the ">>" speaker-change marks of auto-captions.
SOUND_TAG = re.compile(
    r"\[[^\]]{0,40}\]|\((?:music|applause|laughter|laughs|inaudible|silence|crosstalk)\)|[♪♫]+|>>",
    re.IGNORECASE,
)
TIMESTAMP = re.compile(r"\(?\b\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,3})?\b\)?(?:\s*-->\s*\S+)?")
SPACES = re.compile(r"\s+")
SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
WORD = re.compile(r"\S+")
NORMAL = re.compile(r"[^a-z0-9']+")
STUTTER_MAX_NGRAM = 3
STUTTER_MAX_WORD_CHARS = 4


def normalize_word(word: str) -> str:
    """Lower-case, punctuation-free form used for comparing spoken words."""
    return NORMAL.sub("", word.lower())


def normalized_words(text: str) -> list[str]:
    return [w for w in (normalize_word(w) for w in WORD.findall(text)) if w]


def strip_markup(text: str) -> str:
    """Timing tags, <c>/<i>/<font> tags, timestamps, sound tags and entities, whitespace collapsed."""
    text = html.unescape(INLINE_TAG.sub(" ", text))
    text = SOUND_TAG.sub(" ", TIMESTAMP.sub(" ", text))
    return SPACES.sub(" ", text).strip()


def merge_cues(cues: list[str]) -> str:
    """Join caption cues, dropping the roll-up overlap where a cue repeats the end of the text so far.

    The overlap is the longest run of words that ends the running text and starts the cue. It is
    removed when it is at least two words or the whole cue (a lone repeated word may be speech).
    """
    merged: list[str] = []
    keys: list[str] = []
    for cue in cues:
        words = WORD.findall(strip_markup(cue))
        if not words:
            continue
        cue_keys = [normalize_word(w) for w in words]
        overlap = 0
        for size in range(min(len(cue_keys), len(keys), 60), 0, -1):
            if keys[-size:] == cue_keys[:size]:
                overlap = size
                break
        if overlap >= 2 or overlap == len(cue_keys):
            words, cue_keys = words[overlap:], cue_keys[overlap:]
        merged.extend(words)
        keys.extend(cue_keys)
    return " ".join(merged)


def remove_stutters(text: str) -> str:
    """Collapse immediate repeats ("I I I think", "it was it was").

    A repeated single word counts only when short (a function word): in unpunctuated captions
    "about attachment attachment is" is usually a sentence boundary, not a stutter. A repeat that
    follows sentence punctuation ("No. No.") is speech and stays.
    """
    words = WORD.findall(text)
    keys = [normalize_word(w) for w in words]
    for size in range(STUTTER_MAX_NGRAM, 0, -1):
        out: list[str] = []
        out_keys: list[str] = []
        for word, key in zip(words, keys, strict=True):
            out.append(word)
            out_keys.append(key)
            if len(out) < 2 * size or out[-size - 1][-1] in ".?!":
                continue
            first, second = out_keys[-2 * size : -size], out_keys[-size:]
            short_enough = size > 1 or len(first[0]) <= STUTTER_MAX_WORD_CHARS
            if first == second and any(first) and short_enough:
                del out[-size:], out_keys[-size:]
        words, keys = out, out_keys
    return " ".join(words)


def clean_text(text: str) -> str:
    """Markup-free, stutter-free text with spaces normalised (punctuation kept where it exists)."""
    text = remove_stutters(strip_markup(text))
    return SPACE_BEFORE_PUNCT.sub(r"\1", text)
