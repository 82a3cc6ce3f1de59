"""Replies that answer the person in his voice (scripted generator and judge on a local
OpenAI-compatible server), judged by claims and curated; offline spans that stand alone and are
reused at most twice; boilerplate and openings stripped; client-turn checks; --local.model smollm2."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from datamodules.voice.__main__ import parse_config
from datamodules.voice.boilerplate import strip_boilerplate
from datamodules.voice.build import build, check_model_paths
from datamodules.voice.clean import normalized_words
from datamodules.voice.client_checks import client_problem
from datamodules.voice.config import BuildConfig, JudgeEndpoint, OpenAISettings
from datamodules.voice.punctuate import split_sentences
from datamodules.voice.retrieve import GENERIC
from datamodules.voice.spans import ends_cleanly, is_opening, starts_cleanly

SAMPLES = Path(__file__).parents[1] / "datamodules" / "voice" / "samples"
ACK = "That sounds really hard, and I'm glad you asked."
CLAIM = "Studies show that nine in ten people heal within six weeks."


def flat(text: str) -> str:
    return " ".join(normalized_words(text))


def term_of(passage: str) -> str:
    """The passage's most frequent long word: what the scripted client asks about."""
    counts = Counter(
        w for w in normalized_words(passage) if len(w) >= 7 and "'" not in w and w not in ENGLISH_STOP_WORDS | GENERIC
    )
    return sorted(counts, key=lambda w: (-counts[w], w))[0]


class Scripted:
    """One server for the generator (client turns, replies) and the judge (risk, claims, curation)."""

    def __init__(self):
        self.claims_added = 0
        self.rewrite_prompts: list[list[dict]] = []

    def answer(self, call) -> tuple[int, str]:
        messages = call.body["messages"]
        system, user = messages[0]["content"], messages[-1]["content"]
        if system.startswith("You screen messages"):
            return 200, json.dumps({"rationale": "Ordinary question.", "discloses": "no", "kind": 0})
        if system.startswith("You check a reply"):
            unsupported = CLAIM in user.split("Reply to rate:")[1]
            return 200, json.dumps({"rationale": "Claims checked.", "unsupported": "yes" if unsupported else "no",
                                    "answers": "yes"})
        if system.startswith("You curate"):
            client = user.split("Reply to rate:")[0].rsplit("Help-seeker:", 1)[1]
            low = "lately" in client
            scores = {"client_realistic": 2 if low else 5, "answers": 5, "sounds_like_him": 4, "safe": 5}
            return 200, json.dumps({"rationale": "Scored.", **scores})
        passage = user.split('"""')[1].strip()
        if system.startswith("You are Tim Fletcher"):  # the reply
            self.rewrite_prompts.append(messages)
            asked = {w for w in normalized_words(user.rsplit("Person:", 1)[1]) if len(w) >= 7}
            about = [s for s in split_sentences(passage) if asked & set(normalized_words(s))]
            explained = " ".join(about[:3] or split_sentences(passage)[:2])
            if len(passage) % 2:
                self.claims_added += 1
                return 200, f"{ACK} {explained} {CLAIM}"
            return 200, f"{ACK} {explained}"
        term = term_of(passage)
        when = "lately" if len(passage) % 3 == 0 else "again"
        return 200, f"I'm a nurse and {term} is on my mind {when}. What is {term}?"


def generated_config(tmp_path: Path, url: str, **overrides) -> BuildConfig:
    settings = dict(
        transcripts=SAMPLES,
        out=tmp_path / "voice.json",
        speaker="Tim Fletcher",
        mode="backtranslation",
        generator="openai",
        reply="rewrite",
        min_words=150,
        heldout_fraction=0,
        openai=OpenAISettings(base_url=url, model="writer-model", api_key_env="", concurrency=4, backoff_s=0.01),
        judge=JudgeEndpoint(base_url=url, model="judge-model", api_key_env="", concurrency=4, backoff_s=0.01),
    )
    return BuildConfig(**{**settings, **overrides})


