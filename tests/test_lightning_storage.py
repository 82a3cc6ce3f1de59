"""Uploads, checkpoint publishing without atomic rename, and the launch preflight."""

import hashlib
import json
import os

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_app import checkpoints, transfer, upload
from lightning_app.preflight import PreflightError, check_job_inputs
from lightning_app.transfer import TransferError


def make_tree(root, files):
    for rel, size in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(os.urandom(size))


FILES = {"counsel-chat/chat.csv": 3000, "amod/combined_dataset.json": 5000, "cot/a.json": 700}


def test_upload_copies_files_with_a_manifest(tmp_path):
    make_tree(tmp_path / "data", FILES | {"counsel-chat/unrelated.bin": 10})
    entries = upload.upload_files(tmp_path / "data", sorted(FILES), tmp_path / "store")
    manifest = json.loads((tmp_path / "store" / upload.MANIFEST_NAME).read_text())["files"]
    assert sorted(manifest) == sorted(FILES) == sorted(entries)
    for rel, size in FILES.items():
        data = (tmp_path / "data" / rel).read_bytes()
        assert (tmp_path / "store" / rel).read_bytes() == data
        assert manifest[rel] == {"size": size, "sha256": hashlib.sha256(data).hexdigest()}
    assert not (tmp_path / "store" / "counsel-chat" / "unrelated.bin").exists()


def test_upload_names_missing_files(tmp_path):
    make_tree(tmp_path / "data", {"a.json": 10})
    with pytest.raises(FileNotFoundError, match="b.json.*data_root"):
        upload.upload_files(tmp_path / "data", ["a.json", "b.json"], tmp_path / "store")


