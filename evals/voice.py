"""Voice: is the educator recognisable in the model's replies, by how he talks, not what about?

A character 3-5-gram TF-IDF + logistic regression (the strong cheap authorship baseline) on text with
case and punctuation removed and every word that is not a function or discourse word masked letter
by letter ("text distortion", Stamatatos 2017): what is left is how sentences are built (his "here's
the thing", "let me give you an example", "you know what I mean") and word lengths, not the topic's
vocabulary. A classifier on raw text learns topic: a textbook paragraph on his topics passes for him.
The educator class is the voice source's held-out passages (the lectures the builder kept out of
training); the other class is other people's text: every other source's held-out assistant replies,
plus other speakers' text on his own topics (OTHER_SPEAKERS: textbook, clinical, blog and forum
registers), so topic cannot separate the classes. No model's replies ever train it. It is tested on
lectures and conversations it never saw; below a floor of held-out balanced accuracy it does not
measure anything. With a judge, `pairwise_preference` asks which of two replies sounds like him,
with one of his held-out passages as the reference.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import Pipeline, make_pipeline

from evals.settings import VoiceSettings

_PUNCTUATION = re.compile(r"[^\w\s]|_")
OTHER_SPEAKERS = Path(__file__).parent / "suites" / "voice_others.jsonl"
# Kept by the distortion: function words, the pieces of contractions ("here s" once normalised) and
# the discourse words a speaker's habits are made of.
STYLE_WORDS = frozenset(ENGLISH_STOP_WORDS) | frozenset(
    "s t m re ve ll d don doesn didn isn aren wasn okay ok yeah yes right so now well just "
    "really actually basically like kind sort thing things stuff mean know think say said tell let "
    "give example imagine picture gonna wanna".split()
)


def normalise_style(text: str) -> str:
    """Case- and punctuation-free, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCTUATION.sub(" ", text).split())


def distort(text: str) -> str:
    """Normalised text with every word outside STYLE_WORDS masked as asterisks of its length."""
    return " ".join(w if w in STYLE_WORDS else "*" * len(w) for w in normalise_style(text).split())


def other_speakers(path: Path = OTHER_SPEAKERS) -> list[tuple[str, str]]:
    """(text, group) of other speakers on the educator's topics; a group is one text."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["text"], f"other-speakers:{row['id']}") for row in rows]


@dataclass
class VoiceClassifier:
    pipeline: Pipeline
    heldout_accuracy: float
    n_train: int
    n_test: int

    def educator_share(self, texts: Sequence[str]) -> float:
        predictions = self.pipeline.predict([distort(t) for t in texts])
        return float(np.mean(predictions))

    def educator_probability(self, texts: Sequence[str]) -> list[float]:
        return [float(p) for p in self.pipeline.predict_proba([distort(t) for t in texts])[:, 1]]


def train_voice_classifier(
    educator: Sequence[tuple[str, str]],
    others: Sequence[tuple[str, str]],
    settings: VoiceSettings,
    seed: int = 0,
) -> VoiceClassifier:
    """educator / others: (text, group) pairs; a group (lecture, conversation) never spans both splits."""
    texts = [distort(t) for t, _ in (*educator, *others)]
    labels = np.array([1] * len(educator) + [0] * len(others))
    groups = [f"educator:{g}" for _, g in educator] + [f"other:{g}" for _, g in others]
    if (
        len({g for g in groups if g.startswith("educator:")}) < 2
        or len({g for g in groups if g.startswith("other:")}) < 2
    ):
        raise ValueError("the voice classifier needs at least two lectures and two other-speaker groups")
    # Re-draw until both classes sit on both sides of the split (few groups make a one-class side likely).
    for attempt in range(50):
        splitter = GroupShuffleSplit(
            n_splits=1, test_size=settings.test_fraction, random_state=seed + attempt
        )
        train, test = next(splitter.split(texts, labels, groups))
        if len(set(labels[train])) == 2 and len(set(labels[test])) == 2:
            break
    else:
        raise ValueError(
            "could not split the voice data by group with both classes on each side; add lectures"
        )
    pipeline = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True),
        LogisticRegression(max_iter=2000, class_weight="balanced"),
    )
    pipeline.fit([texts[i] for i in train], labels[train])
    accuracy = balanced_accuracy_score(labels[test], pipeline.predict([texts[i] for i in test]))
    # Not refitted on the test groups: the verdict on replies comes from the classifier whose held-out
    # accuracy is reported.
    return VoiceClassifier(pipeline, float(accuracy), len(train), len(test))


def pairwise_messages(reference: str, prompt: str, first: str, second: str) -> list[dict[str, str]]:
    """A judge prompt: which of two replies to `prompt` sounds like the speaker of `reference`."""
    return [
        {
            "role": "system",
            "content": (
                "You compare two replies by their voice, not their quality or topic: word choice, sentence "
                "rhythm, how ideas are explained (analogies, examples, asides to the listener). The reference "
                "passage is the speaker's own words. Answer with one JSON object: "
                '{"rationale": string, "closer": "A" or "B"}.'
            ),
        },
        {
            "role": "user",
            "content": (
                f"Reference passage by the speaker:\n{reference}\n\nThe person asked:\n{prompt}\n\n"
                f"Reply A:\n{first}\n\nReply B:\n{second}\n\nWhich reply sounds more like the speaker?"
            ),
        },
    ]


def closer_reply(answer: str) -> str | None:
    """"A" or "B" from the judge's JSON answer; None when it is malformed."""
    start = answer.find("{")
    try:
        value, _ = json.JSONDecoder().raw_decode(answer[start:]) if start >= 0 else (None, 0)
    except json.JSONDecodeError:
        return None
    closer = str(value.get("closer", "")).strip().upper() if isinstance(value, dict) else ""
    return closer if closer in ("A", "B") else None


def pairwise_preference(complete, reference: str, prompt: str, candidate: str, other: str, seed: int = 0) -> float | None:
    """1 when the judge (`complete(messages) -> str`) hears the speaker in `candidate` over `other`
    in both orders, 0 when in neither, 0.5 when the order decided (position bias); None when an
    answer was malformed. The first order is drawn from `seed`."""
    orders = [(candidate, other), (other, candidate)]
    random.Random(seed).shuffle(orders)
    wins = []
    for first, second in orders:
        closer = closer_reply(complete(pairwise_messages(reference, prompt, first, second)))
        if closer is None:
            return None
        wins.append((closer == "A") == (first is candidate))
    return sum(wins) / 2