def test_a_client_turn_about_x_gets_a_reply_that_acknowledges_it_and_explains_x_from_the_passage(
    tmp_path, openai_server
):
    script = Scripted()
    server = openai_server(script.answer)
    stats = build(generated_config(tmp_path, server.url))
    conversations = json.loads((tmp_path / "voice.json").read_text())
    assert conversations
    for conversation in conversations:
        client, reply = (m["content"] for m in conversation["messages"][:2])
        term = re.search(r"and (\w+) is on my mind", client).group(1)
        assert reply.startswith(ACK)  # acknowledges the person...
        assert term in flat(reply)  # ...and explains what was asked, from the passage about it
    # the writer saw the conversation, the passage and his style card
    system, user = (m["content"] for m in script.rewrite_prompts[0])
    assert "Your style:" in system and "Phrases he returns to" in system
    assert "Person: I'm a nurse" in user and '"""' in user
    # judged by claims: the replies that added one are dropped, the acknowledgements are kept
    dropped = stats["filters"]["exchanges_dropped"]
    assert script.claims_added > 0 and dropped["unsupported_claim"] == script.claims_added
    assert not any(CLAIM in m["content"] for c in conversations for m in c["messages"])
    assert "unfaithful" not in dropped  # the lexical tripwire lets an acknowledgement through
    # curation: every exchange scored, only the well-scored kept, with a histogram
    curation = stats["curation"]
    assert curation["judged_exchanges"] == stats["units"]
    assert sum(curation["histograms"]["client_realistic"].values()) == curation["judged_exchanges"]
    assert curation["lowest_score_histogram"]["2"] > 0 and dropped.get("curation", 0) > 0
    assert curation["kept_share"] == round(1 - dropped["curation"] / curation["judged_exchanges"], 4)
    assert not any("lately" in c["messages"][0]["content"] for c in conversations)
    assert stats["purpose"].startswith("stage-3 voice data")
    # client turns are asked for in many personas and ways of writing
    systems = [c.body["messages"][0]["content"] for c in server.calls]
    writers = [text for text in systems if text.startswith("You write realistic messages")]
    for way in ("sceptical", "under 15 words", "text message", "spelling mistakes"):
        assert any(way in text for text in writers), way
    assert len({text.split(" You are ")[1].split(".")[0] for text in writers}) >= 10


def test_offline_spans_stand_alone_and_are_reused_at_most_twice(tmp_path):
    config = BuildConfig(transcripts=SAMPLES, out=tmp_path / "v.json", speaker="Tim Fletcher", heldout_fraction=0,
                         min_words=150, passages_per_conversation=4)
    stats = build(config)
    assert stats["purpose"].startswith("plumbing-test data") and "not a voice corpus" in stats["purpose"]
    conversations = json.loads(config.out.read_text())
    uses: Counter = Counter()
    for conversation in conversations:
        for message in conversation["messages"][1::2]:
            if "findahelpline" in message["content"]:
                continue
            sentences = split_sentences(message["content"])
            assert starts_cleanly(sentences[0]) and ends_cleanly(sentences[-1])
            assert not any(is_opening(s) for s in sentences)
            for sentence in set(sentences):
                uses[(conversation["lecture_id"], flat(sentence))] += 1
    assert max(uses.values()) <= 2
    assert stats["spans"]["most_conversations_per_span"] <= 2


def test_boilerplate_and_openings_are_stripped_before_chunking(tmp_path):
    opening = "Hi everyone, welcome back to the channel. Today I want to talk about shame and the inner critic."
    body = " ".join(
        f"Shame tells you that you are the problem, not that you made a mistake, number {n}." for n in range(40)
    )
    tail = "If this helped, subscribe and hit the bell. The link to my course is in the description below."
    text, removed = strip_boilerplate(f"{opening} {body} In this video we looked at shame. {tail}")
    assert removed == 5 and text.startswith("Shame tells you") and "subscribe" not in text
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "shame.txt").write_text(f"{opening} {body} {tail}")
    (folder / "other.txt").write_text(body.replace("Shame", "Guilt"))
    config = BuildConfig(transcripts=folder, out=tmp_path / "v.json", speaker="Tim Fletcher", heldout_fraction=0,
                         min_words=60, max_words=150)
    stats = build(config)
    assert stats["punctuation"]["boilerplate_sentences_removed"] == 4
    assert stats["punctuation"]["rule_share"] == 0 and stats["punctuation"]["warning"] is None
    replies = " ".join(m["content"] for c in json.loads(config.out.read_text()) for m in c["messages"][1::2])
    assert "subscribe" not in replies and "welcome back" not in replies.lower()


