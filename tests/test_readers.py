"""Each reader on its sample files: exact messages, groups, domains and skip reasons."""

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datamodules.registry import load_registry, stage_sources
from datamodules.samples import build_parquet, write_samples
from datamodules.sources import ReadOptions, read_sources

SAMPLES = Path(__file__).resolve().parents[1] / "datamodules" / "samples"
DOMAINS = ("psychology", "mental_health", "bias_detection", "general_therapeutic")


def read(name, cot_layout="think", **override):
    specs = load_registry({name: override} if override else None)
    result = read_sources(
        {name: specs[name]},
        SAMPLES,
        ReadOptions(cot_layout=cot_layout, expert_domains=DOMAINS, progress=False),
    )
    return result.conversations, result.report[name]


def pairs(conversation):
    return [(m["role"], m["content"]) for m in conversation.messages]


def test_amod_json_lines_behind_a_json_extension():
    conversations, report = read("amod_counseling")
    assert pairs(conversations[1]) == [
        ("user", 'My partner and I argue every day, "about nothing" as she says.'),
        ("assistant", "Daily arguments wear anyone down.\nWhat happens just before an argument starts?"),
    ]
    # The first six lines are the hand-written quirks; the rest is datamodules/samples/write_samples.py.
    assert (report.read, report.kept) == (86, 83)
    assert report.skipped == {"malformed JSON": 1, "empty reply": 1, "missing field 'Response'": 1}
    assert report.examples[0].endswith("combined_dataset.json:4: malformed JSON")
    assert {c.domain for c in conversations} == {"mental_health"}
    assert conversations[0].origin.endswith("combined_dataset.json:1")


def test_psydt_reads_the_train_file_only_with_system_turns_and_id_groups():
    conversations, report = read("psydt_corpus")
    assert [c.group for c in conversations] == ["psydt_corpus:0", "psydt_corpus:1"]
    assert pairs(conversations[0])[:3] == [
        ("system", "你是一位精通理情行为疗法（Rational Emotive Behavior Therapy，简称REBT）的心理咨询师。"),
        ("user", "我最近和男朋友总是吵架，我觉得很累。"),
        ("assistant", "听起来这段时间你真的很辛苦。能和我说说最近一次吵架是怎么开始的吗？"),
    ]
    # The trailing client turn has no reply: it is dropped, the conversation kept.
    assert pairs(conversations[1])[-1] == (
        "assistant",
        "考试前的紧张很常见。心慌的时候，你的身体有什么感觉？",
    )
    assert report.skipped == {"unknown role 'narrator'": 1}
    assert not any("MUST NEVER BE READ" in m["content"] for c in conversations for m in c.messages)


def test_counsel_chat_reads_the_github_clone_newest_csv_only():
    """The drive holds the GitHub clone: data/20200325_counsel_chat.csv is read; the older
    overlapping scrape and the 250-token JSON beside it never are."""
    conversations, report = read("counsel_chat")
    assert {c.origin.rsplit(":", 1)[0] for c in conversations} == {
        f"{SAMPLES}/counsel-chat/data/20200325_counsel_chat.csv"
    }
    assert [c.keys[0] for c in conversations] == [
        "counsel_chat:0",
        "counsel_chat:0",
        "counsel_chat:1",
        "counsel_chat:2",
        "counsel_chat:3",
    ]
    # the clone's de-HTML'd answers run sentences together ("hang out with.Seriously"): a space again
    assert pairs(conversations[0])[1] == (
        "assistant",
        "If everyone thinks you're worthless, then maybe you need to find new people to hang out with. "
        "Seriously, the social context in which a person lives is a big influence in self-esteem, belief, "
        "and emotions & thoughts.",
    )
    assert pairs(conversations[1])[1][1].startswith(
        "Hello, and thank you for your question and seeking advice on this. Feelings of worthlessness"
    )
    assert pairs(conversations[0])[0][1].startswith(
        "Can I change my feeling of being worthless to everyone?\n\nI'm going"
    )
    assert pairs(conversations[3]) == [
        ("user", "My husband won't talk about money"),
        (
            "assistant",
            "Money talks are hard for many couples, because money stands for safety, freedom, and respect, all at once.",
        ),
    ]
    assert report.skipped == {"empty reply": 1}
    assert report.examples == [f"{SAMPLES}/counsel-chat/data/20200325_counsel_chat.csv:8: empty reply"]


def test_counsel_chat_prefers_the_hub_csv_when_both_layouts_are_there(tmp_path):
    folder = tmp_path / "counsel-chat"
    shutil.copytree(SAMPLES / "counsel-chat", folder)
    hub = folder / "20220401_counsel_chat.csv"
    hub.write_text(
        "questionID,questionTitle,questionText,questionLink,topic,therapistInfo,therapistURL,answerText,upvotes,views\n"
        '7,Title,Body,l,t,i,u,"<p>One.</p><p>Two.</p>",1,1\n'
    )
    specs = load_registry()
    result = read_sources({"counsel_chat": specs["counsel_chat"]}, tmp_path, ReadOptions(progress=False))
    [conversation] = result.conversations
    assert conversation.origin == f"{hub}:2" and pairs(conversation)[1] == ("assistant", "One.\nTwo.")


