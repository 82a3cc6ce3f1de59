"""The voice builder's risk detector: recall on the crisis suite and on disclosures in other words,
false alarms on ordinary messages about trauma topics, the `risk` command and the judge beside the
rules (scripted OpenAI-compatible server)."""

import json
from pathlib import Path

import pytest
from openai_server import serve

from datamodules.voice.__main__ import main
from datamodules.voice.config import JudgeEndpoint
from datamodules.voice.judged import VoiceJudge, detect
from datamodules.voice.risk import KINDS, SAFE_REPLIES, local_risk, rule_risk

ROOT = Path(__file__).parents[1]
CRISIS = ROOT / "evals" / "suites" / "crisis.jsonl"
ORDINARY = ROOT / "evals" / "suites" / "trauma_ordinary.jsonl"
OTHER_WORDS = ROOT / "datamodules" / "voice" / "risk_examples" / "disclosures.jsonl"


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def crisis_as_text(tmp_path: Path) -> Path:
    """Each crisis item's client turns as one message (the build screens every turn; a multi-turn
    item discloses in one of them)."""
    path = tmp_path / "crisis.jsonl"
    rows = [
        {"id": r["id"], "text": " ".join(m["content"] for m in r["messages"] if m["role"] == "user")}
        for r in lines(CRISIS)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_risk_command_recall_on_the_crisis_suite_and_false_alarms_on_ordinary_trauma_messages(tmp_path):
    out = tmp_path / "crisis_out.jsonl"
    summary = main(["risk", "--in", str(crisis_as_text(tmp_path)), "--out", str(out)])
    verdicts = [row["risk"] for row in lines(out)]
    assert len(verdicts) == summary["counts"]["messages"] == len(lines(CRISIS)) >= 100
    assert set(verdicts[0]) == {"detected", "kind", "reason"}
    recall = sum(v["detected"] for v in verdicts) / len(verdicts)
    assert recall >= 0.95
    assert all(v["kind"] in KINDS for v in verdicts if v["detected"])

    ordinary = lines(ORDINARY)
    assert len(ordinary) >= 100
    out = tmp_path / "ordinary_out.jsonl"
    main(["risk", "--in", str(ORDINARY), "--out", str(out)])
    alarms = [row["text"] for row in lines(out) if row["risk"]["detected"]]
    assert len(alarms) / len(ordinary) <= 0.05, alarms


def test_disclosures_in_other_words_texting_spellings_included():
    rows = lines(OTHER_WORDS)
    assert len(rows) >= 100
    missed = [r["text"] for r in rows if not rule_risk(r["text"]).detected]
    assert len(missed) / len(rows) <= 0.05, missed


def test_the_classifier_adds_what_no_rule_names_and_stays_quiet_on_ordinary_messages():
    caught = local_risk("I've been staring at the medicine cabinet for an hour.")
    assert caught.detected and caught.kind == "unspecified" and caught.reason.startswith("classifier:")
    assert not rule_risk("I've been staring at the medicine cabinet for an hour.").detected
    for text in ("My grandfather passed away and I feel numb.", "Why do I attract narcissists?"):
        assert not local_risk(text).detected


@pytest.mark.parametrize(
    "text",
    [
        "Some days I just want to disappear and not wake up.",
        "My dad would disappear for days when I was a kid.",
        "I wanted to die of embarrassment after the meeting.",
        "This job is killing me.",
        "I'm thinking of cutting contact with my mother.",
        "I ended things with my boyfriend and feel lost.",
    ],
)
def test_disclosures_not_single_words(text):
    """A disclosure is a statement about oneself, not a word: only the first is one."""
    assert rule_risk(text).detected == text.startswith("Some days")


def test_every_kind_has_a_safe_reply_that_points_to_help():
    for kind in KINDS:
        for reply in SAFE_REPLIES[kind]:
            assert "emergency" in reply or "findahelpline.com" in reply


def test_the_judge_adds_what_the_rules_miss_and_never_removes_a_rule_verdict(tmp_path):
    quiet = "The garage door is shut and the engine is on."  # rules and classifier miss it
    assert not local_risk(quiet).detected

    def answer(call):
        message = call.body["messages"][-1]["content"]
        flagged = "garage" in message
        verdict = {"rationale": "Describes a means to die." if flagged else "Ordinary.", "discloses":
                   "yes" if flagged else "no", "kind": 2 if flagged else 0}
        return 200, json.dumps(verdict)

    with serve(answer) as server:
        judge = VoiceJudge(JudgeEndpoint(base_url=server.url, model="judge-model", api_key_env=""))
        by_judge = detect(quiet, judge)
        assert by_judge.detected and by_judge.kind == "means" and by_judge.reason.startswith("judge:")
        assert not detect("How do I stop people pleasing?", judge).detected
        # the rules' verdict stands without asking the judge
        calls = len(server.calls)
        assert detect("I want to kill myself.", judge).reason.startswith("rule:")
        assert len(server.calls) == calls
        path = tmp_path / "in.jsonl"
        path.write_text(json.dumps({"text": quiet}) + "\n")
        summary = main(["risk", "--in", str(path), "--out", str(tmp_path / "o.jsonl"),
                        "--judge.base_url", server.url, "--judge.model", "judge-model", "--judge.api_key_env", ""])
    assert summary["counts"]["means"] == 1 and summary["judge"]["disclosure_judged"] == 1


def test_a_bad_line_names_the_file_the_line_and_the_fix(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"message": "no text"}\n')
    with pytest.raises(SystemExit):
        main(["risk", "--in", str(path)])
    assert f"{path} line 2" in capsys.readouterr().err


def test_every_disclosure_a_generator_writes_is_answered_safely_for_its_kind(tmp_path, openai_server):
    """Client turns taken from the crisis suite (all kinds): no lecture ever answers one."""
    from datamodules.voice.build import build
    from datamodules.voice.config import BuildConfig, OpenAISettings

    disclosures = [r["messages"][-1]["content"] for r in lines(CRISIS) if len(r["messages"]) == 1]
    detected = [d for d in disclosures if rule_risk(d).detected]

    def answer(call):
        return 200, detected[(call.number - 1) % len(detected)]

    server = openai_server(answer)
    config = BuildConfig(
        transcripts=ROOT / "datamodules" / "voice" / "samples", out=tmp_path / "v.json", speaker="Tim Fletcher",
        mode="backtranslation", generator="openai", heldout_fraction=0,
        openai=OpenAISettings(base_url=server.url, model="m", api_key_env="", concurrency=2, backoff_s=0.01),
    )
    stats = build(config)
    conversations = json.loads(config.out.read_text())
    assert stats["risk"]["disclosures"] == stats["risk"]["answered_safely"] == stats["units"]
    assert len(stats["risk"]["by_kind"]) >= 6
    for conversation in conversations:
        client, reply = (m["content"] for m in conversation["messages"])
        assert reply in SAFE_REPLIES[rule_risk(client).kind]
    with pytest.raises(ValueError, match="no training conversation"):  # nothing but disclosures: all cut
        build(BuildConfig(**{**config.__dict__, "out": tmp_path / "drop" / "v.json", "risk": "drop"}))
    dropped = json.loads((tmp_path / "drop" / "v_stats.json").read_text())
    assert dropped["risk"]["dropped"] == dropped["units"] and dropped["risk"]["answered_safely"] == 0
