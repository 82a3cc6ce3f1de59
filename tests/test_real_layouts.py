"""The user's drive as it really is, read through `python -m stages.inspect --json`: small files in
the real layouts and with the mess real files carry (BOM, CRLF, NaN, a therapist speaking first,
chat-control strings in scraped text, speaker words inside a turn, the counsel-chat GitHub clone,
neuro_qa's single element, the three CoT re-download layouts), one build for all of them."""

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

import datasets
import pytest
import yaml

from datamodules.registry import load_registry
from datamodules.sources import text_key
from datamodules.splits import group_position
from moe.base_model import load_tokenizer
from stages import inspect

BOM = b"\xef\xbb\xbf"
VAL, TEST = 0.25, 0.25
REPLY = "That sounds heavy. What would help most this week?"


def jsonl(records, crlf=True, bom=True):
    end = b"\r\n" if crlf else b"\n"
    return (BOM if bom else b"") + b"".join(json.dumps(r).encode() + end for r in records)


def priority(cid, turns, score):
    conversation = [{"role": role, "content": content} for role, content in turns]
    return {"conversation": conversation, "conversation_id": cid, "metadata": {"quality_score": score}}


def amod_question(i):
    return f"Question {i}: I have felt low and restless for weeks and I do not know whom to tell."


def write_drive(root: Path) -> None:
    # therapist-sft: BOM, CRLF, a marker word inside a turn, a therapist first, a quoted line break
    sft = io.StringIO()
    writer = csv.writer(sft, lineterminator="\r\n")
    writer.writerow(["text"])
    writer.writerow(
        ["human: i feel like a failure at work. gpt: i'm only human: i make mistakes too. what happened? "
         "human: i missed a deadline gpt: that sounds stressful."]
    )
    writer.writerow(["gpt: welcome back. human: thanks.\r\nit was a long week. gpt: tell me about it."])
    writer.writerow(["no speaker markers at all"])
    long_turns = " ".join(
        f"human: this is worry number {i} and it keeps me awake. gpt: worry {i} deserves a careful look, "
        "let us take it slowly together." for i in range(8)
    )
    writer.writerow([long_turns])
    (root / "therapist-sft-format").mkdir()
    (root / "therapist-sft-format" / "train.csv").write_bytes(BOM + sft.getvalue().encode())

    # priority: BOM and CRLF; NaN quality (a JSON NaN literal), a therapist speaking first
    records = [
        priority("p-1", [("client", "I cannot focus."), ("therapist", "What pulls you away?")], 0.9),
        priority("p-2", [("client", "I am tired."), ("therapist", "Tired how?")], float("nan")),
        priority("p-3", [("therapist", "Welcome."), ("client", "I am nervous."), ("therapist", "Okay.")], 0.8),
        priority("p-4", [("client", "Hello."), ("therapist", "Hello.")], 0.5),
        priority("p-5", [("client", "Tell me everything."), ("therapist", "long " * 400)], 0.9),
    ]
    (root / "datasets-wendy").mkdir()
    (root / "datasets-wendy" / "priority_1_FINAL.jsonl").write_bytes(jsonl(records))

    # Amod: JSON Lines behind .json, BOM; scraped text spelling out chat-control strings
    amod = [{"Context": amod_question(i), "Response": f"{REPLY} ({i})"} for i in range(24)]
    scraped = "Freezing is the body's brake.<|im_end|> What happens just before?"
    amod.append({"Context": "Why do I freeze up?</s>", "Response": scraped})
    folder = root / "mental_health_counseling_conversations"
    folder.mkdir()
    (folder / "combined_dataset.json").write_bytes(jsonl(amod, crlf=False))

    # counsel-chat as the GitHub clone: the newest conversation CSV, an older overlapping scrape, the JSON
    data = root / "counsel-chat" / "data"
    data.mkdir(parents=True)
    columns = ["", "questionID", "questionTitle", "questionText", "questionLink", "topic", "therapistInfo",
               "therapistURL", "answerText", "upvotes", "views", "split"]
    rows = []
    for i in range(24):
        answers = [f"{REPLY} ({i})", f"Another counsellor's view on question {i}.Start small."]
        for k, answer in enumerate(answers):
            question = [i, f"Title {i}", amod_question(i), "l", "depression"]
            rows.append([len(rows), *question, "t", "u", answer, k, 10, "train"])
    rows.append([len(rows), 99, "Only a title", "", "l", "t", "t", "u", "An answer.", 0, 1, "test"])
    with (data / "20200325_counsel_chat.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([columns, *rows])
    (data / "counselchat-data.csv").write_text(
        "questionID,questionTitle,questionText,answerText\n"
        "5566fab2a64752d71ec3ca69,Title 0,x,<p>older scrape</p>\n"
    )
    (data / "counsel_chat_250-tokens_full.json").write_text(
        json.dumps({"train": [{"personality": [], "utterances": [{"history": ["x"], "candidates": ["y"]}]}]})
    )

    # neuro_qa: one array element holding unrelated pairs, ending on a question without an answer
    text = []
    for q, a in [("What is the amygdala?", "A threat detector."), ("What is dopamine?", "A learning signal."),
                 ("What is the amygdala?", "Part of the limbic system.")]:
        text += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    text.append({"role": "user", "content": "And serotonin?"})
    (root / "neuro_qa_SFT_Trainer").mkdir()
    (root / "neuro_qa_SFT_Trainer" / "train.json").write_text(json.dumps([{"text": text}], indent=1))

    # the three CoT re-downloads: a JSON array with a BOM, JSON Lines with CRLF, a pandas column dict
    def cot(prefix, n=2):
        out = [{"id": f"{prefix}-{i}", "question": f"{prefix} question {i}?", "answer": f"Answer {i}.",
                "metadata": {"difficulty": 2, "topic": "t", "reasoning": f"Because {i}."}} for i in range(n)]
        out.append({"id": f"{prefix}-x", "question": "q?", "answer": "a.", "metadata": {"difficulty": 1}})
        return out

    array = BOM + json.dumps(cot("heart"), indent=2).encode()
    (root / "CoT_Heartbreak_and_Breakups_downloaded.json").write_bytes(array)
    (root / "CoT_Neurodivergent_vs_Neurotypical_Interactions_downloaded.json").write_bytes(jsonl(cot("neuro")))
    rows = cot("mens", 3)
    columns = {key: {str(i): row.get(key) for i, row in enumerate(rows)} for key in rows[0]}
    (root / "CoT_Reasoning_Mens_Mental_Health_downloaded.json").write_bytes(BOM + json.dumps(columns).encode())


OFF = ["psydt_corpus", "llama3_counseling", "psych8k", "priority_2", "priority_3"]
COT = ["cot_heartbreak", "cot_neurodivergent", "cot_mens_mental_health"]
SOURCES = {**{name: {"enabled": False} for name in OFF}, **{name: {"stage": 1} for name in COT}}


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("drive")
    write_drive(root)
    config = {
        "model": {"base_model": "tiny"},
        "data": {
            "stage": 1,
            "data_root": str(root),
            "max_seq_length": 256,
            "val_fraction": VAL,
            "test_fraction": TEST,
            "num_proc": 1,
            "cache_dir": str(root / "cache"),
            "sources": SOURCES,
        },
    }
    (root / "stage.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def report(drive):
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        inspect.main(["--config", "stages/stage1.yaml", "--config", str(drive / "stage.yaml"), "--json"])
    return json.loads(out.getvalue())


def counts(report, name):
    s = report["sources"][name]
    return s["read"], s["kept"], s["skipped"], s["cleaned"]


def examples(report):
    return datasets.load_from_disk(str(Path(report["cache"]) / "examples"))


def test_therapist_sft_bom_crlf_markers_only_at_turn_boundaries_and_therapist_first(report):
    read, kept, skipped, cleaned = counts(report, "therapist_sft")
    assert (read, kept, skipped) == (4, 3, {"no human:/gpt: speaker markers": 1})
    assert cleaned == {"speaker marker inside a turn kept as text": 1, "leading assistant turn dropped": 1}
    rows = [r for split in examples(report).values() for r in split if r["source"] == "therapist_sft"]
    texts = [m["content"] for r in rows for m in r["messages"]]
    assert "i'm only human: i make mistakes too. what happened?" in texts
    assert "thanks.\nit was a long week." in texts and not any("\r" in t for t in texts)
    assert all(r["messages"][0]["role"] in ("system", "user") for r in rows)


def test_priority_bom_nan_quality_and_therapist_first(report):
    read, kept, skipped, cleaned = counts(report, "priority_1")
    # the BOM costs no record; NaN does not pass the 0.75 filter
    assert (read, kept) == (5, 2)
    assert skipped == {
        "metadata.quality_score is not a finite number (nan)": 1,
        "quality_score below 0.75": 1,
        "longer than max_seq_length 256": 1,
    }
    assert cleaned == {"leading assistant turn dropped": 1}


def test_long_conversations_become_windows_and_lost_tokens_are_reported(report):
    sft = report["sources"]["therapist_sft"]
    assert sft["windowed"] == 1 and sft["windows"] >= 2 and sft["tokens_lost"] == 0
    # a 400-word reply fits no window of 256 tokens: the conversation is dropped, its tokens reported
    p1 = report["sources"]["priority_1"]
    assert p1["skipped"]["longer than max_seq_length 256"] == 1 and p1["tokens_lost"] > 400
    assert report["sources"]["amod_counseling"]["tokens_lost"] == 0


def test_chat_control_strings_in_text_never_become_control_tokens(report):
    read, kept, skipped, cleaned = counts(report, "amod_counseling")
    assert (read, kept, skipped) == (25, 25, {}) and cleaned == {"chat-control string removed": 1}
    tokenizer = load_tokenizer("tiny")
    start, end, eos = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "</s>"])
    for split in examples(report).values():
        for row in split:  # one <|im_end|> closes each turn, none inside a text
            ids = row["input_ids"]
            assert ids.count(end) == ids.count(start) and eos not in ids
            assert not any("<|im_end|>" in m["content"] or "</s>" in m["content"] for m in row["messages"])


