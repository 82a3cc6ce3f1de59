import json
import os
import shutil
from collections import Counter

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from datamodules import prepare as preparation
from datamodules import template
from datamodules.datamodule import StageDataModule
from datamodules.sources import SourceError
from datamodules.template import TemplateError
from moe.batch import IGNORE_INDEX

DOMAINS = ["psychology", "mental_health", "bias_detection", "general_therapeutic"]


def write_source(path, n=40, long_every=0):
    rows = []
    for i in range(n):
        reply = f"Reply {i}: that sounds hard; tell me more about week {i}."
        if long_every and i % long_every == 0:
            reply = " ".join(["very long"] * 200)
        rows.append(
            {
                "id": f"c{i}",
                "messages": [
                    {"role": "user", "content": f"Question {i}: I feel low since {i} days."},
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": f"Follow-up {i}."},
                    {"role": "assistant", "content": f"Second answer {i}."},
                ],
            }
        )
    path.write_text(json.dumps(rows))


def make(tmp_path, **settings):
    if not (tmp_path / "mine.json").exists():
        write_source(tmp_path / "mine.json")
    args = dict(
        stage=7,
        base_model="tiny",
        expert_domains=DOMAINS,
        data_root=str(tmp_path),
        sources={
            "mine": {
                "path": "mine.json",
                "schema": "messages",
                "stage": 7,
                "domain": "mental_health",
                "options": {"group_key": "id"},
            },
        },
        cache_dir=str(tmp_path / "cache"),
        max_seq_length=128,
        micro_batch_size=2,
        val_fraction=0.1,
        test_fraction=0.1,
        num_proc=1,
        template_check_examples=2,
    )
    args.update(settings)
    return StageDataModule(**args)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data")
    dm = make(tmp)
    dm.setup("fit")
    return tmp, dm


def rows_of(loader):
    return [tuple(map(tuple, batch["input_ids"].tolist())) for batch in loader]


def test_setup_reports_and_batches_follow_the_contract(built):
    _, dm = built
    mine = dm.prepared.report["sources"]["mine"]
    assert mine["read"] == 40 and mine["kept"] == 40 and mine["skipped"] == {}
    splits = dm.prepared.report["splits"]
    assert sum(s["examples"] for s in splits.values()) == 40
    assert mine["tokens"] == sum(s["tokens"] for s in splits.values())
    assert dm.prepared.report["train_tokens_per_domain"]["mental_health"] == splits["train"]["tokens"]
    assert dm.prepared.report["train_tokens_per_domain"]["bias_detection"] == 0
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {
        "input_ids",
        "labels",
        "position_ids",
        "domain_ids",
        "token_mask",
        "cu_seq_lens",
        "max_length",
    }
    assert batch["input_ids"].shape == (2, 128)
    real = batch["token_mask"]
    assert (batch["domain_ids"][real] == DOMAINS.index("mental_health")).all()
    assert (batch["domain_ids"][~real] == -1).all()
    # Each example in exactly one train row: token counts add up.
    total = sum(int(b["token_mask"].sum()) for b in dm.train_dataloader())
    assert total == splits["train"]["tokens"]
    assert splits["train"]["efficiency"] == pytest.approx(total / (splits["train"]["rows"] * 128))


