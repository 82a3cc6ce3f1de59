"""lightning_app.launch: the job spec, bound to the installed lightning_sdk Job.run; nothing is contacted."""

import hashlib
import inspect
import json
import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
import yaml
from lightning_sdk import Job

from lightning_app import checkpoints, launch, studio_env, upload
from lightning_app.stage_config import data_settings, stage_files
from stages.fit import parse_stage_config

SECRET = "s3cr3t-token-value"


STAGE1 = ["--config", "stages/stage1.yaml", "--config", "stages/demo.yaml"]
STAGE2 = ["--config", "stages/stage2.yaml", "--config", "stages/demo.yaml"]


@pytest.fixture
def jobs_yaml(tmp_path):
    """.lightning/jobs.yaml with its storage and scratch in tmp_path (storage mounted and empty)."""
    jobs = yaml.safe_load(launch.JOBS_YAML.read_text())
    jobs["storage"] = {"data": str(tmp_path / "store" / "data"), "checkpoints": str(tmp_path / "store" / "ckpt")}
    jobs["scratch"] = str(tmp_path / "scratch")
    jobs["caches"] = {"hf_home": None, "data": str(tmp_path / "store" / "data_cache")}
    (tmp_path / "store" / "data").mkdir(parents=True)
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(jobs))
    return str(path)


