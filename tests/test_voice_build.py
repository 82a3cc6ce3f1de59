"""Whole builds: the CLI and YAML, an OpenAI-compatible server on 127.0.0.1, the tiny local model,
and an interrupted build resumed from its journal."""

import json
import time
from pathlib import Path

import pytest
import yaml
from openai_server import Call, OpenAIServer

from datamodules.voice.__main__ import main, parse_config
from datamodules.voice.build import build
from datamodules.voice.clean import normalized_words
from datamodules.voice.config import BuildConfig, OpenAISettings
from datamodules.voice.generators import GeneratorError
from datamodules.voice.ingest import read_transcripts
from datamodules.voice.journal import JournalMismatch

SAMPLES = Path(__file__).parents[1] / "datamodules" / "voice" / "samples"
KEYS = {"messages", "domain", "lecture_id", "source", "mode"}
SECRET = "sk-test-secret-4242"


def spoken(lecture_id: str) -> str:
    transcripts, _ = read_transcripts(SAMPLES)
    return " ".join(normalized_words(next(t.text for t in transcripts if t.lecture_id == lecture_id)))


def check_schema(conversations: list[dict], mode: str, turns: tuple[int, int]) -> None:
    """Stage-3 schema; every assistant turn is a verbatim span of its lecture, punctuated."""
    for conversation in conversations:
        assert set(conversation) == KEYS
        assert conversation["source"] == "voice" and conversation["mode"] == mode
        roles = [m["role"] for m in conversation["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and turns[0] <= len(roles) <= turns[1]
        for message in conversation["messages"][1::2]:
            assert " ".join(normalized_words(message["content"])) in spoken(conversation["lecture_id"])
            assert message["content"][0].isupper() and message["content"][-1] in ".?!"


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
                "min_words": 30,
                "max_words": 120,
                "heldout_lectures": ["healing-is-not-linear"],
                "domain": "psychology",
            }
        )
    )
    stats = main(["build", "--config", str(config), "--speaker", "Tim Fletcher"])

    train = json.loads(out.read_text())
    heldout = json.loads((out.parent / "synthetic_conversations_heldout.json").read_text())
    check_schema(train + heldout, "offline", (2, 2))
    assert {c["lecture_id"] for c in heldout} == {"healing-is-not-linear"}
    assert "healing-is-not-linear" not in {c["lecture_id"] for c in train}
    assert {c["domain"] for c in train} == {"psychology"}
    users = [c["messages"][0]["content"] for c in train + heldout]
    assert "Why do we say yes when everything inside us wants to say no?" in users
    assert all(u.endswith("?") for u in users)
    assert stats["conversations"] == {
        "train": len(train),
        "heldout": len(heldout),
        "turns": {"count": len(users), "mean": 2.0, "min": 2, "max": 2},
    }
    saved = yaml.safe_load((out.parent / "synthetic_conversations_config.yaml").read_text())
    assert saved["speaker"] == "Tim Fletcher" and saved["domain"] == "psychology"
    profile = json.loads((out.parent / "synthetic_conversations_style_profile.json").read_text())
    assert profile["speaker"] == "Tim Fletcher" and profile["lectures"] == 3  # held-out lecture left out
    assert profile["lectures_detail"]["healing-is-not-linear"]["heldout"] is True

    again = main(["build", "--config", str(out.parent / "synthetic_conversations_config.yaml")])
    assert json.loads(out.read_text()) == train and again["generation"]["generated_now"] == 0


class FakeOpenAI:
    """Answers for the shared local server: fails the first request with 503, then answers with a
    numbered message."""

    fail_first = True
    down = False  # every request answers 503
    delay_first_s = 0.0  # the first request answers this late
    status = 200

    @staticmethod
    def answer(call: Call) -> tuple[int, str]:
        if call.number == 1 and FakeOpenAI.delay_first_s:
            time.sleep(FakeOpenAI.delay_first_s)
        if FakeOpenAI.fail_first or FakeOpenAI.down:
            FakeOpenAI.fail_first = False
            return 503, ""
        if FakeOpenAI.status != 200:
            return FakeOpenAI.status, '{"error": "model not found"}'
        return 200, f'"Client: I keep feeling like I am the problem, number {call.number}. Why is that?"'


@pytest.fixture
def server(openai_server) -> OpenAIServer:
    FakeOpenAI.fail_first, FakeOpenAI.status = True, 200
    FakeOpenAI.down, FakeOpenAI.delay_first_s = False, 0.0
    return openai_server(FakeOpenAI.answer)


