"""Bad input: bad records are counted and skipped with file:line; bad sources stop with a clear error."""

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datamodules.registry import SourceSpec, load_registry
from datamodules.sources import ReadOptions, SourceError, check_sources, read_sources

SAMPLES = Path(__file__).resolve().parents[1] / "datamodules" / "samples"
QUIET = ReadOptions(progress=False)


def spec(path, schema="messages", **fields):
    return SourceSpec(name="mine", path=str(path), schema=schema, stage=1, domain="psychology", **fields)


def read_one(source):
    result = read_sources({"mine": source}, "/nonexistent-root", QUIET)
    return result.conversations, result.report["mine"]


GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def test_each_bad_record_is_skipped_and_counted_by_reason_with_file_line(tmp_path):
    path = tmp_path / "chat.jsonl"
    lines = [
        json.dumps(GOOD).encode(),
        b'{"messages": [{"role": "user", "content": "hi"}',  # malformed JSON
        json.dumps({"conversation": []}).encode(),  # missing field
        json.dumps(
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " \n"}]}
        ).encode(),
        '{"messages": [{"role": "user", "content": "caf\u00e9"}, {"role": "assistant", "content": "ok"}]}'.encode(
            "latin-1"
        ),
        json.dumps(
            {"messages": [{"role": "coach", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
        ).encode(),
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}).encode(),
        b"",
        json.dumps(GOOD).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    before = path.read_bytes()
    conversations, report = read_one(spec(path))
    assert [c.origin for c in conversations] == [f"{path}:1", f"{path}:9"]
    assert (report.read, report.kept) == (8, 2)
    assert report.skipped == {
        "malformed JSON": 1,
        "missing field 'messages'": 1,
        "empty reply": 1,
        "invalid UTF-8": 1,
        "unknown role 'coach'": 1,
        "no assistant reply": 1,
    }
    assert report.examples == [
        f"{path}:2: malformed JSON",
        f"{path}:3: missing field 'messages'",
        f"{path}:4: empty reply",
        f"{path}:5: invalid UTF-8",
        f"{path}:6: unknown role 'coach'",
    ]
    assert path.read_bytes() == before  # source files are never modified


def test_invalid_utf8_inside_a_json_array_and_a_csv_costs_one_record(tmp_path):
    array = tmp_path / "cot.json"
    records = [
        {"id": "a", "question": "q1", "answer": "a1", "metadata": {"reasoning": "r1"}},
        {"id": "b", "question": "QBAD", "answer": "a2", "metadata": {"reasoning": "r2"}},
        {"id": "c", "question": "q3", "answer": "a3", "metadata": {"reasoning": "r3"}},
    ]
    array.write_bytes(json.dumps(records, indent=1).encode().replace(b"QBAD", b"caf\xe9"))
    conversations, report = read_one(spec(array, "cot", options={"group_key": "id"}))
    assert [c.group for c in conversations] == ["mine:a", "mine:c"]
    assert report.skipped == {"invalid UTF-8": 1}
    assert re.fullmatch(rf"{re.escape(str(array))}:\d+: invalid UTF-8", report.examples[0])

    table = tmp_path / "sft.csv"
    table.write_bytes(b'text\n"human: hi\ngpt: hello"\n"human: caf\xe9 gpt: ok"\nhuman: bye gpt: goodbye\n')
    conversations, report = read_one(spec(table, "therapist_sft"))
    assert [c.origin for c in conversations] == [
        f"{table}:2",
        f"{table}:5",
    ]  # line numbers count the quoted newline
    assert report.examples == [f"{table}:4: invalid UTF-8"]


def test_a_source_whose_records_all_fail_is_an_error(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"question": "q", "reply": "a"}] * 3))
    with pytest.raises(SourceError) as err:
        read_one(spec(path, "question_answer"))
    message = str(err.value)
    assert "source 'mine'" in message and str(path) in message
    assert "none of its 3 records" in message and "missing field 'answer' x3" in message


def test_an_empty_source_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(SourceError, match="none of its 0 records.*the files hold no records"):
        read_one(spec(path))


def test_missing_path_names_source_resolved_path_and_fix(tmp_path):
    specs = load_registry()
    with pytest.raises(SourceError) as err:
        check_sources({"counsel_chat": specs["counsel_chat"]}, tmp_path)
    message = str(err.value)
    assert f"source 'counsel_chat': {tmp_path / 'counsel-chat'} does not exist" in message
    assert "one of '20220401_counsel_chat.csv' or 'data/20200325_counsel_chat.csv'" in message
    assert "--data.data_root" in message


def test_unknown_schema_and_unknown_option_stop_before_reading(tmp_path):
    with pytest.raises(
        SourceError, match=r"source 'mine': unknown schema 'chatml'.*expected one of \[.*'sharegpt'"
    ):
        check_sources({"mine": spec(tmp_path / "absent.json", "chatml")}, tmp_path)
    with pytest.raises(SourceError, match=r"option\(s\) \['min_quality'\] mean nothing to schema 'messages'"):
        check_sources({"mine": spec(tmp_path, options={"min_quality": 0.5})}, tmp_path)
    with pytest.raises(SourceError, match=r"option answers='best'; expected one of \['all', 'top'\]"):
        check_sources({"mine": spec(tmp_path, "counsel_chat", options={"answers": "best"})}, tmp_path)
    with pytest.raises(SourceError, match="domain 'psychology' is not an expert domain"):
        check_sources({"mine": spec(tmp_path)}, tmp_path, expert_domains=["a", "b"])
    with pytest.raises(SourceError, match="cot_layout 'xml'"):
        read_sources({}, tmp_path, ReadOptions(cot_layout="xml"))


