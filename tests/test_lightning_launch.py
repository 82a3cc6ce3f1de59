"""lightning_app.launch: the job spec, bound to the installed lightning_sdk Job.run; nothing is contacted."""

import inspect
import os
import subprocess
import json

import pytest
from lightning_sdk import Job

from lightning_app import launch, studio_env

SECRET = "s3cr3t-token-value"


@pytest.fixture
def stage_config(tmp_path):
    path = tmp_path / "stage2.yaml"
    path.write_text("seed_everything: 1\n")
    return str(path)


@pytest.fixture
def no_platform(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the platform was contacted")

    refuse.__signature__ = inspect.signature(Job.run)
    monkeypatch.setattr(Job, "run", refuse)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.delenv("HF_TOKEN", raising=False)


def dry_run(capsys, *argv):
    assert launch.main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    return json.loads(out)


def test_dry_run_spec(capsys, stage_config, no_platform):
    spec = dry_run(capsys, "--config", stage_config, "--teamspace", "me/therapy")
    assert spec["stage"] == "stage2"
    assert spec["machine"] == "H100"
    assert spec["teamspace"] == "me/therapy"
    assert spec["timeout_s"] == 12 * 3600
    assert f"timeout --kill-after=300 {12 * 3600} python -m stages.fit --config {stage_config}" in spec["command"]
    assert spec["command"].startswith(f"cd {launch.REPO_ROOT} && ")
    assert "WANDB_API_KEY" in spec["env"] and "HF_TOKEN" in spec["env_missing"]
    assert "HF_TOKEN" not in spec["env"]
    assert spec["interruptible"] is False and spec["max_run_attempts"] == 1
    assert spec["storage"]["checkpoints"].startswith("/teamspace/")


def test_interruptible_gets_retries_and_flags_override(capsys, stage_config, no_platform):
    spec = dry_run(
        capsys, "--config", stage_config, "--teamspace", "therapy", "--org", "acme",
        "--machine", "H100_X_8", "--num-machines", "2", "--interruptible", "--studio", "trainer",
    )  # fmt: skip
    assert spec["teamspace"] == "acme/therapy"
    assert spec["machine"] == "H100_X_8" and spec["num_machines"] == 2 and spec["studio"] == "trainer"
    assert spec["interruptible"] is True and spec["max_run_attempts"] == 3


def test_arguments_are_bound_to_the_installed_signature(monkeypatch, capsys, stage_config, no_platform):
    def older_run(name, machine, command=None, studio=None, teamspace=None, env=None, interruptible=False):
        raise AssertionError("never called")

    monkeypatch.setattr(Job, "run", older_run)  # an SDK without max_run_attempts/num_machines/tags
    with pytest.raises(TypeError, match="max_run_attempts|num_machines|tags"):
        launch.main(["--config", stage_config, "--teamspace", "me/t", "--dry-run"])
    assert capsys.readouterr().out == ""


def test_submit_passes_env_values_to_the_job_only(monkeypatch, capsys, stage_config, no_platform):
    calls = []

    def fake_run(*args, **kwargs):
        calls.append(kwargs)
        return type("FakeJob", (), {"link": "https://lightning.ai/job"})()

    fake_run.__signature__ = inspect.signature(Job.run)
    monkeypatch.setattr(Job, "run", fake_run)
    assert launch.main(["--config", stage_config, "--teamspace", "me/t", "--studio", "s", "--interruptible"]) == 0
    (kwargs,) = calls
    assert kwargs["env"]["WANDB_API_KEY"] == SECRET
    assert kwargs["env"]["TOKENIZERS_PARALLELISM"] == "false"
    assert kwargs["max_run_attempts"] == 3 and kwargs["interruptible"] is True
    assert str(kwargs["machine"]) == "H100" and kwargs["teamspace"] == "me/t"
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert json.loads(captured.out)["link"] == "https://lightning.ai/job"


def test_submit_outside_a_studio_needs_studio(monkeypatch, stage_config, no_platform):
    monkeypatch.delenv("LIGHTNING_CLOUD_SPACE_ID", raising=False)
    with pytest.raises(SystemExit, match="--studio"):
        launch.main(["--config", stage_config, "--teamspace", "me/t"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--machine", "H10O"], "unknown machine 'H10O'.*H100"),
        (["--teamspace", "therapy"], "owner/name"),
        (["--teamspace", "me/t", "--org", "acme"], "disagrees"),
        (["--org", "acme"], "--teamspace"),
        (["--num-machines", "0"], "num-machines"),
    ],
)
def test_bad_arguments(argv, message, stage_config, no_platform):
    with pytest.raises(ValueError, match=message):
        launch.main(["--config", stage_config, *argv, "--dry-run"])


def test_missing_config(no_platform):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        launch.main(["--config", "stages/nope.yaml", "--dry-run"])


def test_flash_attn_wheel_name_follows_the_release_scheme():
    url = studio_env.flash_attn_wheel_url("2.8.1", "2.7.1+cu126", "12.6", True, (3, 11), "x86_64")
    assert url == (
        "https://github.com/Dao-AILab/flash-attention/releases/download/v2.8.1/"
        "flash_attn-2.8.1+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl"
    )


def test_studio_setup_never_builds_flash_attn_from_source(tmp_path):
    """setup.sh with pip replaced by echo: the commands it would run, on this CPU-only torch."""
    hook = launch.REPO_ROOT / ".lightning_studio" / "on_start.sh"
    env = {**os.environ, "HOME": str(tmp_path), "PIP": "echo pip"}
    result = subprocess.run(["bash", str(hook)], env=env, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    installs = [line for line in lines if line.startswith("pip install")]
    assert installs == ["pip install -q -e . bitsandbytes>=0.45"]
    assert "[setup] torch has no CUDA build: no flash-attn, the model uses SDPA" in lines
    assert "[setup] GPU: none visible (CPU only): fine for the demo, not for the 12B stages" in lines
    assert "[setup] attention: sdpa (flash-attn not installed)" in lines
    env_file = tmp_path / ".therapeutic-moe.env"
    assert "export TOKENIZERS_PARALLELISM=false" in env_file.read_text().splitlines()
    subprocess.run(["bash", str(hook)], env=env, capture_output=True, check=True)
    bashrc = (tmp_path / ".bashrc").read_text().splitlines()
    assert bashrc == [f"[ -f {env_file} ] && . {env_file}"]  # added once, however often setup runs