def test_interrupted_upload_resumes(tmp_path, monkeypatch):
    make_tree(tmp_path / "data", FILES)
    order = ["cot/a.json", "counsel-chat/chat.csv", "amod/combined_dataset.json"]
    real_copy = transfer.copy_file

    def killed_halfway(src, dst, expected=None):
        if src.name == "chat.csv":  # half written, then the process dies
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
            raise KeyboardInterrupt
        return real_copy(src, dst, expected)

    monkeypatch.setattr(upload, "copy_file", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        upload.upload_files(tmp_path / "data", order, tmp_path / "store")
    manifest = tmp_path / "store" / upload.MANIFEST_NAME
    assert list(json.loads(manifest.read_text())["files"]) == ["cot/a.json"]

    copied = []

    def recording(src, dst, expected=None):
        copied.append(src.name)
        return real_copy(src, dst, expected)

    monkeypatch.setattr(upload, "copy_file", recording)
    upload.upload_files(tmp_path / "data", order, tmp_path / "store")
    assert copied == ["chat.csv", "combined_dataset.json"]  # a.json skipped, chat.csv copied again whole
    assert sorted(json.loads(manifest.read_text())["files"]) == sorted(order)
    upload.upload_files(tmp_path / "data", order, tmp_path / "store")
    assert len(copied) == 2  # a finished upload copies nothing again
    for rel in FILES:
        assert (tmp_path / "store" / rel).read_bytes() == (tmp_path / "data" / rel).read_bytes()


def test_copy_never_opens_the_destination_for_update_nor_reads_it_back(tmp_path, monkeypatch):
    make_tree(tmp_path, {"src.bin": 4000})
    (tmp_path / "dst.bin").write_bytes(b"x" * 4000)  # an existing object of the same size
    real_open, modes = open, []

    def spy(file, mode="r", *args, **kwargs):
        modes.append((os.path.basename(str(file)), mode))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    entry = transfer.copy_file(tmp_path / "src.bin", tmp_path / "dst.bin")
    monkeypatch.undo()
    assert modes == [("src.bin", "rb"), ("dst.bin", "wb")]
    data = (tmp_path / "src.bin").read_bytes()
    assert (tmp_path / "dst.bin").read_bytes() == data and entry.sha256 == hashlib.sha256(data).hexdigest()


def test_a_source_that_changed_since_it_was_listed_is_refused(tmp_path):
    make_tree(tmp_path, {"src.bin": 100})
    listed = transfer.describe(tmp_path / "src.bin")
    (tmp_path / "src.bin").write_bytes(b"changed")
    with pytest.raises(TransferError, match="src.bin: its size/sha256 .* differ from the expected"):
        transfer.copy_file(tmp_path / "src.bin", tmp_path / "dst.bin", expected=listed)


def test_publish_marks_complete_only_after_the_copy(tmp_path):
    make_tree(tmp_path / "local", {"checkpoint-final/adapter.safetensors": 900, "checkpoint-final/adapter_config.json": 50})
    local, remote = tmp_path / "local" / "checkpoint-final", tmp_path / "store" / "checkpoint-final"
    first = checkpoints.publish(local, remote)
    assert first.name == "checkpoint-final~1" and checkpoints.current(remote) == first
    marker = json.loads(checkpoints.marker_path(first).read_text())["files"]
    assert sorted(marker) == ["adapter.safetensors", "adapter_config.json"]
    assert checkpoints.publish(local, remote) is None  # the marker already lists these files: no copy
    (first / "adapter.safetensors").write_bytes(b"truncated")  # a copy cut short
    assert not checkpoints.is_complete(remote)

    (local / "adapter_config.json").unlink()  # a new version replaces the old: stale files go
    second = checkpoints.publish(local, remote)
    assert second.name == "checkpoint-final~2" and not first.exists()
    assert sorted(p.name for p in second.iterdir()) == ["adapter.safetensors"]
    assert checkpoints.is_complete(remote)
    checkpoints.fetch(remote, tmp_path / "back")
    assert (tmp_path / "back" / "adapter.safetensors").read_bytes() == (local / "adapter.safetensors").read_bytes()


def test_pull_fetches_only_complete_items(tmp_path):
    make_tree(tmp_path / "local", {"last.ckpt": 300, "step=10.ckpt": 200})
    checkpoints.push(tmp_path / "local", tmp_path / "store")
    checkpoints.marker_path(checkpoints.current(tmp_path / "store" / "step=10.ckpt")).unlink()
    assert checkpoints.pull(tmp_path / "store", tmp_path / "resume") == ["last.ckpt"]
    assert (tmp_path / "resume" / "last.ckpt").read_bytes() == (tmp_path / "local" / "last.ckpt").read_bytes()
    assert not (tmp_path / "resume" / "step=10.ckpt").exists()


def test_push_publishes_only_what_changed(tmp_path):
    make_tree(tmp_path / "local", {"last.ckpt": 300, ".last.ckpt.tmp-7": 10})
    published = {}
    assert checkpoints.push(tmp_path / "local", tmp_path / "store", published) == ["last.ckpt"]
    assert checkpoints.push(tmp_path / "local", tmp_path / "store", published) == []
    (tmp_path / "local" / "last.ckpt").write_bytes(b"newer")
    assert checkpoints.push(tmp_path / "local", tmp_path / "store", published) == ["last.ckpt"]
    assert checkpoints.current(tmp_path / "store" / "last.ckpt").read_bytes() == b"newer"
    os.utime(tmp_path / "local" / "last.ckpt")  # touched, same bytes (a fresh process has no map either)
    assert checkpoints.push(tmp_path / "local", tmp_path / "store", {}) == []


def test_push_deletes_on_storage_what_the_fit_deleted_but_never_from_an_empty_folder(tmp_path):
    local, remote = tmp_path / "local", tmp_path / "store"
    make_tree(local, {"last.ckpt": 300, "best-step=2.ckpt": 200})
    published = {}
    checkpoints.push(local, remote, published)
    (local / "best-step=2.ckpt").rename(local / "best-step=4.ckpt")  # a new best replaced the old one
    assert checkpoints.push(local, remote, published) == ["best-step=4.ckpt", "-best-step=2.ckpt"]
    assert sorted(p.name for p in checkpoints.complete_items(remote)) == ["best-step=4.ckpt", "last.ckpt"]
    assert sorted(p.name for p in remote.iterdir()) == sorted(
        ["best-step=4.ckpt~1", "best-step=4.ckpt~1.complete.json", "last.ckpt~1", "last.ckpt~1.complete.json"]
    )
    assert checkpoints.push(tmp_path / "empty", remote) == []  # no last.ckpt here: nothing is deleted
    assert len(checkpoints.complete_items(remote)) == 2


def test_mirror_callback_publishes_during_fit(tmp_path):
    local, remote = tmp_path / "scratch", tmp_path / "store"
    trainer = Trainer(
        max_steps=4,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            ModelCheckpoint(dirpath=local, every_n_train_steps=2, save_last=True, save_top_k=-1),
            checkpoints.MirrorCheckpoints(str(local), str(remote)),
        ],
    )
    trainer.fit(BoringModel())
    names = sorted(item.name for item in checkpoints.complete_items(remote))
    assert names == sorted(p.name for p in local.iterdir()) == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "last.ckpt"]
    assert checkpoints.current(remote / "last.ckpt").read_bytes() == (local / "last.ckpt").read_bytes()


