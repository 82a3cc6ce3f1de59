"""Voice: is the educator recognisable in the model's replies?

A character 3-5-gram TF-IDF + logistic regression (the strong cheap authorship baseline) on text with
case and punctuation removed, so it keys on wording rather than formatting. The educator class is the
voice source's held-out passages (the lectures the builder kept out of training); the other class is
other people's text: every other source's held-out assistant replies. No model's replies ever train
it (a classifier fitted on the baseline's replies would detect "not the baseline", not the voice).
It is tested on lectures and conversations it never saw; below a floor of held-out balanced accuracy
it does not measure anything, and the replies are judged by that same fitted classifier.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import Pipeline, make_pipeline

from evals.settings import VoiceSettings

_PUNCTUATION = re.compile(r"[^\w\s]|_")


def normalise_style(text: str) -> str:
    """Case- and punctuation-free, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCTUATION.sub(" ", text).split())


@dataclass
class VoiceClassifier:
    pipeline: Pipeline
    heldout_accuracy: float
    n_train: int
    n_test: int

    def educator_share(self, texts: Sequence[str]) -> float:
        predictions = self.pipeline.predict([normalise_style(t) for t in texts])
        return float(np.mean(predictions))


def train_voice_classifier(
    educator: Sequence[tuple[str, str]],
    others: Sequence[tuple[str, str]],
    settings: VoiceSettings,
    seed: int = 0,
) -> VoiceClassifier:
    """educator / others: (text, group) pairs; a group (lecture, conversation) never spans both splits."""
    texts = [normalise_style(t) for t, _ in (*educator, *others)]
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