def openai_config(tmp_path, base_url, mode, **overrides) -> BuildConfig:
    settings = {
        "transcripts": SAMPLES,
        "out": tmp_path / "voice.json",
        "speaker": "Tim Fletcher",
        "mode": mode,
        "generator": "openai",
        "min_words": 40,
        "max_words": 120,
        "heldout_fraction": 0.25,
        "openai": OpenAISettings(
            base_url=base_url,
            model="test-model",
            api_key_env="VOICE_TEST_KEY",
            concurrency=3,
            backoff_s=0.01,
            timeout_s=10,
        ),
    }
    return BuildConfig(**{**settings, **overrides})


def test_backtranslation_against_a_local_openai_compatible_server(tmp_path, server, monkeypatch, caplog):
    monkeypatch.setenv("VOICE_TEST_KEY", SECRET)
    caplog.set_level("DEBUG")
    stats = build(openai_config(tmp_path, server.url, "backtranslation"))

    train = json.loads((tmp_path / "voice.json").read_text())
    heldout = json.loads((tmp_path / "voice_heldout.json").read_text())
    conversations = train + heldout
    check_schema(conversations, "backtranslation", (2, 2))
    assert len(server.calls) == stats["units"] + 1  # one retry after the 503
    assert len(conversations) == stats["units"] and len(heldout) >= 1
    assert {c.auth for c in server.calls} == {f"Bearer {SECRET}"}
    assert {c.path for c in server.calls} == {"/v1/chat/completions"}
    first = server.calls[1].body
    assert first["model"] == "test-model" and [m["role"] for m in first["messages"]] == ["system", "user"]
    assert "Write only the person's message" in first["messages"][0]["content"]
    # the generator sees the speaker's passage and writes only what it answers
    passages = {c["messages"][1]["content"] for c in conversations}
    assert any(p in first["messages"][1]["content"] for p in passages)
    users = [c["messages"][0]["content"] for c in conversations]
    assert all(
        u.startswith("I keep feeling like I am the problem, number ") for u in users
    )  # label, quotes gone
    assert len(set(users)) == len(users)
    for path in tmp_path.iterdir():
        assert SECRET not in path.read_text(), path
    assert SECRET not in caplog.text
    assert "VOICE_TEST_KEY" in (tmp_path / "voice_config.yaml").read_text()