def test_test_split_is_held_out_by_group(built):
    _, dm = built
    test = dm.prepared.conversations("test")
    train = dm.prepared.conversations("train")
    assert test and {c.group for c in test}.isdisjoint({c.group for c in train})
    assert test[0].messages[0]["role"] == "user" and test[0].domain == "mental_health"
    assert len(list(dm.test_dataloader())) == -(-dm.prepared.report["splits"]["test"]["rows"] // 2)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_train_loader_resumes_mid_epoch_exactly(built, num_workers):
    tmp, dm = built
    dm.num_workers = num_workers
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(3)
    full = rows_of(loader)
    assert len(full) >= 6
    loader.sampler.set_epoch(3)
    iterator = iter(loader)
    seen = [tuple(map(tuple, next(iterator)["input_ids"].tolist())) for _ in range(3)]
    state = loader.state_dict()
    # A new process: a fresh data module from the cache, the loader state from the checkpoint.
    again = make(tmp, num_workers=num_workers)
    again.setup("fit")
    resumed = again.train_dataloader()
    resumed.sampler.set_epoch(3)
    resumed.load_state_dict(state)
    rest = rows_of(resumed)
    assert seen + rest == full  # nothing repeated, nothing skipped
    every_row = Counter(row for batch in full for row in batch)
    assert len(every_row) == dm.prepared.report["splits"]["train"]["rows"] and set(every_row.values()) == {1}
    loader.sampler.set_epoch(4)
    assert rows_of(loader) != full  # a new epoch, a new order (seeded by seed + epoch)


def test_unchanged_second_run_reads_the_cache_and_a_change_rebuilds(built, monkeypatch):
    tmp, dm = built
    calls = []
    monkeypatch.setattr(preparation, "build", lambda settings, target: calls.append(target))
    again = make(tmp)
    assert again.cache_path == dm.cache_path
    again.setup("validate")
    assert calls == [] and again.prepared.report == dm.prepared.report
    assert make(tmp, max_seq_length=256).cache_path != dm.cache_path
    assert make(tmp, system_prompt="Be kind.").cache_path != dm.cache_path
    stat = os.stat(tmp / "mine.json")
    os.utime(tmp / "mine.json", (stat.st_atime, stat.st_mtime + 1))  # touched: maybe edited in place
    assert make(tmp).cache_path != dm.cache_path
    os.utime(tmp / "mine.json", ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_cache_key_follows_the_code_prepare_runs_and_nothing_else(built, tmp_path, monkeypatch):
    """An edit to a reader, the cleaning, the template, a package's __init__.py or the batch
    contract changes the key; an edit to the voice builder or the API client keeps the cache.
    Keyed by path, not basename: the packages' several __init__.py files are all counted."""
    _, dm = built
    root = tmp_path / "repo"
    for package in ("datamodules", "moe"):
        shutil.copytree(
            preparation.REPO_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "samples")
        )
    monkeypatch.setattr(preparation, "REPO_ROOT", root)
    before = dm.cache_key()
    code = root / "datamodules"
    changes = [
        *sorted(code.glob("readers/*.py")),
        code / "__init__.py",
        code / "cleaning.py",
        code / "template.py",
        code / "prepare.py",
        root / "moe" / "batch.py",
        root / "moe" / "base_model.py",
    ]
    assert len(changes) >= 10
    for path in changes:
        original = path.read_bytes()
        path.write_bytes(original + b"\n# edited\n")
        assert dm.cache_key() != before, path
        path.write_bytes(original)
    keeps = [*sorted(code.glob("voice/*.py")), code / "openai_client.py", code / "datamodule.py"]
    assert len(keeps) >= 5
    for path in keeps:
        path.write_bytes(path.read_bytes() + b"\n# edited\n")
    assert dm.cache_key() == before


def test_num_proc_defaults_to_the_machines_cores(built):
    tmp, _ = built
    assert make(tmp, num_proc=None).num_proc == len(os.sched_getaffinity(0)) == preparation.machine_cores()


def test_empty_held_out_splits_are_allowed(tmp_path):
    dm = make(tmp_path, val_fraction=0.0, test_fraction=0.0, template_check_examples=0)
    dm.setup("fit")
    assert dm.prepared.report["splits"]["val"] == {
        "examples": 0,
        "rows": 0,
        "tokens": 0,
        "trained_tokens": 0,
        "efficiency": 0.0,
    }
    assert list(dm.val_dataloader()) == [] and dm.prepared.conversations("test") == []
    assert dm.prepared.report["splits"]["train"]["examples"] == 40


def test_padding_mode_one_example_per_row_with_attention_mask(tmp_path):
    dm = make(tmp_path, packing=False, template_check_examples=0)
    dm.setup("fit")
    splits = dm.prepared.report["splits"]
    assert splits["train"]["rows"] == splits["train"]["examples"]
    batch = next(iter(dm.train_dataloader()))
    assert torch.equal(batch["attention_mask"].bool(), batch["token_mask"])
    assert batch["input_ids"].shape[1] == int(batch["token_mask"].sum(1).max())


def test_overlong_conversations_are_cut_or_dropped_and_counted(tmp_path):
    write_source(tmp_path / "mine.json", n=20, long_every=5)  # 4 conversations with a 400-token first reply
    dropped = make(tmp_path, overflow="drop", template_check_examples=0)
    dropped.setup("validate")
    mine = dropped.prepared.report["sources"]["mine"]
    assert mine["skipped"] == {"longer than max_seq_length 128": 4} and mine["kept"] == 16
    short = make(tmp_path, max_seq_length=64, overflow="truncate", template_check_examples=0)
    short.setup("validate")  # truncate: keep the first turn
    mine = short.prepared.report["sources"]["mine"]
    assert mine["truncated"] == 16 and mine["skipped"] == {"longer than max_seq_length 64": 4}
    windows = make(tmp_path, max_seq_length=64, template_check_examples=0)  # the default, `window`
    windows.setup("validate")
    mine = windows.prepared.report["sources"]["mine"]
    # every conversation becomes one window per exchange; only the 400-token replies are lost
    assert mine["windowed"] == 20 and mine["windows"] == 36 and mine["skipped"] == {} and mine["kept"] == 20
    assert sum(s["examples"] for s in windows.prepared.report["splits"].values()) == 36
    lost = mine["tokens_lost"]  # four identical 400-token replies and their end-of-turn tokens
    assert lost % 4 == 0 and lost // 4 > 200


def test_missing_path_and_unknown_schema_stop_at_construction(tmp_path):
    with pytest.raises(SourceError, match=r"source 'mine': .*nowhere.json does not exist"):
        make(
            tmp_path,
            sources={
                "mine": {"path": "nowhere.json", "schema": "messages", "stage": 7, "domain": "psychology"}
            },
        )
    write_source(tmp_path / "mine.json", n=2)
    with pytest.raises(SourceError, match="unknown schema 'chatml'"):
        make(
            tmp_path,
            sources={"mine": {"path": "mine.json", "schema": "chatml", "stage": 7, "domain": "psychology"}},
        )
    with pytest.raises(SourceError, match="stage 8 has no enabled source"):
        make(tmp_path, stage=8)


def test_registry_weight_repeats_train_examples_only(built):
    tmp, dm = built
    sources = {
        "mine": {
            "path": "mine.json",
            "schema": "messages",
            "stage": 7,
            "domain": "mental_health",
            "weight": 2.0,
            "options": {"group_key": "id"},
        }
    }
    doubled = make(tmp, sources=sources, template_check_examples=0)
    doubled.setup("validate")
    before, after = dm.prepared.report["splits"], doubled.prepared.report["splits"]
    assert after["train"]["examples"] == 2 * before["train"]["examples"]
    assert after["val"] == before["val"] and after["test"] == before["test"]


class Recorder(LightningModule):
    """Trains nothing; records which rows each step saw."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen += [tuple(row) for row in batch["input_ids"].tolist()]
        return self.weight * 0 + batch["token_mask"].float().mean() * self.weight

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp, ckpt_path=None, **trainer_args):
    """One fit of the recorder on the cached data; returns the rows it saw."""
    module = Recorder()
    trainer = Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp,
        **trainer_args,
    )
    trainer.fit(module, datamodule=make(tmp), ckpt_path=ckpt_path)
    return module.seen


def test_lightning_resume_mid_epoch_neither_repeats_nor_skips(built):
    """A checkpoint written mid-epoch during training (as the stage's timed checkpoint is) resumes
    with the very next row: the prefetched batch is neither lost nor replayed."""
    tmp, dm = built
    full = fit(tmp, max_epochs=2, enable_checkpointing=False)
    assert len(full) == 2 * dm.prepared.report["splits"]["train"]["rows"]
    every_3 = ModelCheckpoint(dirpath=tmp / "ckpt", every_n_train_steps=3, save_top_k=-1, filename="{step}")
    first = fit(tmp, max_steps=5, callbacks=[every_3])
    assert first == full[:10]
    rest = fit(tmp, max_epochs=2, enable_checkpointing=False, ckpt_path=tmp / "ckpt" / "step=3.ckpt")
    assert first[:6] + rest == full


def test_fit_setup_runs_the_template_self_check(built, monkeypatch):
    tmp, _ = built
    real = template._labels
    monkeypatch.setattr(template, "_labels", lambda *args: [IGNORE_INDEX] + real(*args)[:-1])
    make(tmp).setup("validate")  # no check outside fit
    with pytest.raises(TemplateError, match="template self-check failed"):
        make(tmp).setup("fit")