def test_counsel_chat_clone_layout_reads_the_newest_csv_only(report):
    read, kept, skipped, cleaned = counts(report, "counsel_chat")
    # the answers Amod copied are (near) duplicates of its rows; every other answer is kept
    assert read == 49 and kept == read - sum(skipped.values()) and kept >= 25 and not cleaned
    assert set(skipped) <= {"near duplicate of amod_counseling", "exact duplicate of amod_counseling"}
    rows = [r for split in examples(report).values() for r in split if r["source"] == "counsel_chat"]
    assert {Path(r["origin"].rsplit(":", 1)[0]).name for r in rows} == {"20200325_counsel_chat.csv"}
    answers = {r["messages"][-1]["content"] for r in rows}
    assert "Another counsellor's view on question 3. Start small." in answers  # run-together sentences


def test_amod_and_its_counsel_chat_twins_never_cross_splits(report):
    where = defaultdict(set)
    groups = defaultdict(set)
    for split, rows in examples(report).items():
        for row in rows:
            groups[split].add(row["group"])
            if row["source"] in ("amod_counseling", "counsel_chat"):
                user = [m["content"] for m in row["messages"] if m["role"] == "user"][0]
                where[text_key(user.split("\n\n")[-1])].add(split)
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])
    twins = [text_key(amod_question(i)) for i in range(24)]
    assert all(len(where[key]) == 1 for key in twins)  # 0 shared questions across splits
    assert len({split for key in twins for split in where[key]}) > 1  # and the questions do spread

    def split_of(group):
        position = group_position(group)
        return "test" if position < TEST else "val" if position < TEST + VAL else "train"

    # grouped by questionID alone, some twins would have been split apart: the merge is what holds
    assert any(split_of(f"counsel_chat:{i}") != split_of(text_key(amod_question(i))) for i in range(24))


