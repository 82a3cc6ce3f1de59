"""stages.fit end to end on CPU: the tiny model, the bundled samples, a few optimizer steps.

Most runs call stages.fit.main in this process (seconds each); the SIGKILL test needs real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import logging
import multiprocessing
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import moe.lightning_module as lightning_module
from stages.checkpoint_io import atomic_torch_save
from stages.final import REDACTED, _redact
from datamodules.datamodule import StageDataModule
from moe.lightning_module import MoELoRAModule
from stages.fit import COMMON_CONFIG, EXIT_NONFINITE, EXIT_PREEMPTED, StageCLI, main

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "datamodules" / "samples"


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: several torch threads per process spin against each other (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One tokenized-data cache for the whole file (each stage's data is built once)."""
    return tmp_path_factory.mktemp("data_cache")


def demo_args(out: Path, cache: Path, stage: int = 1, *extra: str) -> list[str]:
    return [
        "--config", str(REPO / f"stages/stage{stage}.yaml"),
        "--config", str(REPO / "stages/demo.yaml"),
        "--data.data_root", str(SAMPLES),
        "--data.cache_dir", str(cache),
        "--data.sources", json.dumps({"voice": {"root": str(SAMPLES)}}),
        "--run.output_root", str(out),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


def stage_dir(out: Path, stage: int = 1) -> Path:
    return out / {1: "therapeutic_moe_stage1", 2: "therapeutic_moe_stage2", 3: "therapeutic_moe_stage3_FINAL"}[stage]


def adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "checkpoint-final" / "adapter.safetensors")


