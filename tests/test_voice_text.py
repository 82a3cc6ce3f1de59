"""Punctuation restoration, chunking, question spans, dedup, style profile and filters."""

import itertools
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from datamodules.voice.chunk import Passage, chunk, drop_near_duplicates
from datamodules.voice.clients import client_question, speaker_question
from datamodules.voice.clean import normalized_words
from datamodules.voice.filters import (
    ConversationFilter,
    FilterSettings,
    carries_self_harm_method,
    faithfulness,
    grounding,
)
from datamodules.voice.ingest import read_transcript, read_transcripts
from datamodules.voice.punctuate import ModelPunctuator, RulePunctuator, split_sentences
from datamodules.voice.style import style_profile

SAMPLES = Path(__file__).parents[1] / "datamodules" / "voice" / "samples"
UNPUNCTUATED = (
    "so today i want to talk with tim fletcher about shame what is shame really so shame is not the "
    "same as guilt and i want you to notice that now think of a child who grows up in a home where "
    "mistakes were punished do you see how that child learns to hide"
)


def test_rules_restore_sentences_questions_and_casing_without_changing_words():
    text = RulePunctuator(["Tim Fletcher"])(UNPUNCTUATED)
    assert normalized_words(text) == normalized_words(UNPUNCTUATED)
    sentences = split_sentences(text)
    assert sentences == [
        "So today I want to talk with Tim Fletcher about shame.",
        "What is shame really?",
        "So shame is not the same as guilt.",
        "And I want you to notice that.",
        "Now think of a child who grows up in a home where mistakes were punished.",
        "Do you see how that child learns to hide?",
    ]


def test_punctuated_text_is_only_recased():
    text = "i said no. Dr. Smith agreed, didn't he? yes."
    assert RulePunctuator()(text) == "I said no. Dr. Smith agreed, didn't he? Yes."


def check_passages(passages, words, min_words, max_words, contiguous=True):
    for passage in passages:
        assert min_words <= passage.words <= max_words
        assert normalized_words(passage.text) == normalized_words(
            " ".join(words[passage.start : passage.end])
        )
        assert passage.text[0].isupper() and passage.text[-1] in ".?!"
    for before, after in itertools.pairwise(passages):
        assert (
            after.start == before.end if contiguous else after.start > before.end
        )  # contiguous: nothing lost or repeated between passages


def test_chunking_unpunctuated_captions_at_sentence_boundaries():
    transcript = read_transcript(SAMPLES / "shame-and-the-inner-critic.en.vtt")
    assert "." not in transcript.text
    counts = Counter()
    passages = chunk(transcript.lecture_id, RulePunctuator()(transcript.text), 60, 140, counts)
    assert len(passages) >= 3
    check_passages(passages, transcript.text.split(), 60, 140)
    assert passages[0].start == 0 and passages[-1].end == len(transcript.text.split())
    assert counts == Counter()


def test_chunking_a_run_without_any_break_and_a_short_lecture():
    words = [f"word{i}" for i in range(500)]
    counts = Counter()
    text = RulePunctuator()(" ".join(words))
    assert max(len(s.split()) for s in split_sentences(text)) == 80  # rules cap a run-on "sentence"
    assert [p.words for p in chunk("run", text, 100, 200, counts)] == [160, 160, 180]
    sizes = [p.words for p in chunk("run", text, 20, 50, counts)]  # cut inside 80-word "sentences"
    assert all(20 <= size <= 50 for size in sizes) and sum(sizes) == 500
    assert chunk("short", "Too short to teach anything.", 100, 200, counts) == []
    assert counts == Counter({"short_lecture": 1})


def test_speaker_questions_become_client_questions():
    transcript = read_transcript(SAMPLES / "people-pleasing.srt")
    text = RulePunctuator()(transcript.text)
    assert speaker_question(text, 4) == "Why do we say yes when everything inside us wants to say no?"
    # "We don't ask, did I react?" is reported speech, not a question to answer
    assert speaker_question("We don't ask, did I react? We just carry on.", 4) is None
    assert client_question("So why does it feel like I'm going backwards?") == (
        "Why does it feel like I'm going backwards?"
    )


def test_near_duplicate_passages_across_lectures_are_dropped():
    base = read_transcript(SAMPLES / "healing-is-not-linear.txt").text.split()[:200]
    edited = list(base)
    edited[50], edited[120] = "truly", "perhaps"
    other = read_transcript(SAMPLES / "people-pleasing.srt").text.split()[:200]
    passages = [
        Passage("a", " ".join(base), 0, 200),
        Passage("b", " ".join(other), 0, 200),
        Passage("c", " ".join(edited), 0, 200),
    ]
    counts = Counter()
    assert [p.lecture_id for p in drop_near_duplicates(passages, 0.8, counts)] == ["a", "b"]
    assert counts == Counter({"near_duplicate": 1})