def test_neuro_qa_single_element_one_example_per_pair(report):
    read, kept, skipped, cleaned = counts(report, "neuro_qa")
    assert (read, kept, skipped) == (4, 3, {"user turn outside a question-answer pair": 1})


@pytest.mark.parametrize(
    "name, records", [("cot_heartbreak", 3), ("cot_neurodivergent", 3), ("cot_mens_mental_health", 4)]
)
def test_the_three_cot_layouts_are_detected_from_content(report, name, records):
    read, kept, skipped, _ = counts(report, name)
    assert (read, kept, skipped) == (records, records - 1, {"missing field 'metadata.reasoning'": 1})


def test_registry_defaults_match_the_drive():
    specs = load_registry()
    assert specs["counsel_chat"].files == (("20220401_counsel_chat.csv", "data/20200325_counsel_chat.csv"),)
    assert specs["neuro_qa"].files == ("train.json",)


def test_a_data_problem_is_one_error_line_never_a_traceback(drive, tmp_path, capsys):
    broken = tmp_path / "drive"
    broken.mkdir()
    (broken / "bad.json").write_text('[{"messages": [}')
    config = {"data": {"stage": 1, "data_root": str(drive), "cache_dir": str(tmp_path / "cache"),
                       "sources": {**SOURCES, "bad": {"path": str(broken / "bad.json"), "schema": "messages",
                                                      "stage": 1, "domain": "psychology"}}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    configs = ["stages/stage1.yaml", drive / "stage.yaml", tmp_path / "bad.yaml"]
    args = [arg for config in configs for arg in ("--config", str(config))]
    with pytest.raises(SystemExit, match=rf"^error: source 'bad': {broken / 'bad.json'}:1: not valid JSON"):
        inspect.main(args)
    with pytest.raises(SystemExit, match=r"^error: .*registry_path|^error: .*nowhere"):
        inspect.main([*args, f"--data.registry_path={tmp_path / 'nowhere.yaml'}"])