def test_background_publish_retries_a_transient_storage_error(tmp_path, monkeypatch):
    make_tree(tmp_path / "local", {"last.ckpt": 300})
    real_copy, failures, waits = checkpoints.copy_file, [], []

    def flaky_copy(src, dst, expected=None):
        if len(failures) < 2:
            failures.append(dst)
            raise OSError(5, "Input/output error (the mount dropped)")
        return real_copy(src, dst, expected)

    monkeypatch.setattr(checkpoints, "copy_file", flaky_copy)
    monkeypatch.setattr(checkpoints.time, "sleep", waits.append)
    mirror = checkpoints.MirrorCheckpoints(str(tmp_path / "local"), str(tmp_path / "store"), retries=2, backoff_s=3)
    rank0 = type("Rank0", (), {"is_global_zero": True})()
    mirror.sync(rank0, wait=True)
    assert len(failures) == 2 and waits == [3, 6]  # waited, then twice as long
    assert checkpoints.current(tmp_path / "store" / "last.ckpt").read_bytes() == (tmp_path / "local" / "last.ckpt").read_bytes()

    monkeypatch.setattr(checkpoints, "copy_file", lambda *a, **k: (_ for _ in ()).throw(OSError(5, "still down")))
    (tmp_path / "local" / "last.ckpt").write_bytes(b"newer")
    mirror.sync(rank0)
    with pytest.raises(OSError, match="still down"):  # past its retries it ends the fit
        mirror.join()
    assert checkpoints.is_complete(tmp_path / "store" / "last.ckpt")  # the previous version still trusted


def test_preflight_lists_what_is_missing(tmp_path):
    store = tmp_path / "store"
    make_tree(store, {"amod/combined_dataset.json": 50})
    with pytest.raises(PreflightError) as error:
        check_job_inputs(
            "stage2",
            {"amod": ["amod/combined_dataset.json"], "cot_anxiety": ["cot/anxiety.json"]},
            store,
            previous_checkpoint=tmp_path / "ckpt" / "stage1" / "checkpoint-final",
            upload_hint="python -m lightning_app.upload --config stages/stage2.yaml --to " + str(store),
        )
    message = str(error.value)
    assert message.startswith("stage2 cannot start, missing on the job's storage:")
    assert f"source cot_anxiety: cot/anxiety.json is neither at {store}/cot/anxiety.json nor in the upload manifest" in message
    assert "amod" not in message.split("fix:")[0]
    assert "stage1/checkpoint-final is not complete (no version of it with a valid checkpoint-final.complete.json" in message
    assert "python -m lightning_app.upload --config stages/stage2.yaml" in message
    assert "finish the previous stage first" in message


def test_preflight_trusts_the_manifest_when_storage_is_not_visible(tmp_path):
    make_tree(tmp_path / "data", {"cot/anxiety.json": 70})
    upload.upload_files(tmp_path / "data", ["cot/anxiety.json"], tmp_path / "uploaded")
    manifest = tmp_path / "uploaded" / upload.MANIFEST_NAME
    not_mounted = tmp_path / "teamspace" / "s3_connections" / "data"
    check_job_inputs("stage2", {"cot": ["cot/anxiety.json"]}, not_mounted, None, "-", manifest_path=manifest)
    with pytest.raises(PreflightError, match="cot/other.json is neither"):
        check_job_inputs("stage2", {"cot": ["cot/other.json"]}, not_mounted, None, "-", manifest_path=manifest)


def test_preflight_catches_an_interrupted_upload(tmp_path):
    make_tree(tmp_path / "data", {"cot/anxiety.json": 70})
    upload.upload_files(tmp_path / "data", ["cot/anxiety.json"], tmp_path / "store")
    (tmp_path / "store" / "cot/anxiety.json").write_bytes(b"part")
    with pytest.raises(PreflightError, match="has 4 bytes, the upload manifest says 70"):
        check_job_inputs("stage2", {"cot": ["cot/anxiety.json"]}, tmp_path / "store", None, "-")


def test_push_stage_publishes_checkpoints_one_by_one_and_the_rest_as_items(tmp_path):
    stage = tmp_path / "scratch" / "stage1"
    make_tree(stage, {"checkpoints/last.ckpt": 100, "checkpoints/best-step=4.ckpt": 90,
                      "checkpoint-final/adapter.safetensors": 80, "config.yaml": 10})  # fmt: skip
    remote = tmp_path / "store" / "stage1"
    names = checkpoints.push_stage(stage, remote)
    assert sorted(names) == ["checkpoint-final", "checkpoints/best-step=4.ckpt", "checkpoints/last.ckpt", "config.yaml"]
    assert checkpoints.is_complete(remote / "checkpoint-final")
    assert [p.name for p in checkpoints.complete_items(remote / "checkpoints")] == ["best-step=4.ckpt", "last.ckpt"]
    assert checkpoints.main(["pull", str(remote / "checkpoints"), str(tmp_path / "resume")]) == 0
    assert (tmp_path / "resume" / "last.ckpt").read_bytes() == (stage / "checkpoints" / "last.ckpt").read_bytes()