def ckpt(path: Path) -> dict:
    return torch.load(path, weights_only=False, map_location="cpu")


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, cache) -> Path:
    """Stage 1 of the demo, run once: 4 optimizer steps, validation every 2."""
    out = tmp_path_factory.mktemp("stage1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope: runs before the one_thread fixture
    main(demo_args(out, cache, 1, "--trainer.max_steps", "4", "--run.val_every_n_steps", "2"))
    torch.set_num_threads(threads)
    return out


@pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")
def test_building_the_fit_writes_nothing_until_it_starts(stage1, tmp_path, cache):
    """Parsing the config and building the model, data and trainer (StageCLI) writes no file; the W&B
    run id chosen then is kept with the checkpoints once the fit starts (stage 1's run did)."""
    cli = StageCLI(
        MoELoRAModule, StageDataModule, run=False, auto_configure_optimizers=False, save_config_callback=None,
        parser_kwargs={"default_config_files": [str(COMMON_CONFIG)]}, args=demo_args(tmp_path / "out", cache),
    )  # fmt: skip
    assert cli.run.stage_dir == tmp_path / "out" / "therapeutic_moe_stage1" and not (tmp_path / "out").exists()
    assert cli.config.trainer.logger[0].init_args.id.startswith("therapeutic_moe_stage1-")
    kept = (stage_dir(stage1) / "checkpoints" / "wandb_run_id").read_text().strip()
    assert kept.startswith("therapeutic_moe_stage1-") and kept != cli.config.trainer.logger[0].init_args.id


def test_tiny_fit_writes_checkpoint_final_and_adapter_only_checkpoints(stage1):
    folder = stage_dir(stage1)
    final = folder / "checkpoint-final"
    for name in ("adapter.safetensors", "adapter_config.json", "tokenizer.json", "config.yaml", "metrics.json"):
        assert (final / name).is_file(), name
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["stop_reason"] == "max_steps" and metrics["global_step"] == 4
    assert metrics["schedule"]["total_steps"] == 4 and metrics["schedule"]["cut_by"] == "max_steps"
    assert 0 < metrics["val_loss"] < 20 and abs(metrics["val_ppl"] - torch.tensor(metrics["val_loss"]).exp()) < 1e-2
    gates = json.loads((final / "adapter_config.json").read_text())["observed_gates"]
    assert gates and all(abs(sum(g) - 1) < 1e-4 and len(g) == 4 for g in gates.values())
    # checkpoint-final is the best validation check's weights (validation ran at steps 2 and 4).
    checks = val_checks(folder)
    # The two checks of the fit, then checkpoint-final's own validation of the best checkpoint.
    assert len(checks) == 3 and metrics["val_loss"] == pytest.approx(min(checks[:2]), abs=1e-6)
    assert checks[2] == pytest.approx(metrics["val_loss"], abs=1e-6)
    # Checkpoints: adapter and router weights only, plus optimizer, scheduler, loop and RNG state.
    last = ckpt(folder / "checkpoints" / "last.ckpt")
    keys = set(last["state_dict"])
    assert keys == {f"model.{k}" for k in adapter(folder)}
    assert all(("lora" in k or "router" in k) for k in keys)
    assert last["optimizer_states"] and last["lr_schedulers"] and "RngState" in last["callbacks"]
    csv = (folder / "csv_logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("train_loss", "train_ppl", "train_balance", "train_z", "train_domain", "val_loss", "val_ppl",
                   "grad_norm", "tokens_per_s", "lr-AdamW", "expert_use/mental_health/psychology"):  # fmt: skip
        assert column in csv, column


def test_shipped_stage_yamls_run_in_order(tmp_path, monkeypatch):
    """stage1/2/3.yaml as shipped, overriding only base model, data root, precision, accelerator and
    max_steps; the working directory stands in for the output root and holds stage 3's voice file."""
    voice = Path("ai/data/tim_fletcher_voice/synthetic_conversations.json")
    (tmp_path / voice).parent.mkdir(parents=True)
    shutil.copy(SAMPLES / voice, tmp_path / voice)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # the data cache's default place
    for stage in (1, 2, 3):
        main([
            "--config", str(REPO / f"stages/stage{stage}.yaml"),
            "--model.base_model", "tiny",
            "--data.data_root", str(SAMPLES),
            "--trainer.precision", "32-true",
            "--trainer.accelerator", "cpu",
            "--trainer.max_steps", "2",
        ])  # fmt: skip
        final = stage_dir(tmp_path, stage) / "checkpoint-final"
        assert json.loads((final / "metrics.json").read_text())["global_step"] <= 2
        config = json.loads((final / "adapter_config.json").read_text())
        assert config["base_model"] == "tiny" and config["moe"]["num_experts"] == 4
    second, third = adapter(stage_dir(tmp_path, 2)), adapter(stage_dir(tmp_path, 3))
    assert any(not torch.equal(second[k], third[k]) for k in second)  # stage 3 trained on from stage 2


def test_stage2_starts_from_exactly_stage1_final_weights(stage1, cache):
    # lr 0: every AdamW update is zero, so stage 2's final adapter is the one it started from.
    main(demo_args(stage1, cache, 2, "--trainer.max_steps", "2", "--model.lr", "0"))
    first, second = adapter(stage_dir(stage1, 1)), adapter(stage_dir(stage1, 2))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    metrics = json.loads((stage_dir(stage1, 2) / "checkpoint-final" / "metrics.json").read_text())
    assert metrics["global_step"] == 2  # a fresh loop and schedule, not stage 1's step 4


def test_missing_previous_stage_fails_before_the_base_model_loads(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(lightning_module, "load_base_model", _no_base_model)
    with pytest.raises(SystemExit, match="no finished previous stage at .*therapeutic_moe_stage1/checkpoint-final"):
        main(demo_args(tmp_path, cache, 2))


def test_previous_stage_built_for_another_expert_count_is_refused(stage1, tmp_path, cache, monkeypatch):
    shutil.copytree(stage_dir(stage1), stage_dir(tmp_path))
    monkeypatch.setattr(lightning_module, "load_base_model", _no_base_model)
    three = ["--model.moe.num_experts", "3", "--model.moe.expert_domains", '["psychology","mental_health","bias_detection"]']
    with pytest.raises(SystemExit, match=r"built for another model: num_experts 4 != 3"):
        main(demo_args(tmp_path, cache, 2, *three))


def test_missing_data_root_fails_before_the_base_model_loads(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(lightning_module, "load_base_model", _no_base_model)
    with pytest.raises(SystemExit, match="does not exist; .*set data_root"):
        main([*demo_args(tmp_path, cache), "--data.data_root", str(tmp_path / "nowhere")])


def test_unknown_source_schema_fails_before_the_base_model_loads(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(lightning_module, "load_base_model", _no_base_model)
    extra = {"extra": {"path": "x.json", "schema": "no_such_schema", "stage": 1, "domain": "psychology"}}
    with pytest.raises(SystemExit, match="no_such_schema"):
        main([*demo_args(tmp_path, cache), "--data.sources", json.dumps(extra)])


def test_unknown_source_name_fails_before_the_base_model_loads(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(lightning_module, "load_base_model", _no_base_model)
    with pytest.raises(SystemExit, match="source 'no_such_source' .*: lacks required field"):
        main([*demo_args(tmp_path, cache), "--data.sources", json.dumps({"no_such_source": {"enabled": True}})])


def test_checkpoint_with_a_missing_adapter_key_is_refused(stage1, tmp_path, cache):
    state = ckpt(stage_dir(stage1) / "checkpoints" / "last.ckpt")
    dropped = sorted(state["state_dict"])[0]
    del state["state_dict"][dropped]
    broken = tmp_path / "broken.ckpt"
    torch.save(state, broken)
    with pytest.raises(SystemExit, match=f"1 missing key\\(s\\) \\['{dropped}'\\]"):
        main(demo_args(tmp_path, cache, 1, "--ckpt_path", str(broken)))


def test_timed_checkpoint_fires_at_its_interval(tmp_path, cache, monkeypatch):
    saved: list[tuple[str, int]] = []
    real_save = torch.save

    def spy(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "global_step" in obj:
            saved.append((Path(f.name).name.split(".tmp")[0].lstrip("."), obj["global_step"]))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    # One micro-batch per step: 3 batches per epoch (limit_train_batches, whatever the samples hold).
    args = ["--trainer.max_steps", "4", "--run.val_every_n_steps", "100", "--trainer.accumulate_grad_batches", "1",
            "--trainer.limit_train_batches", "3", "--trainer.max_epochs", "2"]  # fmt: skip
    main(demo_args(tmp_path / "slow", cache, 1, *args))  # 30-minute interval: last.ckpt only at the end
    assert [s for s in saved if s[0] == "last.ckpt"] == [("last.ckpt", 4)]
    saved.clear()
    main(demo_args(tmp_path / "fast", cache, 1, *args, "--run.checkpoint_every_minutes", "0.0001"))
    # Every step but 3, the epoch's last batch (a resume from there would skip an epoch: StepCheckpoint).
    assert [step for name, step in saved if name == "last.ckpt"] == [1, 2, 4]


def test_early_stopping_after_three_checks_without_improvement(tmp_path, cache):
    # lr 0: the validation loss never improves after the first check, so checks 2, 3, 4 stop the run.
    args = ["--model.lr", "0", "--run.val_every_n_steps", "1", "--trainer.max_steps", "8"]
    main(demo_args(tmp_path, cache, 1, *args, "--trainer.accumulate_grad_batches", "1"))
    metrics = json.loads((stage_dir(tmp_path) / "checkpoint-final" / "metrics.json").read_text())
    assert metrics["stop_reason"] == "early_stopping" and metrics["global_step"] == 4


def test_a_resume_with_another_lr_applies_it(tmp_path, cache):
    args = ["--trainer.max_steps", "2", "--run.checkpoint_every_minutes", "0"]
    main(demo_args(tmp_path, cache, 1, *args))
    last = stage_dir(tmp_path) / "checkpoints" / "last.ckpt"
    before = ckpt(last)["optimizer_states"][0]["param_groups"][0]["lr"]
    main(demo_args(tmp_path, cache, 1, "--trainer.max_steps", "3", "--run.checkpoint_every_minutes", "0", "--model.lr", "1e-5"))
    state = ckpt(last)
    assert state["hyper_parameters"]["lr"] == 1e-5 and state["lr_schedulers"][0]["base_lrs"] == [1e-5]
    assert 0 < state["optimizer_states"][0]["param_groups"][0]["lr"] < before


def val_checks(folder: Path) -> list[float]:
    rows = (folder / "csv_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("val_loss")
    return [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]


@pytest.mark.parametrize("lr, final_weights_win", [("3e-3", True), ("3e-1", False)])
def test_steps_trained_after_the_last_validation_are_weighed_before_checkpoint_final(tmp_path, cache, lr, final_weights_win):
    """5 steps, validation every 2: steps 3-4's check is at step 4, step 5 is trained after it. The
    weights as training left them are validated too, and checkpoint-final holds whichever is best.
    Measured: at lr 3e-3 the loss still falls at step 5 (7.615, 7.584, 7.564), so the final weights
    win; at 3e-1 step 5 overshoots (7.642, 7.577, 7.664), so step 4's checkpoint wins."""
    main(demo_args(tmp_path, cache, 1, "--trainer.max_steps", "5", "--run.val_every_n_steps", "2", "--model.lr", lr))
    folder = stage_dir(tmp_path)
    metrics = json.loads((folder / "checkpoint-final" / "metrics.json").read_text())
    at_2, at_4, at_5, *again = val_checks(folder)  # the fit's two checks, the final weights', a reload's
    assert metrics["global_step"] == 5 and (at_5 < min(at_2, at_4)) == final_weights_win
    if final_weights_win:  # checkpoint-final holds them, names no checkpoint and validates nothing again
        assert metrics["best_checkpoint"] is None and not again and metrics["val_loss"] == pytest.approx(at_5, abs=1e-6)
        held = ckpt(folder / "checkpoints" / "last.ckpt")["state_dict"]
    else:  # the best validated checkpoint is reloaded and validated for checkpoint-final's metrics
        assert Path(metrics["best_checkpoint"]).name.startswith(f"best-step={2 if at_2 <= at_4 else 4}-")
        assert again == [pytest.approx(min(at_2, at_4), abs=1e-6)] and metrics["val_loss"] == pytest.approx(min(at_2, at_4), abs=1e-6)
        held = ckpt(metrics["best_checkpoint"])["state_dict"]
    final = adapter(folder)
    assert final and all(torch.equal(v, held[f"model.{k}"]) for k, v in final.items()), "checkpoint-final holds the weights it names"


def test_abbreviated_options_are_refused(tmp_path, cache):
    with pytest.raises(SystemExit):
        main(demo_args(tmp_path, cache, 1, "--trainer.max_step", "3"))


def test_job_time_limit_saves_and_the_next_job_resumes(tmp_path, cache):
    main(demo_args(tmp_path, cache, 1, "--trainer.max_steps", "4", "--run.job_time_limit_minutes", "0.00001"))
    folder = stage_dir(tmp_path)
    assert ckpt(folder / "checkpoints" / "last.ckpt")["global_step"] == 1
    assert not (folder / "checkpoint-final").exists()  # the stage is not finished
    main(demo_args(tmp_path, cache, 1, "--trainer.max_steps", "4"))
    assert json.loads((folder / "checkpoint-final" / "metrics.json").read_text())["global_step"] == 4


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, cache, monkeypatch):
    weighted = lightning_module.MoELoRAModule._weighted

    def nan_at_step_3(self, lm, router):
        total, coef = weighted(self, lm, router)
        return (total * float("nan") if self.global_step == 3 else total), coef

    monkeypatch.setattr(lightning_module.MoELoRAModule, "_weighted", nan_at_step_3)
    args = ["--trainer.max_steps", "6", "--run.checkpoint_every_minutes", "0"]
    with pytest.raises(SystemExit, match=r"training loss is nan \(LM loss .*\) at global step 3.*the last good checkpoint is .*last.ckpt.*--model.lr 2e-05") as stopped:
        main(demo_args(tmp_path, cache, 1, *args))
    assert stopped.value.code == EXIT_NONFINITE
    last = ckpt(stage_dir(tmp_path) / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, cache, monkeypatch):
    step = lightning_module.MoELoRAModule.training_step

    def preempted_at_step_2(self, batch, batch_idx):
        if self.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(lightning_module.MoELoRAModule, "training_step", preempted_at_step_2)
    with pytest.raises(SystemExit) as stopped:  # non-zero, so that the platform retries the job
        main(demo_args(tmp_path, cache, 1, "--trainer.max_steps", "6"))
    assert stopped.value.code == EXIT_PREEMPTED
    folder = stage_dir(tmp_path)
    # saved at the end of the optimizer step the signal arrived in (2 micro-batches each), not mid-step
    assert ckpt(folder / "checkpoints" / "last.ckpt")["global_step"] == 3
    assert not (folder / "checkpoint-final").exists()
    monkeypatch.setattr(lightning_module.MoELoRAModule, "training_step", step)
    main(demo_args(tmp_path, cache, 1, "--trainer.max_steps", "6"))  # the next job resumes and finishes
    assert json.loads((folder / "checkpoint-final" / "metrics.json").read_text())["global_step"] == 6


def test_sigkill_mid_epoch_resumes_to_the_same_adapter_as_an_uninterrupted_run(tmp_path, cache, caplog):
    # Demo stage 1 with one micro-batch per step: 3 shuffled batches per epoch, dropout 0.1.
    args = ["--trainer.max_steps", "8", "--trainer.accumulate_grad_batches", "1",
            "--run.checkpoint_every_minutes", "0", "--run.val_every_n_steps", "3",
            "--trainer.limit_train_batches", "3", "--trainer.max_epochs", "3"]  # fmt: skip
    main(demo_args(tmp_path / "whole", cache, 1, *args))
    out = tmp_path / "killed"
    # A forked child (no second start-up of torch and Lightning) SIGKILLs itself at the start of step 6:
    # epoch 1, batch 3 of 3, after last.ckpt of step 5 (epoch 1, batch 2) and a validation at step 3;
    # the resumed run crosses an epoch end and a validation (step 6) before it stops at step 8.
    child = multiprocessing.get_context("fork").Process(target=_fit_killed_at, args=(demo_args(out, cache, 1, *args), 5))
    child.start()
    child.join(timeout=300)
    assert child.exitcode == -signal.SIGKILL
    last = stage_dir(out) / "checkpoints" / "last.ckpt"
    state = ckpt(last)
    progress = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]
    assert state["global_step"] == 5 and state["epoch"] == 1  # mid-epoch: batch 2 of 3
    assert progress["current"]["ready"] == 2 and not progress["is_last_batch"]
    assert not (stage_dir(out) / "checkpoint-final").exists()
    with caplog.at_level(logging.WARNING):
        main(demo_args(out, cache, 1, *args))
    assert f"resuming therapeutic_moe_stage1 from {last}" in caplog.text
    whole, again = (ckpt(stage_dir(o) / "checkpoints" / "last.ckpt") for o in (tmp_path / "whole", out))
    assert whole["global_step"] == again["global_step"] == 8
    assert all(torch.equal(whole["state_dict"][k], again["state_dict"][k]) for k in whole["state_dict"])
    final_whole, final_again = adapter(stage_dir(tmp_path / "whole")), adapter(stage_dir(out))
    assert all(torch.equal(final_whole[k], final_again[k]) for k in final_whole)


def _fit_killed_at(args: list[str], step: int) -> None:
    training_step = lightning_module.MoELoRAModule.training_step

    def killed(self, batch, batch_idx):
        if self.global_step == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return training_step(self, batch, batch_idx)

    lightning_module.MoELoRAModule.training_step = killed
    main(args)


def test_atomic_save_leaves_the_previous_checkpoint_when_killed_mid_write(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"global_step": 1}, path)
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # what a kill looks like from inside the process

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"global_step": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_saved_config_redacts_secret_looking_values():
    config = {"model": {"base_model": "x", "hf_token": "hf_abc"}, "logger": [{"api_key": "k", "project": "p"}]}
    assert _redact(config) == {
        "model": {"base_model": "x", "hf_token": REDACTED},
        "logger": [{"api_key": REDACTED, "project": "p"}],
    }


def _no_base_model(*args, **kwargs):
    raise AssertionError("the base model was loaded before the bad input was refused")
