"""One way to read settings files (datamodules.typed_settings): jsonargparse types and builds the
dataclasses; every error names the file, the key's path and what is known."""

import copy
from dataclasses import dataclass

import pytest
import yaml

from datamodules.typed_settings import build
from evals.settings import load_settings
from lightning_app.jobs_config import JOBS_YAML, load_jobs_config


@dataclass(frozen=True)
class Entry:
    size: int
    label: str | None


@dataclass(frozen=True)
class Book:
    title: str
    entries: dict[int, Entry]
    extra: Entry | None = None


def test_types_are_converted_and_entries_built():
    book = build(Book, {"title": "t", "entries": {"1": {"size": 2, "label": None}}}, "book.yaml")
    assert book == Book("t", {1: Entry(2, None)})


@pytest.mark.parametrize(
    "values, message",
    [
        # jsonargparse alone would take a missing `str | None` as None, and drop an empty unknown mapping
        ({"title": "t", "entries": {1: {"size": 2}}}, "book.yaml: entries.1: lacks required field(s) ['label']"),
        ({"title": "t", "entries": {1: {"size": 2, "label": "a", "colour": {}}}},
         "book.yaml: entries.1: unknown field(s) ['colour']; known: ['label', 'size']"),
        ({"title": "t", "entries": {}, "extra": {"size": 1, "label": "a", "x": 1}},
         "book.yaml: extra: unknown field(s) ['x']; known: ['label', 'size']"),
        ({"title": "t", "entries": {1: {"size": "big", "label": "a"}}}, "book.yaml: entries.1: size: Expected a <class 'int'>"),
        ({"title": "t", "entries": []}, "book.yaml: entries: Expected a <class 'dict'>"),
        ("t", "book.yaml: expected a mapping of ['title', 'entries', 'extra'], got 't'"),
    ],
)  # fmt: skip
def test_errors_name_the_file_the_key_and_the_fix(values, message):
    with pytest.raises(ValueError) as error:
        build(Book, values, "book.yaml")
    assert str(error.value).startswith(message)


def test_a_second_build_of_the_same_values_is_an_equal_copy():
    values = {"title": "t", "entries": {1: {"size": 2, "label": "a"}}}
    first, second = build(Book, values, "book.yaml"), build(Book, values, "book.yaml")
    assert first == second and first.entries is not second.entries


def test_evaluation_settings_layers_replace_a_stage_whole_and_name_the_stage(tmp_path):
    partial = tmp_path / "mine.yaml"
    partial.write_text("human_review: {stages: {2: {min_prompts: 5, min_win_rate: 0.5, unsafe_means_retrain: false, required: true}}}\n")
    shipped, mine = load_settings(), load_settings(partial)
    assert mine.review_gate(2).min_prompts == 5 and mine.review_gate(2).required
    assert mine.review_gate(1) == shipped.review_gate(1) and mine.review_gate(3) == shipped.review_gate(3)
    partial.write_text("human_review: {stages: {2: {min_prompts: 5}}}\n")
    with pytest.raises(ValueError, match=r"mine.yaml over .*: human_review.stages.2: lacks required field\(s\) \['min_win_rate'"):
        load_settings(partial)
    partial.write_text("gate: {stages: {3: {thresholdz: {}}}}\n")
    with pytest.raises(ValueError, match=r"gate.stages.3: unknown field\(s\) \['thresholdz'\]; known: \['max_forgetting_ratio'"):
        load_settings(partial)
    partial.write_text("epochs: 0\n")
    with pytest.raises(ValueError, match="mine.yaml over .*: epochs must be at least 1"):
        load_settings(partial)


def jobs(tmp_path, change) -> str:
    raw = copy.deepcopy(yaml.safe_load(JOBS_YAML.read_text()))
    change(raw)
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_jobs_yaml_stage_entries_inherit_the_job_defaults(tmp_path):
    config = load_jobs_config(jobs(tmp_path, lambda raw: raw["stages"].update(stage2={"hours": 3}, stage3=None)))
    assert config.for_stage("stage2").hours == 3 and config.for_stage("stage2").machine == config.job.machine
    assert config.for_stage("stage3") == config.job == config.for_stage("custom")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda raw: raw["stages"].update(stage1={"machin": "A100"}),
         "jobs.yaml: stages.stage1: unknown field(s) ['machin']; known: ['hours', 'machine',"),
        (lambda raw: raw["stages"].update(stage1={"strategy": "zero"}), "jobs.yaml: stages.stage1: strategy 'zero': no "),
        (lambda raw: raw["caches"].update(tokens="/x"), "jobs.yaml: caches: unknown field(s) ['tokens']; known: ['data', 'hf_home']"),
        (lambda raw: raw.pop("storage"), "jobs.yaml: lacks required field(s) ['storage']"),
        (lambda raw: raw["environment"].update(HF_TOKEN="x"), "jobs.yaml: ['HF_TOKEN'] are both pass_env and environment"),
    ],
)  # fmt: skip
def test_jobs_yaml_errors_name_the_key_and_the_fix(tmp_path, change, message):
    with pytest.raises(ValueError) as error:
        load_jobs_config(jobs(tmp_path, change))
    assert message in str(error.value)
