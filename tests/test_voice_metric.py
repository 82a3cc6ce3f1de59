"""The voice metric measures style, not topic: trained with other speakers on his topics, it hears
him in his held-out lecture and not in a textbook paragraph about what he talks about; the pairwise
judge comparison is order-balanced."""

import json
from collections import Counter
from pathlib import Path

from datamodules.voice.boilerplate import strip_boilerplate
from datamodules.voice.chunk import chunk
from datamodules.voice.ingest import read_transcripts
from datamodules.voice.punctuate import RulePunctuator, split_sentences
from evals.settings import VoiceSettings
from evals.voice import distort, other_speakers, pairwise_preference, train_voice_classifier

SAMPLES = Path(__file__).parents[1] / "datamodules" / "voice" / "samples"
HELDOUT = "healing-is-not-linear"
SETTINGS = VoiceSettings(min_classifier_accuracy=0.75, test_fraction=0.25, educator_sources=("voice",))
TEXTBOOK_ON_HIS_TOPICS = (
    "Complex trauma refers to exposure to multiple, chronic and interpersonal traumatic events, typically "
    "beginning in childhood within the caregiving system. Survivors frequently exhibit disturbances in "
    "affect regulation, self-concept and relational functioning, including pervasive shame, people-pleasing "
    "behaviours and insecure attachment. Treatment guidelines recommend a phase-oriented approach in which "
    "stabilisation precedes the processing of traumatic memories."
)


def lectures() -> dict[str, list[str]]:
    transcripts, _ = read_transcripts(SAMPLES)
    punctuate = RulePunctuator(["Tim Fletcher"])
    out = {}
    for t in transcripts:
        text, _ = strip_boilerplate(punctuate(t.text))
        out[t.lecture_id] = [p.text for p in chunk(t.lecture_id, text, 60, 120, Counter())]
    return out


def test_text_distortion_keeps_how_he_talks_and_masks_what_about():
    assert distort("Here's the thing: shame tells you that you ARE the problem.") == (
        "here s the thing ***** ***** you that you are the *******"
    )


def test_the_metric_prefers_his_heldout_lecture_to_a_textbook_paragraph_on_his_topics():
    passages = lectures()
    educator = [(p, lecture) for lecture, ps in passages.items() if lecture != HELDOUT for p in ps]
    classifier = train_voice_classifier(educator, other_speakers(), SETTINGS)
    assert classifier.heldout_accuracy >= SETTINGS.min_classifier_accuracy
    assert classifier.educator_share(passages[HELDOUT]) >= 0.9  # a lecture it never saw
    assert classifier.educator_share([TEXTBOOK_ON_HIS_TOPICS]) == 0.0
    textbook = classifier.educator_probability([TEXTBOOK_ON_HIS_TOPICS])[0]
    his = [s for p in passages[HELDOUT] for s in split_sentences(p) if len(s.split()) >= 8]
    above = sum(p > textbook for p in classifier.educator_probability(his)) / len(his)
    assert above >= 0.9  # sentence by sentence, he sounds more like himself than the textbook


def test_pairwise_preference_is_asked_in_both_orders():
    asked = []

    def judge(position_biased: bool):
        def complete(messages):
            text = messages[1]["content"]
            asked.append(text)
            first = text.split("Reply A:\n")[1].split("\n\nReply B:")[0]
            if position_biased:
                return json.dumps({"rationale": "first", "closer": "A"})
            return json.dumps({"rationale": "his", "closer": "A" if "you know" in first else "B"})

        return complete

    his, other = "So you know, shame says I am bad.", "Shame is a self-conscious emotion."
    assert pairwise_preference(judge(False), "reference", "What is shame?", his, other) == 1.0
    assert pairwise_preference(judge(False), "reference", "What is shame?", other, his) == 0.0
    assert pairwise_preference(judge(True), "reference", "What is shame?", his, other) == 0.5
    assert len(asked) == 6 and all("Reference passage by the speaker:\nreference" in a for a in asked)
    assert pairwise_preference(lambda m: "no json", "r", "p", his, other) is None
