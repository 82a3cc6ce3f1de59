"""datamodules.prepare as its own step: the same data as before the split from the DataModule,
and everything outside Lightning (evaluation, inspect, the launcher, the benchmarks) reads it
without a DataModule."""

import ast
import hashlib
import json
from pathlib import Path

import pytest

from datamodules import datamodule, template
from datamodules.prepare import DataSettings, prepare
from datamodules.template import TemplateError
from moe.batch import IGNORE_INDEX
from stages import evaluate, inspect
from stages.fit import parse_stage_config

ROOT = Path(__file__).resolve().parents[1]

# Measured on the bundled samples with the code before `prepare` existed (StageDataModule.build),
# tiny tokenizer, stages/demo.yaml's settings: (examples, rows, tokens, sha256 of every example's
# input_ids, labels, domain id, source and group, first 16 hex digits) per split.
PINNED = {
    1: {
        "train": (108, 97, 18598, "9ff5367abda47295"),
        "val": (52, 47, 8409, "3996c01dfb0f642a"),
        "test": (52, 49, 8976, "23915a48ae11fe67"),
    },
    2: {
        "train": (46, 42, 8205, "76ed12121e990902"),
        "val": (17, 15, 2996, "95a7e4ab766b8f38"),
        "test": (11, 10, 1816, "75301e7315e544fb"),
    },
    3: {
        "train": (28, 25, 4687, "d71b34d6ea3f2ca9"),
        "val": (14, 14, 2166, "1a40689854ea4d01"),
        "test": (13, 13, 2137, "17364e5bce848a34"),
    },
}


def demo_settings(stage: int, cache_dir: Path, **overrides) -> DataSettings:
    config = parse_stage_config([f"stages/stage{stage}.yaml", "stages/demo.yaml"])
    return DataSettings(**{**config.data.as_dict(), "cache_dir": str(cache_dir), "num_proc": 1, **overrides})


def fingerprint(examples) -> str:
    digest = hashlib.sha256()
    for row in examples.select_columns(["input_ids", "labels", "domain_id", "source", "group"]):
        values = [row["input_ids"], row["labels"], row["domain_id"], row["source"], row["group"]]
        digest.update(json.dumps(values).encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    return prepare(demo_settings(1, tmp_path_factory.mktemp("cache")))


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_prepare_gives_the_same_examples_splits_and_tokens_as_before(stage, stage1, tmp_path):
    prepared = stage1 if stage == 1 else prepare(demo_settings(stage, tmp_path))
    for split, (examples, rows, tokens, digest) in PINNED[stage].items():
        data = prepared.examples[split]
        assert (len(data), len(prepared.plans[split])) == (examples, rows), split
        assert sum(map(len, data["input_ids"])) == tokens == prepared.report["splits"][split]["tokens"]
        assert fingerprint(data) == digest, split
    assert prepared.rows_per_epoch() == PINNED[stage]["train"][1]


def test_prepared_gives_conversations_and_rows(stage1):
    test = stage1.conversations("test")
    assert len(test) == len(stage1.examples["test"]) and test[0].messages[-1]["role"] == "assistant"
    assert stage1.conversations("test", [1]) == [test[1]]
    packed = stage1.rows("train")
    assert len(packed) == PINNED[1]["train"][1] and packed[0]["input_ids"].shape == (256,)
    single = stage1.rows("test", packed=False, limit=3)
    assert len(single) == 3
    assert single[0]["input_ids"].tolist() == stage1.examples["test"][0]["input_ids"]


def test_evaluation_and_inspect_run_without_a_datamodule(stage1, tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("a DataModule was built outside Lightning")

    monkeypatch.setattr(datamodule.StageDataModule, "__init__", refuse)
    loader, sources, domains = evaluate.heldout_loader(stage1, 4)
    batches = list(loader)
    assert sum(len(b["input_ids"]) for b in batches) == 4 == len(sources) == len(domains)
    assert (batches[0]["labels"] != IGNORE_INDEX).any()
    replies = evaluate.human_replies(stage1, 3)
    assert len(replies) == 3 and all(reply for _, reply in replies)
    inspect.main(
        ["--config", "stages/stage1.yaml", "--config", "stages/demo.yaml", f"--data.cache_dir={tmp_path}", "--json"]
    )
    figures = json.loads(capsys.readouterr().out)
    assert figures["splits"]["train"]["rows"] == PINNED[1]["train"][1]


def test_no_command_builds_a_datamodule_outside_lightning():
    """Only the fit (stages/fit.py) and the Lightning hooks use StageDataModule."""
    users = []
    for folder in ("stages", "lightning_app", "benchmarks", "evals"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "datamodules.datamodule":
                    users.append(str(path.relative_to(ROOT)))
    assert users == ["stages/fit.py"]


def test_the_template_self_check_stops_a_mismatched_template(stage1, monkeypatch):
    assert stage1.check_template(2) >= 2
    real = template._labels
    monkeypatch.setattr(template, "_labels", lambda *args: [IGNORE_INDEX] + real(*args)[:-1])  # off by one
    with pytest.raises(TemplateError, match="template self-check failed"):
        stage1.check_template(2)