@pytest.fixture
def no_platform(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the platform was contacted")

    refuse.__signature__ = inspect.signature(Job.run)
    monkeypatch.setattr(Job, "run", refuse)
    monkeypatch.setattr(launch, "running_jobs", lambda teamspace, stage: [])  # the SDK lookup (tested below)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.delenv("HF_TOKEN", raising=False)


def dry_run(capsys, *argv):
    assert launch.main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    return json.loads(out)


def test_dry_run_spec(capsys, tmp_path, jobs_yaml, no_platform):
    spec = dry_run(capsys, *STAGE2, "--jobs", jobs_yaml, "--teamspace", "me/therapy")
    store, scratch = tmp_path / "store", tmp_path / "scratch"
    assert spec["name"].startswith("stage2-fit-") and spec["stage"] == "stage2"
    assert spec["machine"] == "H100" and spec["num_machines"] == 1 and spec["teamspace"] == "me/therapy"
    assert spec["interruptible"] is False and spec["max_run_attempts"] == 1
    assert spec["timeout_s"] == (1 + 12) * 3600 + 20 * 60  # setup, 12 h of training, publishing
    assert "WANDB_API_KEY" in spec["env"] and "HF_TOKEN" in spec["env_missing"] and "HF_TOKEN" not in spec["env"]
    lines = spec["command"].splitlines()
    assert lines[0] == f"cd {launch.REPO_ROOT}" and len(lines) == 3
    fit = lines[2]
    assert fit.startswith(
        f"exec python -m lightning_app.fit_job --local-stage {scratch}/therapeutic_moe_stage2 "
        f"--remote-stage {store}/ckpt/therapeutic_moe_stage2 --timeout-s 48000 --job-name {spec['name']} "
        f"--init-from {store}/ckpt/therapeutic_moe_stage1/checkpoint-final {scratch}/therapeutic_moe_stage1/checkpoint-final "
        f"--data-cache {store}/data_cache {scratch}/data_cache --stage 2 "  # the tokenized data's stored copy
        "-- python -m stages.fit --config stages/stage2.yaml --config stages/demo.yaml "
        f"--run.output_root {scratch} --data.data_root {store}/data --data.cache_dir {scratch}/data_cache "
        "--run.job_time_limit_minutes 720 "  # training time: the load and tokenisation come first
    )
    assert "--trainer.callbacks+=lightning_app.checkpoints.MirrorCheckpoints" in fit
    # nothing is on the (empty) storage yet: the dry run says what the submission would refuse
    missing = "\n".join(spec["preflight"])
    assert "source cot_heartbreak: CoT_Heartbreak_and_Breakups_downloaded.json is neither at" in missing
    assert f"{store}/ckpt/therapeutic_moe_stage1/checkpoint-final is not complete" in missing


def test_several_gpus_get_a_strategy_and_interruptible_gets_retries(capsys, jobs_yaml, no_platform):
    spec = dry_run(
        capsys, *STAGE1, "--jobs", jobs_yaml, "--teamspace", "therapy", "--org", "acme",
        "--machine", "H100_X_8", "--num-machines", "2", "--interruptible", "--studio", "trainer",
    )  # fmt: skip
    assert spec["teamspace"] == "acme/therapy" and spec["studio"] == "trainer"
    assert spec["machine"] == "H100_X_8" and spec["num_machines"] == 2
    assert spec["interruptible"] is True and spec["max_run_attempts"] == 3
    fit = spec["command"].splitlines()[-1]
    assert "--config stages/demo.yaml --config .lightning/strategies/ddp.yaml " in fit
    assert "--trainer.devices 8 --trainer.num_nodes 2" in fit


def test_a_cpu_machine_is_one_process_not_several_gpus(capsys, jobs_yaml, no_platform):
    spec = dry_run(capsys, *STAGE1, "--jobs", jobs_yaml, "--machine", "CPU")  # the SDK counts 4 vCPUs
    fit = spec["command"].splitlines()[-1]
    assert ".lightning/strategies/" not in fit and "--trainer.devices" not in fit
    with pytest.raises(ValueError, match="CPU is a CPU machine"):
        launch.main([*STAGE1, "--jobs", jobs_yaml, "--machine", "CPU", "--num-machines", "2", "--dry-run"])


class ListedJob(SimpleNamespace):
    pass


def test_a_stage_with_a_job_at_work_is_refused(monkeypatch, jobs_yaml, uploaded, no_platform):
    listed = [
        ListedJob(name="stage1-fit-20261204-100000", tags=("therapeutic-moe", "stage1", "fit"), status="Running", link="L1"),
        ListedJob(name="stage1-fit-20261203-100000", tags=("therapeutic-moe", "stage1", "fit"), status="Completed", link="L0"),
        ListedJob(name="stage2-fit-20261204-110000", tags=("therapeutic-moe", "stage2", "fit"), status="Pending", link="L2"),
    ]
    asked = []

    class FakeTeamspace:
        def list_jobs(self, tags=None):
            asked.append(tags)
            return tuple(listed)

    monkeypatch.undo()  # the real running_jobs, over a teamspace that lists the jobs above
    monkeypatch.setattr(Job, "run", lambda **kwargs: pytest.fail("a second job of the stage was submitted"))
    monkeypatch.setattr(launch, "platform_teamspace", lambda slug: FakeTeamspace())
    assert [job.name for job in launch.running_jobs(FakeTeamspace(), "stage2")] == ["stage2-fit-20261204-110000"]
    assert asked == [["therapeutic-moe"]]
    with pytest.raises(SystemExit) as stop:
        launch.main([*STAGE1, "--jobs", jobs_yaml, "--teamspace", "me/t", "--studio", "s"])
    assert "stage1: a job of this stage is still at work: stage1-fit-20261204-100000 (Running, L1)" in str(stop.value)

    class NoTagYet:
        def list_jobs(self, tags=None):
            raise ValueError("Teamspace has no tag named therapeutic-moe")

    assert launch.running_jobs(NoTagYet(), "stage1") == []


def test_arguments_are_bound_to_the_installed_signature(monkeypatch, capsys, jobs_yaml, no_platform):
    def older_run(name, machine, command=None, studio=None, teamspace=None, env=None, interruptible=False):
        raise AssertionError("never called")

    monkeypatch.setattr(Job, "run", older_run)  # an SDK without max_run_attempts/num_machines/tags
    with pytest.raises(TypeError, match="max_run_attempts|num_machines|tags"):
        launch.main([*STAGE1, "--jobs", jobs_yaml, "--teamspace", "me/t", "--dry-run"])
    assert capsys.readouterr().out == ""


@pytest.fixture
def uploaded(tmp_path, jobs_yaml):
    """The demo stage 1's files uploaded to the job storage, as the user does before launching."""
    assert upload.main([*STAGE1, "--to", str(tmp_path / "store" / "data")]) == 0
    return tmp_path / "store" / "data"


def test_upload_copies_exactly_the_stage_files_with_a_manifest(uploaded):
    files = stage_files(data_settings(parse_stage_config(["stages/stage1.yaml", "stages/demo.yaml"])))
    expected = sorted(rel for paths in files.values() for rel in paths)
    assert len(expected) == 10
    manifest = json.loads((uploaded / upload.MANIFEST_NAME).read_text())["files"]
    assert sorted(manifest) == expected
    samples = launch.REPO_ROOT / "datamodules" / "samples"
    for rel in expected:
        data = (samples / rel).read_bytes()
        assert (uploaded / rel).read_bytes() == data
        assert manifest[rel] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    stored = sorted(str(p.relative_to(uploaded)) for p in uploaded.rglob("*") if p.is_file())
    assert stored == sorted([*expected, upload.MANIFEST_NAME])  # no other sample file went along


def test_submit_passes_env_values_to_the_job_only(monkeypatch, capsys, jobs_yaml, uploaded, no_platform):
    calls = []

    def fake_run(*args, **kwargs):
        calls.append(kwargs)
        return type("FakeJob", (), {"link": "https://lightning.ai/job"})()

    fake_run.__signature__ = inspect.signature(Job.run)
    monkeypatch.setattr(Job, "run", fake_run)
    monkeypatch.setattr(launch, "platform_teamspace", lambda slug: ("Teamspace", slug))
    capsys.readouterr()  # the upload's own output
    assert launch.main([*STAGE1, "--jobs", jobs_yaml, "--teamspace", "me/t", "--studio", "s", "--interruptible"]) == 0
    (kwargs,) = calls
    assert kwargs["env"]["WANDB_API_KEY"] == SECRET
    assert kwargs["env"]["TOKENIZERS_PARALLELISM"] == "false"
    assert kwargs["max_run_attempts"] == 3 and kwargs["interruptible"] is True
    assert str(kwargs["machine"]) == "H100" and kwargs["teamspace"] == ("Teamspace", "me/t") and kwargs["studio"] == "s"
    assert kwargs["command"].startswith(f"cd {launch.REPO_ROOT}\n")
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert json.loads(captured.out)["link"] == "https://lightning.ai/job"


def test_submit_stops_at_the_preflight_with_what_is_missing(jobs_yaml, uploaded, no_platform):
    (uploaded / "counsel-chat" / "data" / "20200325_counsel_chat.csv").unlink()
    with pytest.raises(SystemExit) as stop:
        launch.main([*STAGE1, "--jobs", jobs_yaml, "--teamspace", "me/t", "--studio", "s"])
    message = str(stop.value)
    assert message.startswith("stage1 cannot start, missing on the job's storage:\n")
    assert f"source counsel_chat: counsel-chat/data/20200325_counsel_chat.csv is neither at {uploaded}/counsel-chat" in message
    assert f"python -m lightning_app.upload --config stages/stage1.yaml --config stages/demo.yaml --to {uploaded}" in message


def test_submit_outside_a_studio_needs_studio(monkeypatch, jobs_yaml, uploaded, no_platform):
    monkeypatch.delenv("LIGHTNING_CLOUD_SPACE_ID", raising=False)
    with pytest.raises(SystemExit, match="--studio"):
        launch.main([*STAGE1, "--jobs", jobs_yaml, "--teamspace", "me/t"])


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
def test_bad_arguments(argv, message, jobs_yaml, no_platform):
    with pytest.raises(ValueError, match=message):
        launch.main([*STAGE1, "--jobs", jobs_yaml, *argv, "--dry-run"])


def test_flash_attn_wheel_name_follows_the_release_scheme():
    url = studio_env.flash_attn_wheel_url("2.8.1", "2.7.1+cu126", "12.6", True, (3, 11), "x86_64")
    assert url == (
        "https://github.com/Dao-AILab/flash-attention/releases/download/v2.8.1/"
        "flash_attn-2.8.1+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl"
    )


def test_studio_setup_never_builds_flash_attn_from_source(tmp_path):
    """setup.sh with pip replaced by echo: the commands it would run, on this CPU-only torch."""
    hook = launch.REPO_ROOT / ".lightning_studio" / "on_start.sh"
    env_file = tmp_path / ".therapeutic-moe.env"
    source_line = f"[ -f {env_file} ] && . {env_file}"
    (tmp_path / ".bashrc").write_text(f"alias ll='ls -l'\n{source_line}\n")  # a Studio that ran setup before
    venv = os.path.dirname(sys.executable)  # `python` in the hook is the project's, as in a Studio
    env = {**os.environ, "HOME": str(tmp_path), "PIP": "echo pip", "PATH": f"{venv}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(hook)], env=env, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    installs = [line for line in lines if line.startswith("pip install")]
    assert installs == ["pip install -q -e . bitsandbytes>=0.45 liger-kernel>=0.5"]  # the gpu extra but flash-attn
    assert "[setup] torch has no CUDA build: no flash-attn, the model uses SDPA" in lines
    assert "[setup] GPU: none visible (CPU only): fine for the demo, not for the 12B stages" in lines
    assert "[setup] attention: sdpa (flash-attn not installed)" in lines
    assert "export TOKENIZERS_PARALLELISM=false" in env_file.read_text().splitlines()
    assert (tmp_path / ".bashrc").read_text().splitlines() == ["alias ll='ls -l'", source_line]  # not added twice
    # the Studio's own start-up hook now calls this checkout's setup, once however often setup runs
    home_hook = tmp_path / ".lightning_studio" / "on_start.sh"
    call = f'bash "{launch.REPO_ROOT}/.lightning/setup.sh"  # therapeutic-moe'
    assert f"[setup] start-up hook: added to {home_hook}" in lines
    subprocess.run(["bash", str(hook)], env=env, capture_output=True, text=True, check=True)
    assert home_hook.read_text().splitlines() == ["#!/usr/bin/env bash", call]


@pytest.mark.slow
def test_the_job_command_trains_and_publishes_to_storage(capsys, tmp_path, jobs_yaml, uploaded, no_platform):
    """The dry run's command, run here by bash as a Studio job runs it: data read from the storage,
    checkpoints written to scratch and published to storage with completion markers."""
    (tmp_path / "layer.yaml").write_text(yaml.safe_dump({"data": {"cache_dir": str(tmp_path / "cache")}}))
    capsys.readouterr()
    spec = dry_run(capsys, *STAGE1, "--config", str(tmp_path / "layer.yaml"), "--jobs", jobs_yaml)
    assert spec["preflight"] == "ok"
    result = subprocess.run(["bash", "-e", "-c", spec["command"]], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    stage = tmp_path / "store" / "ckpt" / "therapeutic_moe_stage1"
    assert checkpoints.is_complete(stage / "checkpoint-final")
    final = checkpoints.current(stage / "checkpoint-final")  # the published version
    assert (final / "adapter.safetensors").is_file()
    assert checkpoints.is_complete(stage / "checkpoints" / "last.ckpt")
    assert f"{tmp_path}/store/data" in (final / "config.yaml").read_text()  # read the upload


class _StudioInTeamspace:
    """lightning_sdk's Studio as Job.run sees it: its teamspace's `.name` is the bare name."""

    _skip_setup = threading.local()
    created: list[dict] = []

    def __init__(self, name=None, teamspace=None, org=None, user=None, cloud=None, create_ok=False):
        type(self).created.append({"name": name, "teamspace": teamspace})
        self.teamspace = SimpleNamespace(name="therapy")
        self.cloud_account = "cloud-1"
        self._studio = SimpleNamespace(id="studio-1")


@pytest.fixture
def offline_sdk(monkeypatch):
    """The installed Job.run, with only the platform calls around its teamspace check stubbed."""
    import lightning_sdk.job as sdk_job
    import lightning_sdk.studio as sdk_studio
    import lightning_sdk.teamspace as sdk_teamspace

    class TeamspaceApi:
        def get_teamspace(self, name, owner_id):
            return SimpleNamespace(name=name, id=f"{owner_id}/{name}")

    monkeypatch.setattr(sdk_teamspace, "TeamspaceApi", TeamspaceApi)
    monkeypatch.setattr(sdk_teamspace, "CloudAccountApi", lambda: None)
    def resolve_org(org):  # called with the owner's name, then again with what it returned
        return org if isinstance(org, SimpleNamespace) or org is None else SimpleNamespace(id=f"org-{org}", name=org)

    monkeypatch.setattr(sdk_teamspace, "_resolve_org", resolve_org)
    monkeypatch.setattr(sdk_teamspace, "_resolve_user", lambda user: None)
    monkeypatch.setattr(sdk_studio, "Studio", _StudioInTeamspace)
    monkeypatch.setattr(sdk_job, "_resolve_default_cloud_account", lambda *args: None)
    submitted = []
    monkeypatch.setattr(Job, "__init__", lambda self, name, teamspace=None, org=None, user=None, **kw: setattr(self, "_name", name))
    monkeypatch.setattr(Job, "_submit", lambda self, **kwargs: submitted.append(kwargs))
    monkeypatch.setattr(Job, "link", property(lambda self: f"https://lightning.ai/jobs/{self._name}"))
    monkeypatch.setattr(launch, "running_jobs", lambda teamspace, stage: [])
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    _StudioInTeamspace.created.clear()
    return submitted


def test_submit_with_a_teamspace_passes_job_runs_studio_teamspace_check(capsys, jobs_yaml, uploaded, offline_sdk):
    assert launch.main([*STAGE1, "--jobs", jobs_yaml, "--teamspace", "me/therapy", "--studio", "s1"]) == 0
    assert len(offline_sdk) == 1 and offline_sdk[0]["studio"].teamspace.name == "therapy"
    passed = _StudioInTeamspace.created[0]["teamspace"]
    assert passed.name == "therapy" and passed.owner.name == "me"  # the SDK's Teamspace, owner resolved
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["link"].startswith("https://lightning.ai/jobs/stage1-fit-")
    # the owner/name string itself, as submitted before, fails the installed SDK's check
    with pytest.raises(ValueError, match="Studio teamspace does not match provided teamspace"):
        Job.run(name="x", machine=launch.resolve_machine("H100"), command="true", studio="s1", teamspace="me/therapy")


def test_the_job_script_execs_the_wrapper_with_caches_on_scratch(capsys, tmp_path, jobs_yaml, no_platform):
    spec = dry_run(capsys, *STAGE1, "--jobs", jobs_yaml)
    lines = spec["command"].splitlines()
    assert lines[-1].startswith("exec python -m lightning_app.fit_job ")  # SIGTERM reaches Python
    assert f"export HF_HOME={tmp_path}/scratch/hf_home" in lines
    assert f"--data.cache_dir {tmp_path}/scratch/data_cache" in lines[-1]
    assert f"--job-name {spec['name']}" in lines[-1]


def test_abbreviated_options_are_refused(capsys, jobs_yaml, no_platform):
    with pytest.raises(SystemExit):
        launch.main([*STAGE1, "--jobs", jobs_yaml, "--interrupt", "--dry-run"])
    assert "unrecognized arguments: --interrupt" in capsys.readouterr().err


def test_serve_job_dry_run_spec_serves_the_export_with_its_rank(capsys, tmp_path, jobs_yaml, no_platform):
    """`launch serve --export DIR`: vLLM's OpenAI server on the export's base with the adapter, from
    lightning_app.vllm, stopped by `timeout`; a merged export is served as a plain model."""
    export = tmp_path / "exports" / "stage3_average"
    export.mkdir(parents=True)
    info = {"name": "stage3_average", "format": "peft", "base_model_id": "LatitudeGames/Wayfarer-2-12B", "rank": 48}
    (export / "export.json").write_text(json.dumps(info))
    spec = dry_run(capsys, "serve", "--export", str(export), "--jobs", jobs_yaml, "--hours", "2", "--teamspace", "me/t")
    assert spec["name"] == "serve-stage3-average" and spec["machine"] == "L40S" and spec["timeout_s"] == 7200
    assert spec["served"] == "stage3_average" and spec["teamspace"] == "me/t"
    lines = spec["command"].splitlines()
    assert lines[0] == f"cd {launch.REPO_ROOT}" and lines[1] == f"export HF_HOME={tmp_path}/scratch/hf_home"
    argv = lines[2].split()
    assert argv[:7] == ["exec", "timeout", "--signal=TERM", "7200", "vllm", "serve", "LatitudeGames/Wayfarer-2-12B"]
    assert argv[argv.index("--max-lora-rank") + 1] == "64" and f"stage3_average={export}" in argv
    assert argv[argv.index("--host") + 1] == "0.0.0.0" and "--enable-lora" in argv
    info.update(format="merged")
    (export / "export.json").write_text(json.dumps(info))
    argv = dry_run(capsys, "serve", "--export", str(export), "--jobs", jobs_yaml)["command"].splitlines()[2].split()
    assert argv[5:7] == ["serve", str(export)] and "--enable-lora" not in argv
    info.update(format="gguf")
    (export / "export.json").write_text(json.dumps(info))
    with pytest.raises(SystemExit, match="served by llama.cpp or Ollama"):
        launch.main(["serve", "--export", str(export), "--jobs", jobs_yaml, "--dry-run"])
