"""Restore sentence punctuation and casing so stage 3 never trains on raw caption text.

Auto-captions arrive lower-case and unpunctuated. Two punctuators, same interface (text -> text,
words unchanged): `RulePunctuator` splits at spoken discourse markers ("so we", "now what") and
marks questions by their opening words; `ModelPunctuator` uses a local token-classification model
(labels such as "0", ".", ",", "?" or PERIOD/COMMA/QUESTION, as punctuation-restoration models on
the Hub use). Text that already has punctuation (human captions, written transcripts) is only
re-cased. Both only ever add punctuation and change letter case, so the speaker's words stay his.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from datamodules.voice.clean import normalize_word

# Text with at least one sentence mark per this many words counts as already punctuated.
PUNCTUATED_WORDS_PER_MARK = 40
SENTENCE_END = re.compile(r"(?<=[.?!])[\"')\]]*\s+")
ABBREVIATIONS = ("dr.", "mr.", "mrs.", "ms.", "e.g.", "i.e.", "etc.", "vs.", "st.")

MIN_SENTENCE_WORDS = 6
MAX_SENTENCE_WORDS = 40
MAX_QUESTION_WORDS = 20
MARKERS = {"so", "now", "but", "and", "okay", "ok", "well", "because"}
SUBJECTS = {
    "i",
    "we",
    "you",
    "he",
    "she",
    "they",
    "it",
    "this",
    "that",
    "these",
    "those",
    "there",
    "what",
    "when",
    "if",
    "once",
    "i'm",
    "i've",
    "i'll",
    "we're",
    "we'll",
    "you're",
    "you've",
    "it's",
    "that's",
    "there's",
    "here's",
    "let's",
    "let",
    "the",
    "one",
    "many",
    "some",
    "for",
    "in",
    "my",
    "our",
    "your",
    "how",
    "why",
    "where",
    "who",
    "imagine",
    "think",
}
IMPERATIVES = {
    ("let", "me"),
    ("let's", None),
    ("imagine", None),
    ("picture", None),
    ("think", "of"),
    ("think", "about"),
}
WH = {"what", "why", "how", "where", "who", "which", "when"}
AUX = {
    "is",
    "are",
    "was",
    "were",
    "do",
    "does",
    "did",
    "can",
    "could",
    "would",
    "should",
    "will",
    "have",
    "has",
    "am",
    "isn't",
    "aren't",
    "don't",
    "doesn't",
    "didn't",
    "can't",
    "won't",
    "happens",
    "makes",
    "causes",
}
QUESTION_AUX = {"do", "does", "did", "can", "could", "would", "have"}
PRONOUNS = {"i", "you", "we", "he", "she", "they", "it", "that", "this", "there", "anyone", "someone"}
# A break never falls right after these: "I want you to | think about" is one sentence.
GLUE = {
    "to",
    "you",
    "i",
    "we",
    "and",
    "can",
    "will",
    "would",
    "could",
    "just",
    "not",
    "don't",
    "must",
    "should",
    "a",
    "an",
    "the",
    "of",
    "is",
    "are",
    "was",
    "so",
    "but",
    "or",
    "very",
    "be",
    "how",
    "what",
}
# "and" joins clauses far more often than it opens a sentence: only before a pronoun-like word.
AND_SUBJECTS = {
    "i",
    "we",
    "you",
    "he",
    "she",
    "they",
    "i'm",
    "we're",
    "you're",
    "here's",
    "what",
    "when",
    "if",
    "once",
    "now",
    "so",
    "then",
    "let's",
}
LABEL_MARKS = {"PERIOD": ".", "COMMA": ",", "QUESTION": "?", "EXCLAMATION": "!", "COLON": ":", "-": ","}
PROPER_I = re.compile(r"\bi(?=\b|'(?:m|ve|ll|d)\b)")


class Punctuator(Protocol):
    def __call__(self, text: str) -> str: ...


def is_punctuated(text: str) -> bool:
    words = len(text.split())
    return words > 0 and sum(text.count(m) for m in ".?!") * PUNCTUATED_WORDS_PER_MARK >= words


def split_sentences(text: str) -> list[str]:
    """Sentences of punctuated text; a split after a known abbreviation ("Dr.") is undone."""
    pieces = [p.strip() for p in SENTENCE_END.split(text) if p.strip()]
    sentences: list[str] = []
    for piece in pieces:
        if sentences and sentences[-1].lower().endswith(ABBREVIATIONS):
            sentences[-1] += " " + piece
        else:
            sentences.append(piece)
    return sentences


def recase(sentence: str, proper_nouns: dict[str, str]) -> str:
    """Sentence-initial capital, "I", and the given proper nouns; other letters as they were."""
    sentence = PROPER_I.sub("I", sentence)
    if proper_nouns:
        sentence = re.sub(
            r"\b(" + "|".join(map(re.escape, proper_nouns)) + r")\b",
            lambda m: proper_nouns[m.group(0).lower()],
            sentence,
            flags=re.IGNORECASE,
        )
    for index, char in enumerate(sentence):
        if char.isalpha():
            return sentence[:index] + char.upper() + sentence[index + 1 :]
    return sentence


def proper_noun_map(names: list[str]) -> dict[str, str]:
    return {word.lower(): word for name in names for word in name.split() if word}


def looks_like_question(words: list[str]) -> bool:
    """Opens (after "so"/"and"/"now") with a wh-word and a verb, or a verb and a pronoun; short."""
    start = 0
    while start < len(words) and normalize_word(words[start]) in MARKERS:
        start += 1
    if not 2 <= len(words) - start <= MAX_QUESTION_WORDS:
        return False
    first, second = normalize_word(words[start]), normalize_word(words[start + 1])
    return (first in WH and second in AUX) or (first in AUX and second in PRONOUNS)


def starts_sentence(words: list[str], index: int, current: list[str]) -> bool:
    if len(current) < MIN_SENTENCE_WORDS and not (looks_like_question(current) and len(current) >= 3):
        return False
    word = normalize_word(words[index])
    following = normalize_word(words[index + 1]) if index + 1 < len(words) else ""
    if normalize_word(current[-1]) in GLUE:
        return False
    if looks_like_question(current) and word in MARKERS - {"and", "because"}:
        return True  # "what is shame really | so shame is ..."
    if word in MARKERS and following in (AND_SUBJECTS if word == "and" else SUBJECTS):
        return True
    if word in WH and following in AUX:
        return True
    if word in QUESTION_AUX and following in {"you", "we"}:
        return True  # "... were punished | do you see how ..."
    return (word, following) in IMPERATIVES or (word, None) in IMPERATIVES


def segment(words: list[str]) -> list[list[str]]:
    """Unpunctuated words into sentences at discourse markers; a long run breaks before a conjunction."""
    sentences: list[list[str]] = []
    current: list[str] = []
    for index, word in enumerate(words):
        long_run = len(current) >= MAX_SENTENCE_WORDS and normalize_word(word) in MARKERS
        if current and (
            long_run or len(current) >= 2 * MAX_SENTENCE_WORDS or starts_sentence(words, index, current)
        ):
            sentences.append(current)
            current = []
        current.append(word)
    if current:
        sentences.append(current)
    return sentences


def finish(words: list[str], proper_nouns: dict[str, str]) -> str:
    sentence = " ".join(words).rstrip(",;:")
    if sentence[-1] not in ".?!":
        sentence += "?" if looks_like_question(words) else "."
    return recase(sentence, proper_nouns)


class RulePunctuator:
    """Rules only: no model, deterministic, fast."""

    def __init__(self, proper_nouns: list[str] | None = None):
        self.proper_nouns = proper_noun_map(proper_nouns or [])

    def __call__(self, text: str) -> str:
        if is_punctuated(text):
            sentences = split_sentences(text)
            return " ".join(finish(s.split(), self.proper_nouns) for s in sentences)
        return " ".join(finish(s, self.proper_nouns) for s in segment(text.split()))


class ModelPunctuator:
    """A local token-classification punctuation model. The label of a word's first token is the
    mark that follows the word (the usual token-classification training layout: one label per word
    on its first sub-token). Already punctuated text is only re-cased, as with the rules."""

    WINDOW_WORDS = 150

    def __init__(self, path: Path, proper_nouns: list[str] | None = None, device: str = "cpu"):
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        if not Path(path).is_dir():
            raise FileNotFoundError(f"punctuation model folder {path} does not exist (punctuation_model)")
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModelForTokenClassification.from_pretrained(path, local_files_only=True)
        self.model.to(device).eval()
        self.device = device
        self.marks = {i: self.mark_of(label) for i, label in self.model.config.id2label.items()}
        self.rules = RulePunctuator(proper_nouns)

    @staticmethod
    def mark_of(label: str) -> str:
        label = label.upper().removeprefix("B-").removeprefix("I-")
        if label in LABEL_MARKS:
            return LABEL_MARKS[label]
        return label if label in {".", ",", "?", "!", ":", ";"} else ""

    def marks_for(self, words: list[str]) -> list[str]:
        text = " ".join(words)
        owner = []
        for number, word in enumerate(words):
            owner.extend([number] * (len(word) + 1))
        encoded = self.tokenizer(
            text, return_offsets_mapping=True, return_tensors="pt", truncation=True, max_length=512
        )
        offsets = encoded.pop("offset_mapping")[0].tolist()
        with self.torch.no_grad():
            labels = self.model(**encoded.to(self.device)).logits[0].argmax(-1).tolist()
        marks: dict[int, str] = {}
        for (start, end), label in zip(offsets, labels, strict=True):
            if end > start:
                marks.setdefault(owner[end - 1], self.marks[label])  # the word's first token decides
        return [marks.get(number, "") for number in range(len(words))]

    def __call__(self, text: str) -> str:
        if is_punctuated(text):
            return self.rules(text)
        words = text.split()
        sentences: list[list[str]] = [[]]
        for start in range(0, len(words), self.WINDOW_WORDS):
            window = words[start : start + self.WINDOW_WORDS]
            for word, mark in zip(window, self.marks_for(window), strict=True):
                sentences[-1].append(word + mark if mark and word[-1] not in ".,?!:;" else word)
                if mark in ".?!":
                    sentences.append([])
        return " ".join(finish(s, self.rules.proper_nouns) for s in sentences if s)