def test_rule_punctuated_lectures_are_counted_and_warned_about(tmp_path, caplog):
    folder = tmp_path / "t"
    folder.mkdir()
    words = "so what happens is the child learns that love has to be earned and that becomes the way they see themselves "
    (folder / "captions.txt").write_text(words * 30)
    (folder / "other.txt").write_text(words.replace("child", "adult") * 30)
    config = BuildConfig(transcripts=folder, out=tmp_path / "v.json", speaker="Tim Fletcher", heldout_fraction=0,
                         min_words=60, max_words=150)
    try:
        build(config)
    except ValueError:
        pass  # how many conversations does not matter here
    stats = json.loads((tmp_path / "v_stats.json").read_text())
    assert stats["punctuation"]["by_rules"] == 2 and stats["punctuation"]["rule_share"] == 1.0
    assert "punctuated by rules" in stats["punctuation"]["warning"]
    assert "punctuated by rules" in caplog.text


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Sure! Here's a realistic message: I keep apologising for everything.", "preamble"),
        ("Here is a possible first message from the client. I feel empty.", "preamble"),
        ("It's important to remember that healing takes time, and you're not alone.", "assistant_speak"),
        ("I'm sorry, but I can't help with writing that message.", "refusal"),
        ("As Tim Fletcher explains in his video, shame runs deep. Why is that?", "mentions_source"),
        ("In your lecture you said shame is different from guilt. How?", "mentions_source"),
        ("I keep apologising for everything and I think it started when my", "truncated"),
        ("My dad used to say I was too sensitive, and now I", "truncated"),
        ("how do i stop being a doormat at work lol", None),
        ("ok but why do i freeze when my boss walks in", None),
        ("I'm sceptical. Isn't this just blaming parents for everything?", None),
    ],
)
def test_each_client_turn_check(text, reason):
    assert client_problem(text, "Tim Fletcher") == reason


def test_client_turn_checks_are_counted_by_reason_in_a_build(tmp_path, openai_server):
    bad = [
        "Sure! Here's a realistic message: I feel like a burden.",
        "As Tim Fletcher says in the video, I should set boundaries. How?",
        "I'm sorry, but I cannot write that message.",
        "It's important to remember that you're not alone in this.",
        "I have always felt like the problem in my family and",
    ]

    def answer(call):
        return 200, bad[(call.number - 1) % len(bad)]

    server = openai_server(answer)
    config = generated_config(tmp_path, server.url, reply="verbatim", judge=JudgeEndpoint())
    with pytest.raises(ValueError):
        build(config)  # every client turn is dropped
    stats = json.loads((tmp_path / "voice_stats.json").read_text())
    dropped = stats["filters"]["exchanges_dropped"]
    assert set(dropped) == {"preamble", "mentions_source", "refusal", "assistant_speak", "truncated"}
    assert sum(dropped.values()) == stats["units"] - stats["ended"].get("unanswered", 0)


def test_local_model_smollm2_is_accepted_like_every_other_command(tmp_path):
    config = parse_config(
        ["build", "--transcripts", str(SAMPLES), "--out", str(tmp_path / "v.json"), "--speaker", "Tim Fletcher",
         "--mode", "backtranslation", "--generator", "local", "--local.model", "smollm2"]
    )
    assert config.local.model == "smollm2"
    check_model_paths(config)  # no error: a built-in name, not a folder
    config.local.model = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="`tiny` or `smollm2`"):
        check_model_paths(config)
