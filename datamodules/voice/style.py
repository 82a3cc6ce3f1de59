"""The speaker's style profile: phrases he returns to, how he explains, how long he talks, what about.

Saved beside the output as JSON; the generator prompts take each lecture's title and key topics
from it, so client messages ask about what the lecture is about, and the reply writer gets its
style card (`style_card`): his recurring phrases, how often he reaches for an analogy or an example,
and a few of his own sentences that do.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter

from sklearn.feature_extraction.text import TfidfVectorizer

from datamodules.voice.clean import normalized_words
from datamodules.voice.punctuate import split_sentences

MARKERS = {
    "analogy": [
        "it's like",
        "it's a bit like",
        "it's kind of like",
        "imagine",
        "picture",
        "think of",
        "as if",
        "like a",
    ],
    "example": [
        "for example",
        "for instance",
        "let me give you an example",
        "let's say",
        "here's an example",
        "a client of mine",
        "i remember",
    ],
    "address": ["you know", "here's the thing", "i want you to", "i want to", "let's", "so what"],
}
PHRASE_SIZES = (3, 4, 5)
TOP_PHRASES = 40
TOP_TOPICS = 8
CARD_PHRASES = 15
CARD_SENTENCES = 6
CARD_SENTENCE_WORDS = (8, 40)


def ngram_counts(words: list[str], size: int) -> Counter:
    return Counter(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))


def frequent_phrases(lectures: dict[str, list[str]]) -> list[dict]:
    """3-5-grams ranked by how many lectures use them, then how often; a phrase inside a longer
    listed one with the same count is left out. With several lectures, a phrase must recur across
    lectures (a one-talk phrase is topic, not voice)."""
    total: Counter = Counter()
    spread: Counter = Counter()
    for words in lectures.values():
        for size in PHRASE_SIZES:
            counts = ngram_counts(words, size)
            total.update(counts)
            spread.update(counts.keys())
    need = 2 if len(lectures) > 1 else 1
    ranked = sorted(
        (p for p, c in total.items() if spread[p] >= need and c >= 2),
        key=lambda p: (-spread[p], -total[p], -len(p.split()), p),
    )
    chosen: list[str] = []
    for phrase in ranked:
        if any(phrase in longer and total[longer] == total[phrase] for longer in chosen):
            continue
        chosen.append(phrase)
        if len(chosen) == TOP_PHRASES:
            break
    return [{"phrase": p, "count": total[p], "lectures": spread[p]} for p in chosen]


def marker_rates(text: str, words: int) -> dict[str, dict[str, float]]:
    """Occurrences per 1,000 words of each analogy, example and address marker."""
    lowered = " " + " ".join(normalized_words(text)) + " "
    return {
        kind: {
            marker: round(
                1000 * len(re.findall(r"(?<= )" + re.escape(marker) + r"(?= )", lowered)) / max(words, 1), 3
            )
            for marker in markers
        }
        for kind, markers in MARKERS.items()
    }


def key_topics(lectures: dict[str, str]) -> dict[str, list[str]]:
    """TF-IDF top terms per lecture (English stop words out, uni- and bigrams)."""
    ids = list(lectures)
    if not ids:
        return {}
    vectorizer = TfidfVectorizer(
        stop_words="english", ngram_range=(1, 2), sublinear_tf=True, max_df=0.8 if len(ids) >= 3 else 1.0
    )
    matrix = vectorizer.fit_transform([lectures[i] for i in ids])
    vocabulary = vectorizer.get_feature_names_out()
    topics = {}
    for row, lecture_id in enumerate(ids):
        scores = matrix.getrow(row).toarray()[0]
        best = scores.argsort()[::-1][:TOP_TOPICS]
        topics[lecture_id] = [str(vocabulary[i]) for i in best if scores[i] > 0]
    return topics


def explaining_sentences(lectures: dict[str, str]) -> list[str]:
    """His sentences that use an analogy or example marker, spread across lectures (the first of
    each kind per lecture, in lecture order), 8-40 words each."""
    chosen: list[str] = []
    for text in lectures.values():
        for kind in ("analogy", "example"):
            for sentence in split_sentences(text):
                lowered = " " + " ".join(normalized_words(sentence)) + " "
                size = len(sentence.split())
                fits = CARD_SENTENCE_WORDS[0] <= size <= CARD_SENTENCE_WORDS[1]
                if fits and any(f" {m} " in lowered for m in MARKERS[kind]) and sentence not in chosen:
                    chosen.append(sentence)
                    break
    return chosen[:CARD_SENTENCES]


def style_card(profile: dict) -> str:
    """What the reply writer is told about how he talks, from the profile (training lectures only)."""
    phrases = [p["phrase"] for p in profile["frequent_phrases"][:CARD_PHRASES]]
    rates = profile["markers_per_1000_words"]
    favourites = {
        kind: [m for m, rate in sorted(markers.items(), key=lambda item: -item[1]) if rate > 0][:3]
        for kind, markers in rates.items()
    }
    lines = [
        f"{profile['speaker']} speaks in sentences of about {profile['sentence_words']['median']} words, "
        "plainly, to the listener as 'you'.",
    ]
    if phrases:
        lines.append("Phrases he returns to: " + "; ".join(f'"{p}"' for p in phrases) + ".")
    if favourites.get("analogy"):
        lines.append("He explains with analogies, introduced by: " + ", ".join(favourites["analogy"]) + ".")
    if favourites.get("example"):
        lines.append("He gives examples, introduced by: " + ", ".join(favourites["example"]) + ".")
    if profile.get("explaining_sentences"):
        lines.append("How he sounds:\n" + "\n".join(f"- {s}" for s in profile["explaining_sentences"]))
    return "\n".join(lines)


def style_profile(
    speaker: str, lectures: dict[str, str], titles: dict[str, str | None], heldout: set[str] = frozenset()
) -> dict:
    """`lectures`: lecture id -> punctuated text. Phrases, markers and sentence figures come from the
    training lectures only (the voice evaluation may compare against them); title and topics are
    listed for every lecture, since prompts for held-out lectures need them too."""
    topics = key_topics(lectures)
    punctuated = {k: v for k, v in lectures.items() if k not in heldout}
    words = {lecture_id: normalized_words(text) for lecture_id, text in punctuated.items()}
    total_words = sum(len(w) for w in words.values())
    lengths = [len(s.split()) for text in punctuated.values() for s in split_sentences(text)]
    all_text = " ".join(punctuated.values())
    return {
        "speaker": speaker,
        "lectures": len(punctuated),
        "words": total_words,
        "sentence_words": {
            "mean": round(statistics.fmean(lengths), 2) if lengths else 0.0,
            "median": statistics.median(lengths) if lengths else 0,
            "p90": sorted(lengths)[int(0.9 * (len(lengths) - 1))] if lengths else 0,
        },
        "question_share": round(
            sum(s.endswith("?") for t in punctuated.values() for s in split_sentences(t))
            / max(len(lengths), 1),
            4,
        ),
        "frequent_phrases": frequent_phrases(words),
        "markers_per_1000_words": marker_rates(all_text, total_words),
        "explaining_sentences": explaining_sentences(punctuated),
        "lectures_detail": {
            lecture_id: {"title": titles.get(lecture_id), "topics": terms, "heldout": lecture_id in heldout}
            for lecture_id, terms in topics.items()
        },
    }