def test_a_folder_reads_only_its_named_files(tmp_path):
    folder = tmp_path / "SoulChat2.0"
    shutil.copytree(SAMPLES / "SoulChat2.0", folder)
    specs = load_registry()
    files = check_sources({"psydt_corpus": specs["psydt_corpus"]}, tmp_path)
    assert files == {"psydt_corpus": [folder / "PsyDTCorpus_train_mulit_turn_packing.json"]}
    (folder / "PsyDTCorpus_train_mulit_turn_packing.json").unlink()
    with pytest.raises(
        SourceError, match=r"no file in .* matches '\*\*/PsyDTCorpus_train.*holds \['PsyDTCorpus_test"
    ):
        check_sources({"psydt_corpus": specs["psydt_corpus"]}, tmp_path)
    with pytest.raises(SourceError, match="is a folder; the entry must name the files"):
        check_sources({"mine": spec(folder)}, tmp_path)


def test_a_broken_json_array_is_a_file_error_with_its_line(tmp_path):
    path = tmp_path / "array.json"
    path.write_text('[\n {"messages": []},\n {"messages": [}\n]')
    with pytest.raises(SourceError, match=rf"source 'mine': {re.escape(str(path))}:3: not valid JSON"):
        read_one(spec(path))


def test_llama3_parquet_with_no_known_layout_names_the_columns(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"input": ["a"], "target": ["b"]}), path)
    with pytest.raises(SourceError, match=r"no known layout in columns \['input', 'target'\]"):
        read_one(spec(path, "llama3_parquet"))


def test_llama3_parquet_context_response_and_conversations_layouts(tmp_path):
    pairs = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"Context": ["q"], "Response": ["a"], "text": ["ignored"]}), pairs)
    (conversation,), _ = read_one(spec(pairs, "llama3_parquet"))
    assert conversation.messages == ({"role": "user", "content": "q"}, {"role": "assistant", "content": "a"})
    chats = tmp_path / "chats.parquet"
    turns = [[{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]]
    pq.write_table(pa.table({"conversations": turns}), chats)
    (conversation,), _ = read_one(spec(chats, "llama3_parquet"))
    assert conversation.messages == ({"role": "user", "content": "q"}, {"role": "assistant", "content": "a"})


def test_unknown_record_domain_is_skipped(tmp_path):
    path = tmp_path / "voice.json"
    records = [{**GOOD, "domain": "psychology"}, {**GOOD, "domain": "astrology"}]
    path.write_text(json.dumps(records))
    source = spec(path, options={"domain_field": "domain"})
    result = read_sources(
        {"mine": source}, tmp_path, ReadOptions(expert_domains=("psychology",), progress=False)
    )
    assert result.report["mine"].skipped == {"unknown domain 'astrology'": 1}


def test_cap_keeps_a_stable_subset(tmp_path):
    path = tmp_path / "many.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(20)
    ]
    path.write_text("\n".join(map(json.dumps, rows)))
    first, report = read_one(spec(path, cap=5))
    again, _ = read_one(spec(path, cap=5))
    assert len(first) == 5 and [c.origin for c in first] == [c.origin for c in again]
    assert report.skipped == {"over cap 5": 15} and report.kept == 5


def test_json_lines_split_on_newlines_only(tmp_path):
    path = tmp_path / "seps.jsonl"
    odd = {
        "messages": [
            {"role": "user", "content": "line\u2028sep\x0cform"},
            {"role": "assistant", "content": "ok\r"},
        ]
    }
    path.write_text(json.dumps(odd, ensure_ascii=False) + "\r\n" + json.dumps(GOOD) + "\n", encoding="utf-8")
    conversations, report = read_one(spec(path))
    assert [c.messages[0]["content"] for c in conversations] == ["line\u2028sep\x0cform", "hi"]
    assert [c.origin for c in conversations] == [f"{path}:1", f"{path}:2"] and not report.skipped


def test_an_escaped_lone_surrogate_is_invalid_utf8(tmp_path):
    path = tmp_path / "escaped.jsonl"
    path.write_text(
        '{"messages": [{"role": "user", "content": "a\\udc80b"}, {"role": "assistant", "content": "ok"}]}\n'
        + json.dumps(GOOD)
        + "\n"
    )
    conversations, report = read_one(spec(path))
    assert len(conversations) == 1 and report.skipped == {"invalid UTF-8": 1}


def test_every_missing_source_is_named_in_one_error(tmp_path):
    specs = load_registry()
    with pytest.raises(SourceError) as err:
        check_sources({name: specs[name] for name in ("amod_counseling", "psych8k", "priority_1")}, tmp_path)
    lines = str(err.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "source 'amod_counseling'",
        "source 'psych8k'",
        "source 'priority_1'",
    ]
    assert str(tmp_path / "datasets-wendy" / "priority_1_FINAL.jsonl") in lines[2]


def test_a_record_without_its_group_key_is_kept_and_grouped_by_text(tmp_path):
    path = tmp_path / "cot.json"
    path.write_text(json.dumps([{"question": "q", "answer": "a", "metadata": {"reasoning": "r"}}]))
    (conversation,), report = read_one(spec(path, "cot", options={"group_key": "id"}))
    assert conversation.group.startswith("text:") and not report.skipped
