"""Dedup across sources (counted per source) and group splits that stay put when data grows."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from datamodules.conversation import Conversation
from datamodules.dedup import deduplicate
from datamodules.registry import SourceSpec, load_registry, stage_sources
from datamodules.sources import ReadOptions, ReadResult, SourceReport, read_sources
from datamodules.splits import apply_weights, split_by_group

SAMPLES = Path(__file__).resolve().parents[1] / "datamodules" / "samples"
QUIET = ReadOptions(progress=False)
LONG_QUESTION = " ".join(f"I keep worrying about thing number {i} and it will not stop." for i in range(40))


def conv(source, user, assistant, group=None, origin="f:1", system=None):
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
    ]
    return Conversation(tuple(messages), "psychology", source, group or f"{source}:{user[:20]}", origin)


def result_of(conversations):
    report = {c.source: SourceReport() for c in conversations}
    for c in conversations:
        report[c.source].read += 1
        report[c.source].kept += 1
    return ReadResult(list(conversations), report)


def test_llama3_rerendering_of_amod_is_removed_and_counted_against_llama3():
    result = read_sources(stage_sources(load_registry(), 1), SAMPLES, QUIET)
    deduped = deduplicate(result, progress=False)
    # The LLAMA3 sample re-renders all 83 readable Amod rows and adds 21 of its own.
    assert len(result.conversations) - len(deduped.conversations) == 83
    llama3 = deduped.report["llama3_counseling"]
    assert llama3.skipped["exact duplicate of amod_counseling"] == 83 and llama3.kept == 21
    assert deduped.report["amod_counseling"].kept == 83
    assert result.report["llama3_counseling"].kept == 104  # the input report is left as it was


def test_near_duplicates_go_several_answers_to_one_question_stay():
    reply = " ".join(f"On day {i} you could notice the worry, name it, and let it pass." for i in range(30))
    conversations = [
        conv("a", LONG_QUESTION, reply),
        conv("b", LONG_QUESTION.replace("number 7 ", "number seven "), reply + " What helps, even a little?"),
        conv(
            "b",
            LONG_QUESTION,
            "Try writing the worries down for ten minutes each evening, then close the notebook.",
        ),
        conv("c", "A different question entirely about sleep.", reply),  # a stock reply to another prompt
        conv("c", LONG_QUESTION.upper(), reply, system="You are a counsellor."),  # exact once folded
    ]
    deduped = deduplicate(result_of(conversations), progress=False)
    assert deduped.conversations == [conversations[0], conversations[2], conversations[3]]
    assert deduped.report["b"].skipped == Counter({"near duplicate of a": 1})
    assert deduped.report["c"].skipped == Counter({"exact duplicate of a": 1})
    assert (deduped.report["b"].kept, deduped.report["c"].kept) == (1, 1)
    exact_only = deduplicate(result_of(conversations), near_threshold=None, progress=False)
    assert len(exact_only.conversations) == 4


def test_reading_and_dedup_over_several_processes_give_what_one_process_gives(monkeypatch):
    """A process per source and MinHash signatures in worker processes (in blocks smaller than the
    input here, so later blocks compare with earlier ones): the same conversations, in the same
    order, and the same report."""
    monkeypatch.setattr("datamodules.dedup._BLOCK", 50)
    monkeypatch.setattr("datamodules.dedup._PER_PROCESS", 100)
    specs = stage_sources(load_registry(), 1)
    one = read_sources(specs, SAMPLES, QUIET)
    three = read_sources(specs, SAMPLES, QUIET, processes=3)
    assert three.conversations == one.conversations and three.report == one.report
    reply = " ".join(f"On day {i} you could notice the worry, name it, and let it pass." for i in range(30))
    questions = [LONG_QUESTION.replace("number 7 ", f"number {n} ") for n in "ab"]
    near = [conv("z", question, reply, origin=f"z:{i}") for i, question in enumerate(questions)]
    result = ReadResult([*one.conversations, *near], {**one.report, "z": SourceReport(2, 2)})
    serial = deduplicate(result, progress=False)
    parallel = deduplicate(result, progress=False, processes=2)
    assert parallel.conversations == serial.conversations and parallel.report == serial.report
    assert len(serial.conversations) < len(result.conversations) - 83  # the 83 Amod copies and more
    assert serial.report["z"].skipped == Counter({"near duplicate of z": 1})


def test_split_keeps_groups_whole_and_follows_the_fractions():
    conversations = [conv("s", f"q{i}", f"a{i}{j}", group=f"g{i}") for i in range(2000) for j in range(2)]
    splits = split_by_group(conversations, val_fraction=0.1, test_fraction=0.05)
    groups = {name: {c.group for c in part} for name, part in splits.items()}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["val"])
    assert not (groups["val"] & groups["test"])
    assert sum(map(len, splits.values())) == 4000
    assert 50 <= len(groups["test"]) <= 150 and 140 <= len(groups["val"]) <= 260


def test_splits_are_stable_when_a_source_grows(tmp_path):
    shutil.copytree(SAMPLES / "datasets-wendy", tmp_path / "datasets-wendy")
    specs = {name: load_registry()[name] for name in ("priority_1", "priority_2")}
    path = tmp_path / "datasets-wendy" / "priority_1_FINAL.jsonl"

    def where():
        result = read_sources(specs, tmp_path, QUIET)
        splits = split_by_group(result.conversations, 0.3, 0.3)
        return {c.group: name for name, part in splits.items() for c in part}

    before = where()
    new = [
        {
            "conversation": [
                {"role": "client", "content": f"new worry {i}"},
                {"role": "therapist", "content": f"reply {i}"},
            ],
            "conversation_id": f"p1-new-{i}",
            "metadata": {"quality_score": 0.9},
        }
        for i in range(50)
    ]
    rows = (
        [json.dumps(r) for r in new[:25]] + path.read_text().splitlines() + [json.dumps(r) for r in new[25:]]
    )
    path.write_text("\n".join(rows) + "\n")  # new records before and after the old ones
    after = where()
    assert len(after) == len(before) + 50
    assert {group: after[group] for group in before} == before
    assert set(after.values()) == {"train", "val", "test"}


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="leave a train split"):
        split_by_group([], 0.5, 0.5)


def test_weights_repeat_or_thin_a_source_deterministically():
    train = [conv("heavy", f"q{i}", "a") for i in range(1000)] + [
        conv("light", f"q{i}", "a") for i in range(1000)
    ]
    train = [Conversation(c.messages, c.domain, c.source, c.group, f"f:{i}") for i, c in enumerate(train)]
    weighted = apply_weights(train, {"heavy": 2.5, "light": 0.5})
    counts = Counter(c.source for c in weighted)
    assert 2400 <= counts["heavy"] <= 2600 and 400 <= counts["light"] <= 600
    assert weighted == apply_weights(train, {"heavy": 2.5, "light": 0.5})
    assert apply_weights(train, {}) == train


def test_records_without_ids_group_by_question_or_by_whole_conversation(tmp_path):
    path = tmp_path / "chats.jsonl"
    rows = [
        [("user", "How do I sleep better?"), ("assistant", "Keep a steady bedtime.")],
        [("user", "how do I  sleep better?"), ("assistant", "Less screen time at night.")],
        [("user", "hi"), ("assistant", "Hello."), ("user", "I am sad."), ("assistant", "I am sorry.")],
        [("user", "hi"), ("assistant", "Hello."), ("user", "I am angry."), ("assistant", "What happened?")],
    ]
    path.write_text(
        "\n".join(json.dumps({"messages": [{"role": r, "content": c} for r, c in t]}) for t in rows)
    )
    source = SourceSpec("mine", str(path), "messages", 1, "psychology")
    groups = [c.group for c in read_sources({"mine": source}, tmp_path, QUIET).conversations]
    assert groups[0] == groups[1] and len(set(groups)) == 3


def test_near_dedup_reads_the_whole_text_not_its_opening():
    """Two long conversations that share their first 450 words and then differ entirely are not
    duplicates (a check on the opening words alone would call them one)."""
    opening = " ".join(f"word{i}" for i in range(450))
    first = conv("a", opening + " " + " ".join(f"first{i}" for i in range(450)), opening + " reply one")
    second = conv("b", opening + " " + " ".join(f"second{i}" for i in range(450)), opening + " reply two")
    deduped = deduplicate(result_of([first, second]), progress=False)
    assert deduped.conversations == [first, second]
    nearly = conv("c", first.messages[0]["content"] + " one more word", first.messages[1]["content"])
    assert deduplicate(result_of([first, nearly]), progress=False).report["c"].skipped == Counter(
        {"near duplicate of a": 1}
    )


def test_conversations_sharing_any_key_are_one_group():
    from datamodules.splits import merge_groups

    rows = [
        Conversation((), "psychology", "amod", "text:q1", "a:1", ("text:q1",)),
        Conversation((), "psychology", "cc", "cc:7", "c:1", ("cc:7", "text:q1")),
        Conversation((), "psychology", "cc", "cc:7", "c:2", ("cc:7", "text:q1-other-wording")),
        Conversation((), "psychology", "x", "x:1", "x:1", ("x:1",)),
    ]
    groups = [c.group for c in merge_groups(rows)]
    assert groups[0] == groups[1] == groups[2] == min("text:q1", "cc:7", "text:q1-other-wording")
    assert groups[3] == "x:1"


def test_a_lecture_group_is_named_by_its_lecture_not_by_a_question_text_key():
    """A lecture's single-exchange conversation also carries its question's text key, which sorts
    before `voice:...`: the group (and so its split) must still follow the lecture id."""
    from datamodules.splits import merge_groups

    rows = [
        Conversation((), "mental_health", "voice", "voice:shame", "v:1", ("voice:shame",)),
        Conversation((), "mental_health", "voice", "voice:shame", "v:2", ("voice:shame", "text:0abc")),
    ]
    assert [c.group for c in merge_groups(rows)] == ["voice:shame", "voice:shame"]

