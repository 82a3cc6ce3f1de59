"""Whole builds: the CLI and YAML, retrieval that answers what the client asked, risk disclosures,
an OpenAI-compatible server on 127.0.0.1 (one worker pool, refusals, auth errors, rewritten replies),
the tiny local model, an interrupted build resumed from its journal, and bad input."""

import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from openai_server import Call, OpenAIServer

from datamodules.voice.__main__ import main, parse_config
from datamodules.voice.build import VoiceBuildError, build
from datamodules.voice.clean import normalized_words
from datamodules.voice.clients import DISCLOSURES
from datamodules.voice.config import BuildConfig, OpenAISettings
from datamodules.voice.generators import GeneratorError
from datamodules.voice.ingest import read_transcripts
from datamodules.voice.journal import JournalMismatch
from datamodules.voice.risk import HELP, SAFE_REPLIES, risk_kind

SAMPLES = Path(__file__).parents[1] / "datamodules" / "voice" / "samples"
KEYS = {"messages", "domain", "lecture_id", "source", "mode"}
SECRET = "sk-test-secret-4242"


def flat(text: str) -> str:
    return " ".join(normalized_words(text))


def spoken(folder: Path = SAMPLES) -> dict[str, str]:
    transcripts, _ = read_transcripts(folder)
    return {t.lecture_id: flat(t.text) for t in transcripts}