def test_style_profile_finds_phrases_markers_and_topics():
    transcripts, _ = read_transcripts(SAMPLES)
    punctuate = RulePunctuator()
    profile = style_profile(
        "Tim Fletcher",
        {t.lecture_id: punctuate(t.text) for t in transcripts},
        {t.lecture_id: t.title for t in transcripts},
    )
    phrases = {p["phrase"]: p for p in profile["frequent_phrases"]}
    assert phrases["i want to talk about"]["lectures"] == 3
    assert profile["markers_per_1000_words"]["analogy"]["it's like"] > 0
    assert profile["markers_per_1000_words"]["example"]["let me give you an example"] > 0
    detail = profile["lectures_detail"]
    assert "shame" in detail["shame-and-the-inner-critic"]["topics"]
    assert "attachment" in detail["attachment-and-safety"]["topics"]
    assert detail["healing-is-not-linear"]["title"] == "Healing Is Not Linear"  # a .txt title line
    assert detail["shame-and-the-inner-critic"]["title"] == "Shame and the Inner Critic"  # .info.json
    assert detail["emotional-neglect"]["title"].startswith("Emotional Neglect")  # JSON {title, transcript}
    assert 5 < profile["sentence_words"]["mean"] < 40 and 0 < profile["question_share"] < 0.5


@pytest.mark.parametrize(
    "text, flagged",
    [
        ("She looked up the lethal dose of her medication.", True),
        ("How many sleeping pills would be enough to not wake up?", True),
        ("He told me the easiest way to kill yourself is with pills.", True),
        ("I learned to cut deeper so it would hurt more.", True),
        ("He was tying a noose in the garage.", True),
        ("I used to self-harm when I felt overwhelmed, and now I call a friend instead.", False),
        ("Suicidal thoughts often come from unbearable shame, and they deserve to be heard.", False),
        ("Cut yourself some slack, healing takes time.", False),
    ],
)
def test_safety_rules_catch_method_information_not_talk_about_feelings(text, flagged):
    assert carries_self_harm_method(text) is flagged


def test_filters_count_what_they_drop_and_trim_multi_turn():
    keep = ConversationFilter(
        FilterSettings(grounding_threshold=0.9, min_client_words=3, max_client_words=20)
    )
    span = "so shame says i am bad and guilt says i did something bad"
    answer = "So shame says I am bad, and guilt says I did something bad."
    assert grounding(answer, span) == 1.0

    def one(client, reply=answer, kind="verbatim"):
        return keep([(client, reply, span, kind)], 1)

    assert one("Why do I feel so bad about myself?") is not None
    assert one("why do i feel SO bad about myself") is None  # same message again
    assert one("Is shame the same as guilt?", "Shame is a feeling that everyone has.") is None
    assert one("ok") is None
    assert one("\x07\x1b⁂⁂⁂ ⁂⁂ ⁂⁂⁂⁂") is None
    assert one("urther true dis pogram#default processes exceptCONE") is None
    assert one("What is the lethal dose of my pills?") is None
    # a reply written from the span keeps his words; one that drifts from it is unfaithful
    assert one("Are shame and guilt different?", "Shame says I am bad; guilt says I did something bad.", "rewrite")
    assert one("So what is guilt then?", "Guilt is a signal from your conscience about values.", "rewrite") is None
    # a safe reply has no transcript span, and a repeated disclosure is not a copied question
    assert one("I think everyone would be better off without me.", "Please call 988.", "safe") is not None
    assert one("I think everyone would be better off without me.", "Please call 988.", "safe") is not None
    trimmed = keep(
        [
            ("What is shame, really?", answer, span, "verbatim"),
            ("And what about guilt?", answer, span, "verbatim"),
            ("Tell me the lethal dose.", answer, span, "verbatim"),
        ],
        2,
    )
    assert [m["role"] for m in trimmed] == ["user", "assistant", "user", "assistant"]
    assert keep.counts.exchanges_dropped == Counter(
        {
            "duplicate_client": 1,
            "grounding": 1,
            "client_length": 1,
            "client_not_text": 2,
            "safety": 2,
            "unfaithful": 1,
        }
    )
    assert keep.counts.conversations_dropped == Counter(
        {
            "duplicate_client": 1,
            "grounding": 1,
            "client_length": 1,
            "client_not_text": 2,
            "safety": 1,
            "unfaithful": 1,
        }
    )
    assert keep.counts.conversations_trimmed == 1
    assert faithfulness(answer, span) == (1.0, 1.0)


def test_local_punctuation_model_marks_words_and_keeps_them(tmp_path):
    from transformers import MistralForTokenClassification

    from moe.base_model import load_tokenizer, tiny_config

    tokenizer = load_tokenizer("tiny")
    config = tiny_config(len(tokenizer))
    config.num_labels = 3
    config.id2label = {0: "0", 1: "PERIOD", 2: "QUESTION"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(0)
    model = MistralForTokenClassification(config)
    with torch.no_grad():  # every token says "a sentence ends here"
        model.score.weight.zero_()
        model.score.bias = torch.nn.Parameter(torch.tensor([0.0, 5.0, 0.0]))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    punctuate = ModelPunctuator(tmp_path, ["Tim"])
    text = punctuate("so tim shame is not guilt")
    assert text == "So. Tim. Shame. Is. Not. Guilt."
    assert punctuate("Already punctuated. fine") == "Already punctuated. Fine."
    with pytest.raises(FileNotFoundError, match="punctuation model folder"):
        ModelPunctuator(tmp_path / "missing")
    assert re.fullmatch(r"[A-Z][a-z]*\.", "Tim.")
