"""The registry: every plan source, stage overrides without code, resolved paths, warnings."""

import re
from pathlib import Path

import pytest

from datamodules.readers import READERS
from datamodules.registry import load_registry, stage_sources

DOMAINS = ("psychology", "mental_health", "bias_detection", "general_therapeutic")


def test_every_plan_source_is_registered_with_a_known_schema_and_domain():
    specs = load_registry()
    paths = {spec.path for spec in specs.values()}
    for plan_path in [
        "mental_health_counseling_conversations",
        "SoulChat2.0",
        "counsel-chat",
        "LLAMA3_Mental_Counseling_Data",
        "therapist-sft-format",
        "neuro_qa_SFT_Trainer",
        "Psych8k",
        "datasets-wendy/priority_1_FINAL.jsonl",
        "datasets-wendy/priority_2_FINAL.jsonl",
        "datasets-wendy/priority_3_FINAL.jsonl",
        "CoT_Reasoning_Clinical_Diagnosis_Mental_Health/CoT_Reasoning_Clinical_Diagnosis_Mental_Health.json",
        "CoT_Heartbreak_and_Breakups_downloaded.json",
        "CoT_Neurodivergent_vs_Neurotypical_Interactions_downloaded.json",
        "CoT_Reasoning_Mens_Mental_Health_downloaded.json",
        "CoT-Reasoning_Cultural_Nuances/CoT-Reasoning_Cultural_Nuances_Dataset.json",
        "CoT_Philosophical_Understanding/CoT_Philosophical_Understanding.json",
        "CoT_Temporal_Reasoning_Dataset/CoT_Temporal_Reasoning_Dataset.json",
        "ai/data/tim_fletcher_voice/synthetic_conversations.json",
    ]:
        assert plan_path in paths
    for spec in specs.values():
        assert spec.schema in READERS and spec.domain in DOMAINS and spec.enabled
    assert [len(stage_sources(specs, s)) for s in (1, 2, 3)] == [10, 7, 1]
    # Every expert domain is fed somewhere; bias_detection by the stage-2 culture/gender/neurotype sets.
    assert {spec.domain for spec in specs.values()} == set(DOMAINS)


def test_stage_yaml_overrides_fields_merges_options_and_adds_sources():
    specs = load_registry(
        {
            "psydt_corpus": {"enabled": False},
            "priority_1": {"options": {"min_quality": 0.9}, "cap": 10},
            "my_notes": {
                "path": "/data/notes.jsonl",
                "schema": "sharegpt",
                "stage": 1,
                "domain": "psychology",
            },
        }
    )
    assert not specs["psydt_corpus"].enabled and "psydt_corpus" not in stage_sources(specs, 1)
    assert specs["priority_1"].options == {"group_key": "conversation_id", "min_quality": 0.9}
    assert specs["priority_1"].cap == 10
    assert specs["my_notes"].resolved_path("/mnt/gdrive/datasets") == Path("/data/notes.jsonl")
    assert list(stage_sources(specs, 1))[-1] == "my_notes"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"amod_counseling": {"shema": "messages"}}, "unknown field(s) ['shema']"),
        (
            {"new_one": {"path": "x.json", "schema": "messages"}},
            "lacks required field(s) ['stage', 'domain']",
        ),
        ({"amod_counseling": {"weight": 0}}, "weight must be > 0"),
        ({"amod_counseling": "off"}, "must be a mapping"),
    ],
)
def test_bad_overrides_name_the_source_and_the_problem(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_registry(override)


def test_paths_resolve_against_data_root_or_the_entry_root():
    specs = load_registry()
    assert specs["amod_counseling"].resolved_path("/d") == Path("/d/mental_health_counseling_conversations")
    # The voice file is written by the voice builder relative to the working directory.
    assert specs["voice"].resolved_path("/d") == Path(
        "ai/data/tim_fletcher_voice/synthetic_conversations.json"
    )
    moved = load_registry({"voice": {"root": "/teamspace/datasets"}})["voice"]
    assert moved.resolved_path("/d") == Path(
        "/teamspace/datasets/ai/data/tim_fletcher_voice/synthetic_conversations.json"
    )


def test_language_and_licence_warnings():
    specs = load_registry()
    chinese, unstated = specs["psydt_corpus"].warnings()
    assert "states no licence" in unstated
    assert "'zh'" in chinese and "psydt_corpus: {enabled: false}" in chinese
    (licence,) = specs["psych8k"].warnings()
    assert "non-commercial" in licence and "CC-BY-NC-SA-4.0" in licence
    assert specs["counsel_chat"].warnings() == []
    assert specs["therapist_sft"].warnings() == [
        "source 'therapist_sft' states no licence: check its terms before any use beyond research"
    ]