def test_counsel_chat_top_answer_only():
    conversations, report = read("counsel_chat", options={"answers": "top"})
    assert [(c.keys[0], c.origin.rsplit(":", 1)[1]) for c in conversations] == [
        ("counsel_chat:0", "5"),  # 3 upvotes beat 1
        ("counsel_chat:1", "9"),  # the only non-empty answer
        ("counsel_chat:2", "12"),
        ("counsel_chat:3", "13"),
    ]
    assert report.skipped == {"not the most upvoted answer (answers: top)": 1, "empty reply": 1}


def test_llama3_parquet_header_token_text():
    conversations, report = read("llama3_counseling")
    # After the re-rendering of Amod's 83 readable rows comes the sample's own hand-written row.
    assert pairs(conversations[83]) == [
        ("system", build_parquet.SYSTEM),
        ("user", "I moved to a new city and I feel invisible."),
        (
            "assistant",
            "Moving can cut us off from everyone who knew us. What did a good day look like before the move?",
        ),
    ]
    assert report.skipped == {"no Llama-3 header tokens in the text": 1}
    assert conversations[0].origin.endswith("train-00000-of-00001.parquet:row 0")


def test_llama3_sample_is_exactly_what_its_generator_writes(tmp_path):
    built = build_parquet.build(tmp_path / "train.parquet")
    assert pq.read_table(built).equals(pq.read_table(build_parquet.OUT))


def test_samples_are_exactly_what_their_generator_writes(tmp_path):
    write_samples.main(tmp_path)
    for rel in write_samples.KEPT:
        assert (tmp_path / rel).read_bytes() == (SAMPLES / rel).read_bytes(), rel


def test_therapist_sft_markers_in_any_case_inline_or_on_lines():
    conversations, report = read("therapist_sft")
    assert pairs(conversations[0]) == [
        ("user", "I feel like nobody listens to me at home."),
        ("assistant", "That sounds lonely. When did you start feeling unheard?"),
        ("user", "Since my brother moved back in."),
        ("assistant", "A change like that shifts the whole household. What is different since he arrived?"),
    ]
    assert [m["role"] for m in conversations[1].messages] == ["user", "assistant", "user", "assistant"]
    assert pairs(conversations[1])[3] == (
        "assistant",
        "That question weighs a lot. What makes you think it was?",
    )
    assert report.skipped == {"no human:/gpt: speaker markers": 1}


def test_neuro_qa_one_example_per_pair_of_its_single_element():
    conversations, report = read("neuro_qa")
    assert len(conversations) == 5 and report.read == 6
    assert pairs(conversations[1]) == [
        ("user", "How does sleep deprivation affect mood?"),
        (
            "assistant",
            "Losing sleep makes the amygdala more reactive and weakens prefrontal control, so people feel more "
            "irritable and anxious after short nights.",
        ),
    ]
    assert [c.origin.rsplit(":", 1)[1] for c in conversations] == [f"2 pair {i}" for i in range(1, 6)]
    # the question asked twice: one group, whatever the answers
    assert conversations[0].keys == conversations[3].keys and len({c.keys for c in conversations}) == 4
    assert report.skipped == {"user turn outside a question-answer pair": 1}
    assert {c.domain for c in conversations} == {"psychology"}


def test_psych8k_instruction_becomes_the_system_turn():
    conversations, report = read("psych8k")
    assert pairs(conversations[1]) == [
        (
            "system",
            "If you are a counsellor, please answer the questions based on the description of the patient.",
        ),
        ("user", "My daughter stopped talking to me after the divorce. I don't know how to reach her."),
        (
            "assistant",
            "Losing closeness with your daughter must be painful, especially on top of the divorce. What was your relationship like before?",
        ),
    ]
    assert report.skipped == {"empty reply": 1}
    as_user, _ = read("psych8k", options={"instruction": "user"})
    assert pairs(as_user[1])[0][1].startswith(
        "If you are a counsellor, please answer the questions based on the description of the patient.\n\nMy daughter"
    )


def test_priority_roles_and_quality_filter():
    conversations, report = read("priority_1")
    groups = [c.group for c in conversations]
    assert groups[:2] == ["priority_1:p1-0001", "priority_1:p1-0003"]  # 0.75 is kept
    assert "priority_1:p1-0002" not in groups and len(groups) == 9
    assert pairs(conversations[0])[2:] == [
        ("user", "The deadlines. They never stop."),
        (
            "assistant",
            "When deadlines never stop, there is no room to recover. Where in your week could a short pause fit?",
        ),
    ]
    assert report.skipped == {"quality_score below 0.75": 1}
    all_kept, report = read("priority_1", options={"min_quality": None})
    assert len(all_kept) == 10 and not report.skipped
    _, report = read("priority_3")
    assert report.skipped == {"missing field 'metadata.quality_score'": 1, "quality_score below 0.75": 1}