def test_multiturn_conversations_follow_one_lecture(tmp_path, server, monkeypatch):
    monkeypatch.setenv("VOICE_TEST_KEY", SECRET)
    stats = build(
        openai_config(tmp_path, server.url, "multiturn", passages_per_conversation=2, heldout_fraction=0)
    )
    conversations = json.loads((tmp_path / "voice.json").read_text())
    check_schema(conversations, "multiturn", (4, 10))
    assert len(conversations) == stats["units"] >= 4
    transcript = spoken("shame-and-the-inner-critic")
    for conversation in conversations:
        if conversation["lecture_id"] == "shame-and-the-inner-critic":
            assistant = [" ".join(normalized_words(m["content"])) for m in conversation["messages"][1::2]]
            assert transcript.index(assistant[0]) < transcript.index(assistant[1])  # in lecture order
    follow_up = {  # a set: the request answered 503 was sent again
        c.body["messages"][1]["content"]
        for c in server.calls
        if "has just said" in c.body["messages"][1]["content"]
    }
    assert len(follow_up) == sum(len(c["messages"]) // 2 - 1 for c in conversations)


def test_timeouts_and_exhausted_retries_leave_units_for_the_next_run(tmp_path, server, monkeypatch):
    monkeypatch.setenv("VOICE_TEST_KEY", SECRET)
    FakeOpenAI.fail_first, FakeOpenAI.down = False, True
    config = openai_config(tmp_path, server.url, "backtranslation", min_words=100, max_words=200)
    config.openai.max_retries = 1
    down = build(config)
    assert down["generation"] == {
        "generated_now": 0,
        "reused_from_journal": 0,
        "failed": down["units"],
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


def test_server_refusal_stops_with_the_status_and_no_key(tmp_path, server, monkeypatch):
    monkeypatch.setenv("VOICE_TEST_KEY", SECRET)
    FakeOpenAI.fail_first, FakeOpenAI.status = False, 404
    with pytest.raises(GeneratorError, match="answered HTTP 404: .*model not found") as error:
        build(openai_config(tmp_path, server.url, "backtranslation"))
    assert SECRET not in str(error.value)


def test_tiny_local_model_writes_gibberish_and_the_filters_count_it(tmp_path):
    (tmp_path / "in").mkdir()
    for name in ("people-pleasing.srt", "attachment-and-safety.json"):  # few units: CPU generation is slow
        (tmp_path / "in" / name).write_bytes((SAMPLES / name).read_bytes())
    config = BuildConfig(
        transcripts=tmp_path / "in",
        out=tmp_path / "voice.json",
        speaker="Tim Fletcher",
        mode="backtranslation",
        generator="local",
        min_words=100,
        max_words=200,
        local={"model": "tiny", "max_new_tokens": 8, "batch_size": 8},
    )
    stats = build(config)
    dropped = stats["filters"]["conversations_dropped"]
    kept = stats["conversations"]["train"] + stats["conversations"]["heldout"]
    assert stats["generation"]["generated_now"] == stats["units"] > 0
    assert kept + sum(dropped.values()) == stats["units"] and sum(dropped.values()) > 0
    assert set(dropped) <= {"client_not_text", "client_length", "duplicate_client"}
    journal = (tmp_path / "voice_journal.jsonl").read_text().splitlines()
    assert json.loads(journal[0])["header"]["generator"]["backend"] == "local"
    assert len(journal) == 1 + stats["units"]


class ScriptedGenerator:
    """Writes a distinct client message per prompt; can be told to die on its n-th call."""

    def __init__(self, die_on_call: int | None = None, name: str = "scripted"):
        self.calls = 0
        self.prompts = 0
        self.die_on_call = die_on_call
        self.name = name

    def identity(self) -> dict:
        return {"backend": self.name}

    def generate(self, prompts):
        self.calls += 1
        if self.calls == self.die_on_call:
            raise KeyboardInterrupt  # the build is killed mid-run
        self.prompts += len(prompts)
        return [
            f"What does it mean when I feel this way, case {hash(p[1]['content']) % 10**8}?" for p in prompts
        ]


def test_interrupted_build_resumes_without_duplicates_or_regeneration(tmp_path):
    config = BuildConfig(
        transcripts=SAMPLES,
        out=tmp_path / "voice.json",
        speaker="Tim Fletcher",
        mode="backtranslation",
        generator="openai",
        openai={"model": "unused"},
        min_words=40,
        max_words=120,
        batch_size=2,
    )
    with pytest.raises(KeyboardInterrupt):
        build(config, ScriptedGenerator(die_on_call=3))
    journal = tmp_path / "voice_journal.jsonl"
    assert len(journal.read_text().splitlines()) == 1 + 4  # two rounds of two finished
    assert not (tmp_path / "voice.json").exists()
    with journal.open("a") as handle:
        handle.write('{"key": "torn mid-wri')  # killed while writing a line

    resumed = ScriptedGenerator()
    stats = build(config, resumed)
    assert stats["generation"] == {
        "generated_now": stats["units"] - 4,
        "reused_from_journal": 4,
        "failed": 0,
        "journal_torn_lines": 1,
    }
    assert resumed.prompts == stats["units"] - 4
    conversations = json.loads((tmp_path / "voice.json").read_text())
    conversations += json.loads((tmp_path / "voice_heldout.json").read_text())
    assistants = [c["messages"][1]["content"] for c in conversations]
    assert len(assistants) == len(set(assistants)) == stats["units"]

    fresh = tmp_path / "fresh"
    fresh_stats = build(BuildConfig(**{**config.__dict__, "out": fresh / "voice.json"}), ScriptedGenerator())
    assert fresh_stats["conversations"] == stats["conversations"]  # resumed == uninterrupted

    third = ScriptedGenerator()
    build(config, third)
    assert third.prompts == 0
    with pytest.raises(JournalMismatch, match="delete it to start over"):
        build(config, ScriptedGenerator(name="another"))


def test_bad_settings_stop_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="mode backtranslation needs a generator"):
        BuildConfig(transcripts=SAMPLES, out=tmp_path / "v.json", speaker="Tim", mode="backtranslation")
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
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="no readable transcript .*'empty': 1"):
        build(BuildConfig(transcripts=tmp_path / "junk", out=tmp_path / "v.json", speaker="Tim"))


def test_stage_3_reader_takes_the_output_as_it_is(tmp_path):
    """The registry's `voice` entry (data-read) reads what a build writes: contract check."""
    from datamodules.registry import load_registry
    from datamodules.sources import ReadOptions, read_sources

    build(
        BuildConfig(
            transcripts=SAMPLES,
            out=tmp_path / "voice.json",
            speaker="Tim Fletcher",
            min_words=40,
            max_words=150,
            heldout_fraction=0,
        )
    )
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