def check_schema(conversations: list[dict], mode: str, turns: tuple[int, int], folder: Path = SAMPLES) -> None:
    """Stage-3 schema; every assistant turn is a verbatim span of its lecture, punctuated, or the
    safe reply to a disclosure (which ends the conversation)."""
    lectures = spoken(folder)
    for conversation in conversations:
        assert set(conversation) == KEYS
        assert conversation["source"] == "voice" and conversation["mode"] == mode
        roles = [m["role"] for m in conversation["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and turns[0] <= len(roles) <= turns[1]
        messages = conversation["messages"]
        for number, (client, reply) in enumerate(zip(messages[::2], messages[1::2]), 1):
            kind = risk_kind(client["content"])
            if kind:
                assert reply["content"] in SAFE_REPLIES[kind] and number == len(messages) // 2
                continue
            assert flat(reply["content"]) in lectures[conversation["lecture_id"]]
            assert reply["content"][0].isupper() and reply["content"][-1] in ".?!"


def test_offline_build_from_yaml_with_cli_override(tmp_path):
    config = tmp_path / "voice.yaml"
    out = tmp_path / "out" / "synthetic_conversations.json"
    config.write_text(
        yaml.safe_dump(
            {
                "transcripts": str(SAMPLES),
                "out": str(out),
                "speaker": "Someone Else",
                "mode": "offline",
                "heldout_lectures": ["healing-is-not-linear"],
                "domain": "psychology",
                "risk_example_share": 0.1,
            }
        )
    )
    stats = main(["build", "--config", str(config), "--speaker", "Tim Fletcher"])

    train = json.loads(out.read_text())
    heldout = json.loads((out.parent / "synthetic_conversations_heldout.json").read_text())
    check_schema(train + heldout, "offline", (2, 6))
    assert {c["lecture_id"] for c in heldout} == {"healing-is-not-linear"}
    assert "healing-is-not-linear" not in {c["lecture_id"] for c in train}
    assert {c["domain"] for c in train} == {"psychology"}
    assert len(train) >= 25  # lecture-length samples: dozens of conversations, not four
    assert max(len(c["messages"]) for c in train) >= 6  # multi-turn
    users = [m["content"] for c in train + heldout for m in c["messages"][::2]]
    assert len(set(users)) >= 0.9 * len(users)  # varied personas and openings
    assert any("Why do we say yes when everything inside us wants to say no?" in u for u in users)
    assert stats["risk"]["disclosures"] == stats["risk"]["answered_safely"] >= 1
    assert stats["conversations"]["train"] == len(train) and stats["conversations"]["heldout"] == len(heldout)
    assert stats["conversations"]["reply_words"]["max"] <= 150 + 40  # conversational, not a lecture
    saved = yaml.safe_load((out.parent / "synthetic_conversations_config.yaml").read_text())
    assert saved["speaker"] == "Tim Fletcher" and saved["domain"] == "psychology"
    profile = json.loads((out.parent / "synthetic_conversations_style_profile.json").read_text())
    assert profile["speaker"] == "Tim Fletcher" and profile["lectures"] == 4  # held-out lecture left out
    assert profile["lectures_detail"]["healing-is-not-linear"]["heldout"] is True

    again = main(["build", "--config", str(out.parent / "synthetic_conversations_config.yaml")])
    assert json.loads(out.read_text()) == train and again["generation"]["generated_now"] == 0


# One lecture, three topics in turn: each section is one passage (4 sentences, 64 words).
SECTIONS = {
    "shame": (
        "Shame is the feeling that I am bad, not that I did something bad, and it hides deep inside. "
        "Shame grows in families where mistakes were punished and where nobody ever repaired the hurt. "
        "A child who carries shame learns to hide, to perform, and to keep everyone at a distance. "
        "Healing shame starts when someone safe sees the hidden part of you and does not look away."
    ),
    "boundaries": (
        "Boundaries are the lines that tell other people where you end and where they begin in life. "
        "Many of us never learned boundaries because saying no at home was dangerous or was ignored. "
        "A healthy boundary sounds simple, like I can't stay late tonight, and it needs no long excuse. "
        "Guilt after setting boundaries is normal at first, and it fades as you keep practising them."
    ),
    "sleep": (
        "Sleep is often the first thing trauma steals, because a body on alert cannot rest at night. "
        "When you lie awake at three in the morning, your nervous system is scanning for old danger. "
        "Gentle routines help sleep: the same bedtime, dim lights, and a slow breath before lying down. "
        "Be patient with your sleep, since a body learns safety slowly, one quiet night after another."
    ),
}
QUESTIONS = {  # what the client asks when the seed passage is about the key's topic
    "shame": "I lie awake every night and my sleep is a mess. Why can't I rest at night?",
    "boundaries": "I feel this deep shame, like I am bad inside. Where does shame come from?",
    "sleep": "My boss keeps asking me to stay late and I never say no. How do I set boundaries?",
}
ASKED = {"shame": "sleep", "boundaries": "shame", "sleep": "boundaries"}


def topic_lecture(folder: Path) -> Path:
    folder.mkdir()
    (folder / "three-topics.txt").write_text("Title: Three topics\n" + " ".join(SECTIONS.values()))
    return folder


class ScriptedGenerator:
    """Client turns from a script: an opening about another topic than the seed's, then
    `follow_ups` in turn; can be told to die on its n-th call."""

    workers = 2

    def __init__(self, follow_ups=(), die_on_call=None, name="scripted"):
        self.calls = 0
        self.prompts: list[list[dict]] = []
        self.follow_ups = list(follow_ups)
        self.die_on_call = die_on_call
        self.name = name
        self.lock = threading.Lock()

    def identity(self) -> dict:
        return {"backend": self.name}

    def complete(self, prompt):
        with self.lock:
            self.calls += 1
            if self.calls == self.die_on_call:
                raise KeyboardInterrupt  # the build is killed mid-run
            self.prompts.append(prompt)
        text = prompt[1]["content"]
        if "Your conversation so far" in text:
            turn = text.count("\nYou: ")  # exchanges so far
            return self.follow_ups[(turn - 1) % len(self.follow_ups)]
        for topic, section in SECTIONS.items():
            if section in text:
                return QUESTIONS[topic]
        return f"What does it mean when I feel this way, case {abs(hash(text)) % 10**8}?"


def scripted_config(tmp_path, folder, mode="backtranslation", **overrides):
    settings = dict(
        transcripts=folder,
        out=tmp_path / "out" / "voice.json",
        speaker="Tim Fletcher",
        mode=mode,
        generator="openai",
        openai={"model": "unused"},
        min_words=60,
        max_words=70,
        reply_min_words=20,
        reply_max_words=64,
        heldout_fraction=0,
    )
    return BuildConfig(**{**settings, **overrides})


def test_a_question_about_x_is_answered_from_the_passage_about_x_not_the_next_chunk(tmp_path):
    folder = topic_lecture(tmp_path / "in")
    stats = build(scripted_config(tmp_path, folder), ScriptedGenerator())
    conversations = json.loads((tmp_path / "out" / "voice.json").read_text())
    check_schema(conversations, "backtranslation", (2, 2), folder)
    assert stats["units"] == len(conversations) == 3
    answered = set()
    for conversation in conversations:
        question, reply = (m["content"] for m in conversation["messages"])
        topic = next(t for t, q in QUESTIONS.items() if q == question)
        asked = ASKED[topic]  # the seed passage was about `topic`, the client asked about `asked`
        assert flat(reply) in flat(SECTIONS[asked]) and flat(reply) not in flat(SECTIONS[topic])
        answered.add(asked)
    assert answered == set(SECTIONS)


def test_later_turns_follow_from_earlier_ones_and_never_see_the_next_passage(tmp_path):
    folder = topic_lecture(tmp_path / "in")
    generator = ScriptedGenerator(follow_ups=["You said boundaries. How do I start setting boundaries?"])
    build(scripted_config(tmp_path, folder, "multiturn", passages_per_conversation=2), generator)
    conversations = json.loads((tmp_path / "out" / "voice.json").read_text())
    check_schema(conversations, "multiturn", (4, 4), folder)
    follow_ups = [p[1]["content"] for p in generator.prompts if "Your conversation so far" in p[1]["content"]]
    assert follow_ups
    for prompt in follow_ups:  # the conversation so far, and no passage it has not yet seen
        shown = [s for s in SECTIONS.values() if flat(s) in flat(prompt)]
        assert len(shown) <= 1
    for conversation in conversations:
        second = conversation["messages"][3]["content"]
        if flat(conversation["messages"][1]["content"]) not in flat(SECTIONS["boundaries"]):
            assert flat(second) in flat(SECTIONS["boundaries"])  # answered what was asked


def test_a_risk_disclosure_gets_a_safe_reply_never_a_lecture(tmp_path):
    folder = topic_lecture(tmp_path / "in")
    disclosure = "Honestly, lately I've been thinking about ending my life."
    stats = build(
        scripted_config(tmp_path, folder, "multiturn", passages_per_conversation=3),
        ScriptedGenerator(follow_ups=[disclosure]),
    )
    conversations = json.loads((tmp_path / "out" / "voice.json").read_text())
    check_schema(conversations, "multiturn", (4, 4), folder)  # ends at the disclosure
    lecture = flat(" ".join(SECTIONS.values()))
    for conversation in conversations:
        client, reply = (m["content"] for m in conversation["messages"][2:4])
        assert client == disclosure and HELP in reply and "988" in reply
        assert not any(flat(sentence) in lecture for sentence in reply.split(". ") if len(sentence) > 20)
    assert stats["risk"] == {
        "policy": "respond",
        "disclosures": 3,
        "by_kind": {"suicide": 3},
        "answered_safely": 3,
        "dropped": 0,
    }
    dropped = build(
        scripted_config(tmp_path, folder, "multiturn", out=tmp_path / "drop" / "voice.json", risk="drop"),
        ScriptedGenerator(follow_ups=["You said shame. Where does shame come from?", disclosure]),
    )
    assert dropped["risk"]["dropped"] == dropped["ended"]["risk_drop"] >= 2
    assert dropped["risk"]["answered_safely"] == 0
    for conversation in json.loads((tmp_path / "drop" / "voice.json").read_text()):
        assert disclosure not in [m["content"] for m in conversation["messages"]]
        assert not any(HELP in m["content"] for m in conversation["messages"])
    assert all(risk_kind(d) for d in DISCLOSURES)  # every offline disclosure is recognised


class FakeOpenAI:
    """Answers for the shared local server: fails the first request with 503, then answers with a
    numbered message; `refuse_every` answers every n-th request 400; tracks requests in flight."""

    fail_first = True
    down = False  # every request answers 503
    delay_first_s = 0.0  # the first request answers this late
    delay_s = 0.0
    status = 200
    refuse_every = 0
    rewrite_faithfully = True
    in_flight = 0
    max_in_flight = 0
    lock = threading.Lock()

    @staticmethod
    def answer(call: Call) -> tuple[int, str]:
        with FakeOpenAI.lock:
            FakeOpenAI.in_flight += 1
            FakeOpenAI.max_in_flight = max(FakeOpenAI.max_in_flight, FakeOpenAI.in_flight)
        try:
            if call.number == 1 and FakeOpenAI.delay_first_s:
                time.sleep(FakeOpenAI.delay_first_s)
            time.sleep(FakeOpenAI.delay_s)
            if FakeOpenAI.fail_first or FakeOpenAI.down:
                FakeOpenAI.fail_first = False
                return 503, ""
            if FakeOpenAI.status != 200:
                return FakeOpenAI.status, '{"error": "model not found"}'
            if FakeOpenAI.refuse_every and call.number % FakeOpenAI.refuse_every == 0:
                return 400, '{"error": "content filter"}'
            messages = call.body["messages"]
            if messages[0]["content"].startswith("You are Tim Fletcher"):  # reply: rewrite
                span = messages[1]["content"].split('"""')[1].strip()
                if FakeOpenAI.rewrite_faithfully:
                    return 200, "You know, " + span
                return 200, "Honestly, you should just try yoga and drink more water every morning."
            prompt = messages[1]["content"]
            # what the person struggles with: the two longest words of the passage shown, if any
            shown = prompt.split('"""')[1].split() if '"""' in prompt else []
            about = " and ".join(sorted(shown, key=lambda w: (-len(w), w))[:2]).strip(".,?!")
            return 200, f'"Client: I keep feeling like I am the problem, number {call.number}. Why is that, {about}?"'
        finally:
            with FakeOpenAI.lock:
                FakeOpenAI.in_flight -= 1


@pytest.fixture
def server(openai_server) -> OpenAIServer:
    FakeOpenAI.fail_first, FakeOpenAI.status, FakeOpenAI.refuse_every = True, 200, 0
    FakeOpenAI.down, FakeOpenAI.delay_first_s, FakeOpenAI.delay_s = False, 0.0, 0.0
    FakeOpenAI.rewrite_faithfully, FakeOpenAI.max_in_flight = True, 0
    return openai_server(FakeOpenAI.answer)


def openai_config(tmp_path, base_url, mode, **overrides) -> BuildConfig:
    settings = {
        "transcripts": SAMPLES,
        "out": tmp_path / "voice.json",
        "speaker": "Tim Fletcher",
        "mode": mode,
        "generator": "openai",
        "min_words": 200,
        "max_words": 400,
        "heldout_fraction": 0.25,
        "openai": OpenAISettings(
            base_url=base_url,
            model="test-model",
            api_key_env="VOICE_TEST_KEY",
            concurrency=4,
            backoff_s=0.01,
            timeout_s=10,
        ),
    }
    return BuildConfig(**{**settings, **overrides})


def test_backtranslation_against_a_local_openai_compatible_server(tmp_path, server, monkeypatch, caplog):
    monkeypatch.setenv("VOICE_TEST_KEY", SECRET)
    caplog.set_level("DEBUG")
    FakeOpenAI.delay_s = 0.05
    stats = build(openai_config(tmp_path, server.url, "backtranslation"))

    train = json.loads((tmp_path / "voice.json").read_text())
    heldout = json.loads((tmp_path / "voice_heldout.json").read_text())
    conversations = train + heldout
    check_schema(conversations, "backtranslation", (2, 2))
    assert len(server.calls) == stats["units"] + 1  # one retry after the 503
    # a message no passage answers (cosine below min_answer_score) gets no unrelated lecture
    assert len(conversations) + stats["ended"].get("unanswered", 0) == stats["units"]
    assert len(conversations) > 0 and len(heldout) >= 1
    assert 1 < FakeOpenAI.max_in_flight <= 4  # one pool, `concurrency` requests at a time
    assert {c.auth for c in server.calls} == {f"Bearer {SECRET}"}
    assert {c.path for c in server.calls} == {"/v1/chat/completions"}
    first = server.calls[1].body
    assert first["model"] == "test-model" and [m["role"] for m in first["messages"]] == ["system", "user"]
    assert "Write only the person's message" in first["messages"][0]["content"]
    systems = {c.body["messages"][0]["content"] for c in server.calls}
    assert len(systems) >= 4  # personas and styles vary
    users = [c["messages"][0]["content"] for c in conversations]
    assert all(u.startswith("I keep feeling like I am the problem, number ") for u in users)  # label gone
    assert len(set(users)) == len(users)
    for path in tmp_path.iterdir():
        assert SECRET not in path.read_text(), path
    assert SECRET not in caplog.text
    assert "VOICE_TEST_KEY" in (tmp_path / "voice_config.yaml").read_text()


def test_refused_items_are_counted_and_skipped_and_an_auth_error_stops_at_once(tmp_path, server, monkeypatch):
    monkeypatch.setenv("VOICE_TEST_KEY", SECRET)
    FakeOpenAI.fail_first, FakeOpenAI.refuse_every = False, 3
    stats = build(openai_config(tmp_path, server.url, "backtranslation", heldout_fraction=0))
    refused = sum(c.number % 3 == 0 for c in server.calls)
    assert stats["generation"]["refused"] == refused > 0
    assert stats["conversations"]["train"] == stats["units"] - refused
    assert build(openai_config(tmp_path, server.url, "backtranslation", heldout_fraction=0))["generation"][
        "generated_now"
    ] == 0  # a refused unit is journalled as refused, not asked again

    server.calls.clear()
    FakeOpenAI.status = 401
    with pytest.raises(GeneratorError, match="answered HTTP 401") as error:
        build(openai_config(tmp_path, server.url, "backtranslation", out=tmp_path / "again" / "v.json"))
    assert SECRET not in str(error.value)
    assert len(server.calls) <= 4 + 4  # the requests already in flight, nothing after them


def test_server_refusal_of_the_model_stops_with_the_status_and_no_key(tmp_path, server, monkeypatch):
    monkeypatch.setenv("VOICE_TEST_KEY", SECRET)
    FakeOpenAI.fail_first, FakeOpenAI.status = False, 404
    with pytest.raises(GeneratorError, match="answered HTTP 404: .*model not found") as error:
        build(openai_config(tmp_path, server.url, "backtranslation"))
    assert SECRET not in str(error.value)


def test_rewritten_replies_are_kept_only_when_faithful_to_their_span(tmp_path, server, monkeypatch):
    monkeypatch.setenv("VOICE_TEST_KEY", SECRET)
    FakeOpenAI.fail_first = False
    config = openai_config(tmp_path, server.url, "backtranslation", reply="rewrite", heldout_fraction=0)
    faithful = build(config)
    conversations = json.loads(config.out.read_text())
    assert len(conversations) == faithful["units"] and faithful["filters"]["exchanges_dropped"] == {}
    assert all(c["messages"][1]["content"].startswith("You know, ") for c in conversations)
    FakeOpenAI.rewrite_faithfully = False
    with pytest.raises(VoiceBuildError, match="no training conversation"):
        build(openai_config(tmp_path, server.url, "backtranslation", reply="rewrite", out=tmp_path / "u" / "v.json"))
    stats = json.loads((tmp_path / "u" / "v_stats.json").read_text())
    assert stats["filters"]["exchanges_dropped"] == {"unfaithful": stats["units"]}


def test_timeouts_and_exhausted_retries_leave_units_for_the_next_run(tmp_path, server, monkeypatch):
    monkeypatch.setenv("VOICE_TEST_KEY", SECRET)
    FakeOpenAI.fail_first, FakeOpenAI.down = False, True
    config = openai_config(tmp_path, server.url, "backtranslation", min_words=300, max_words=600)
    config.openai.max_retries = 1
    with pytest.raises(VoiceBuildError, match="generation failed for"):
        build(config)
    down = json.loads(config.beside_out("stats.json").read_text())
    assert down["generation"] == {
        "generated_now": 0,
        "reused_from_journal": 0,
        "failed": down["units"],
        "refused": 0,
        "journal_torn_lines": 0,
    }
    assert len(server.calls) == 2 * down["units"] and json.loads(config.out.read_text()) == []

    server.calls.clear()
    FakeOpenAI.down, FakeOpenAI.delay_first_s = False, 3.0
    config.openai.timeout_s = 1.0
    up = build(config)
    assert up["generation"]["generated_now"] == up["units"] == down["units"]
    slow = server.calls[0].body
    assert sum(c.body == slow for c in server.calls) == 2  # the timed-out request was sent again


def test_tiny_local_model_writes_gibberish_and_the_filters_count_it(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "people-pleasing.srt").write_bytes((SAMPLES / "people-pleasing.srt").read_bytes())
    config = BuildConfig(
        transcripts=tmp_path / "in",
        out=tmp_path / "voice.json",
        speaker="Tim Fletcher",
        mode="backtranslation",
        generator="local",
        min_words=200,
        max_words=400,
        local={"model": "tiny", "max_new_tokens": 8},
    )
    with pytest.raises(VoiceBuildError, match="no training conversation"):
        build(config)
    stats = json.loads(config.beside_out("stats.json").read_text())
    dropped = stats["filters"]["conversations_dropped"]
    assert stats["generation"]["generated_now"] == stats["units"] == sum(dropped.values()) + stats["ended"].get(
        "unanswered", 0
    ) > 0
    assert set(dropped) <= {"client_not_text", "client_length", "duplicate_client"}
    journal = (tmp_path / "voice_journal.jsonl").read_text().splitlines()
    assert json.loads(journal[0])["header"]["generator"]["backend"] == "local"
    assert len(journal) == 1 + stats["units"]


def test_interrupted_build_resumes_without_duplicates_or_regeneration(tmp_path):
    config = BuildConfig(
        transcripts=SAMPLES,
        out=tmp_path / "voice.json",
        speaker="Tim Fletcher",
        mode="backtranslation",
        generator="openai",
        openai={"model": "unused"},
        batch_size=2,
    )
    killer = ScriptedGenerator(die_on_call=5)
    killer.workers = 1
    with pytest.raises(KeyboardInterrupt):
        build(config, killer)
    journal = tmp_path / "voice_journal.jsonl"
    assert len(journal.read_text().splitlines()) == 1 + 4  # the four finished before the kill
    assert not (tmp_path / "voice.json").exists()
    with journal.open("a") as handle:
        handle.write('{"key": "torn mid-wri')  # killed while writing a line

    resumed = ScriptedGenerator()
    stats = build(config, resumed)
    assert stats["generation"] == {
        "reused_from_journal": 4,
        "generated_now": stats["units"] - 4,
        "failed": 0,
        "refused": 0,
        "journal_torn_lines": 1,
    }
    assert resumed.calls == stats["units"] - 4
    conversations = json.loads((tmp_path / "voice.json").read_text())
    conversations += json.loads((tmp_path / "voice_heldout.json").read_text())
    clients = [c["messages"][0]["content"] for c in conversations]
    written = stats["units"] - stats["ended"].get("unanswered", 0)
    # one generic question gets the same span everywhere: past its second use the filter drops it
    assert len(clients) == len(set(clients)) == written - stats["filters"]["conversations_dropped"]["span_reused"] > 0

    fresh = tmp_path / "fresh"
    fresh_stats = build(BuildConfig(**{**config.__dict__, "out": fresh / "voice.json"}), ScriptedGenerator())
    assert fresh_stats["conversations"] == stats["conversations"]  # resumed == uninterrupted

    third = ScriptedGenerator()
    build(config, third)
    assert third.calls == 0
    with pytest.raises(JournalMismatch, match="delete it to start over"):
        build(config, ScriptedGenerator(name="another"))


def test_bad_settings_stop_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="mode backtranslation needs a generator"):
        BuildConfig(transcripts=SAMPLES, out=tmp_path / "v.json", speaker="Tim", mode="backtranslation")
    with pytest.raises(ValueError, match="reply rewrite needs a generator"):
        BuildConfig(transcripts=SAMPLES, out=tmp_path / "v.json", speaker="Tim", reply="rewrite")
    with pytest.raises(FileNotFoundError, match="transcripts folder .*missing.* does not exist"):
        build(BuildConfig(transcripts=tmp_path / "missing", out=tmp_path / "v.json", speaker="Tim"))
    with pytest.raises(FileNotFoundError, match="local.model folder"):
        build(
            BuildConfig(
                transcripts=SAMPLES,
                out=tmp_path / "v.json",
                speaker="Tim",
                mode="multiturn",
                generator="local",
                local={"model": str(tmp_path / "no-model")},
            )
        )
    with pytest.raises(ValueError, match=r"heldout_lectures \['nope'\] are not among"):
        build(
            BuildConfig(
                transcripts=SAMPLES, out=tmp_path / "v.json", speaker="Tim", heldout_lectures=["nope"]
            )
        )


def test_bad_files_are_listed_and_zero_conversations_exits_non_zero(tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "empty.txt").write_text("")
    (junk / "binary.srt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (junk / "music.vtt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n[Music]\n")
    with pytest.raises(SystemExit) as exit_:
        main(["build", "--transcripts", str(junk), "--out", str(tmp_path / "v.json"), "--speaker", "Tim"])
    assert exit_.value.code == 1
    error = capsys.readouterr().err
    assert "no readable transcript" in error and "'empty': 1" in error and "'binary': 1" in error
    assert "'no speech': 1" in error

    (junk / "talk.txt").write_text("A short talk. Far too short to make a passage from.")
    with pytest.raises(SystemExit):
        main(["build", "--transcripts", str(junk), "--out", str(tmp_path / "v.json"), "--speaker", "Tim"])
    assert "no passage of 150+ words in 1 lecture(s)" in capsys.readouterr().err

    (junk / "talk.txt").write_bytes((SAMPLES / "healing-is-not-linear.txt").read_bytes())
    out = tmp_path / "ok" / "v.json"
    stats = main(["build", "--transcripts", str(junk), "--out", str(out), "--speaker", "Tim"])
    listing = {Path(row["path"]).name: (row["status"], row["reason"]) for row in stats["files"]["listing"]}
    assert listing == {
        "empty.txt": ("skipped", "empty"),
        "binary.srt": ("skipped", "binary"),
        "music.vtt": ("skipped", "no speech"),
        "talk.txt": ("read", ""),
    }
    saved = json.loads((tmp_path / "ok" / "v_stats.json").read_text())
    assert saved["files"]["listing"] == stats["files"]["listing"]


def test_stage_3_reader_takes_the_output_as_it_is(tmp_path):
    """The registry's `voice` entry (data-read) reads what a build writes: contract check."""
    from datamodules.registry import load_registry
    from datamodules.sources import ReadOptions, read_sources

    build(BuildConfig(transcripts=SAMPLES, out=tmp_path / "voice.json", speaker="Tim Fletcher", heldout_fraction=0))
    written = json.loads((tmp_path / "voice.json").read_text())
    spec = load_registry({"voice": {"root": str(tmp_path), "path": "voice.json"}})["voice"]
    domains = ("psychology", "mental_health", "bias_detection", "general_therapeutic")
    result = read_sources({"voice": spec}, tmp_path, ReadOptions(expert_domains=domains, progress=False))
    assert result.report["voice"].kept == len(written) > 0 and not result.report["voice"].skipped
    assert {c.group for c in result.conversations} == {f"voice:{c['lecture_id']}" for c in written}
    assert {c.domain for c in result.conversations} == {"mental_health"}
    assert [list(c.messages) for c in result.conversations] == [c["messages"] for c in written]


def test_shipped_yaml_is_a_valid_build_config():
    shipped = Path(__file__).parents[1] / "datamodules" / "voice" / "voice.yaml"
    config = parse_config(["build", "--config", str(shipped), "--openai.concurrency", "16"])
    assert (config.mode, config.generator, config.openai.concurrency) == ("multiturn", "openai", 16)
    assert config.out.name == "synthetic_conversations.json"