@pytest.mark.parametrize(
    "layout, expected",
    [
        (
            "think",
            "<think>\nCounting back three days from Friday: Thursday, Wednesday, Tuesday.\n</think>\n\nOn Tuesday.",
        ),
        (
            "reasoning_response",
            "Reasoning: Counting back three days from Friday: Thursday, Wednesday, Tuesday.\n\nResponse: On Tuesday.",
        ),
    ],
)
def test_cot_layouts(layout, expected):
    conversations, _ = read("cot_temporal", cot_layout=layout)
    assert pairs(conversations[1]) == [
        (
            "user",
            "A symptom began three days before an event that happened on Friday. On which day did it begin?",
        ),
        ("assistant", expected),
    ]
    assert conversations[1].group == "cot_temporal:6-1"
    # A source's own layout option wins over the stage-wide one.
    own, _ = read("cot_temporal", cot_layout="think", options={"layout": "reasoning_response"})
    assert own[1].messages[1]["content"].startswith("Reasoning: ")


def test_cot_record_without_metadata_is_counted():
    _, report = read("cot_clinical_diagnosis")
    assert (report.read, report.kept, report.skipped) == (35, 34, {"missing field 'metadata.reasoning'": 1})


def test_voice_file_per_record_domains_and_lecture_groups():
    conversations, report = read("voice", root=str(SAMPLES))
    # The first three are hand-written; the rest is `python -m datamodules.voice build --mode offline`
    # over datamodules/voice/samples (README), so the demo's stage 3 has lectures on every split.
    assert [(c.group, c.domain) for c in conversations[:3]] == [
        ("voice:lecture-0001", "general_therapeutic"),
        ("voice:lecture-0001", "psychology"),
        ("voice:lecture-0002", "mental_health"),
    ]
    assert {c.group for c in conversations[3:]} == {  # healing-is-not-linear is the held-out lecture
        "voice:attachment-and-safety",
        "voice:emotional-neglect",
        "voice:people-pleasing",
        "voice:shame-and-the-inner-critic",
    }
    assert pairs(conversations[1])[2] == ("user", "So how do I start undoing it?")
    assert report.kept == 36


@pytest.mark.parametrize("stage, kept", [(1, 286), (2, 100), (3, 36)])
def test_every_stage_reads_from_the_samples(stage, kept):
    specs = stage_sources(load_registry({"voice": {"root": str(SAMPLES)}}), stage)
    result = read_sources(specs, SAMPLES, ReadOptions(expert_domains=DOMAINS, progress=False))
    assert len(result.conversations) == kept == sum(r.kept for r in result.report.values())


def test_generic_schemas_for_the_users_own_files_added_without_code():
    own = {
        name: {"path": f"own/{file}", "schema": name, "stage": 1, "domain": "general_therapeutic"}
        for name, file in [
            ("sharegpt", "sharegpt.json"),
            ("messages", "messages.jsonl"),
            ("alpaca", "alpaca.jsonl"),
            ("prompt_response", "prompt_response.csv"),
            ("question_answer", "question_answer.json"),
        ]
    }
    own["sharegpt"]["options"] = {"group_key": "id"}
    specs = {name: spec for name, spec in load_registry(own).items() if name in own}
    result = read_sources(specs, SAMPLES, ReadOptions(expert_domains=DOMAINS, progress=False))
    by_source = {}
    for conversation in result.conversations:
        by_source.setdefault(conversation.source, []).append(pairs(conversation))
    assert by_source["sharegpt"][0] == [
        ("system", "You are a warm, careful counsellor."),
        ("user", "I froze during my presentation today."),
        (
            "assistant",
            "Freezing in front of people is frightening. What was going through your mind just before?",
        ),
    ]
    assert by_source["messages"][1][0] == ("user", "What is grounding?")
    assert by_source["alpaca"][0][0] == (
        "user",
        "Respond as a supportive counsellor.\n\nI failed my driving test again.",
    )
    assert by_source["alpaca"][1][0] == ("user", "Explain what rumination is in two sentences.")
    assert by_source["prompt_response"][0] == [
        ("user", "My teenager won't talk to me, what can I do?"),
        (
            "assistant",
            "Teenagers often talk more side by side than face to face.\nTry a car ride or a walk, and listen more than you ask.",
        ),
    ]
    assert by_source["question_answer"][1][0] == ("user", "What does a panic attack feel like?")
    assert all(report.kept == 2 and not report.skipped for report in result.report.values())
    assert [c.group for c in result.conversations if c.source == "sharegpt"] == [
        "sharegpt:sg-1",
        "sharegpt:sg-2",
    ]


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_every_demo_stage_has_a_test_split(stage):
    """The demo gates read each stage's held-out loss: an empty test split makes it `incomplete`
    (stage 3's lectures are its groups: they must keep their lecture names to spread over splits)."""
    from datamodules.splits import split_by_group

    specs = stage_sources(load_registry({"voice": {"root": str(SAMPLES)}}), stage)
    result = read_sources(specs, SAMPLES, ReadOptions(expert_domains=DOMAINS, progress=False))
    assert split_by_group(result.conversations, 0.2, 0.2)["test"]
