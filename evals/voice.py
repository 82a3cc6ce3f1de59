"""Voice: is the educator recognisable in the model's replies?

A character 3-5-gram TF-IDF + logistic regression (the strong cheap authorship baseline) on text with
case and punctuation removed, so it keys on wording rather than formatting. It is trained on the
educator's held-out passages against other speakers and baseline outputs, and tested on lectures
(groups) it never saw; below a floor of held-out balanced accuracy it does not measure anything.
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

from evals.metrics import Metric, unmeasured
from evals.settings import VoiceSettings

SCALE = "share of replies classified as the educator"
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
    pipeline.fit(texts, labels)  # the verdict on model replies uses every passage
    return VoiceClassifier(pipeline, float(accuracy), len(train), len(test))


def voice_metric(classifier: VoiceClassifier, replies: Sequence[str], settings: VoiceSettings) -> Metric:
    note = f"classifier held-out balanced accuracy {classifier.heldout_accuracy:.2f} (split by lecture)"
    if classifier.heldout_accuracy < settings.min_classifier_accuracy:
        return unmeasured(
            "voice_share",
            SCALE,
            "classifier",
            f"{note} < {settings.min_classifier_accuracy}: it cannot tell the educator apart",
        )
    if not replies:
        return unmeasured("voice_share", SCALE, "classifier", "no voice-probe replies")
    value = classifier.educator_share(replies)
    return Metric("voice_share", value, value, SCALE, "classifier", n=len(replies), note=note)
