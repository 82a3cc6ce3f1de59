"""The three readers of a stage YAML (inspect, evaluate, the Lightning launcher) resolve it alike,
because all of them call stages.fit.parse_stage_config."""

import shlex

import pytest
from jsonargparse import ArgumentError

import stages.inspect
import lightning_app.stage_config
import stages.evaluate
from stages.fit import parse_stage_config

CONFIGS = ["stages/stage1.yaml", "stages/demo.yaml"]


class Built(Exception):
    """Raised by the stand-in DataSettings: its arguments are all the test needs."""


@pytest.fixture
def built(monkeypatch):
    """Each caller's DataSettings arguments, by caller, without reading any data."""
    seen: dict[str, dict] = {}

    def capture(name):
        def stand_in(**kwargs):
            seen[name] = kwargs
            raise Built

        return stand_in

    for name, module in (
        ("inspect", stages.inspect),
        ("evaluate", stages.evaluate),
        ("lightning_app", lightning_app.stage_config),
    ):
        monkeypatch.setattr(module, "DataSettings", capture(name))
    return seen


def test_inspect_evaluate_and_launcher_resolve_the_same_data_section(built, tmp_path):
    overrides = ["--model.base_model", "tiny", "--data.data_root", str(tmp_path), "--data.max_seq_length", "300"]
    flags = [arg for path in CONFIGS for arg in ("--config", path)]
    with pytest.raises(Built):
        stages.inspect.main([*flags, *overrides])
    with pytest.raises(Built):
        stages.evaluate.main([*flags, "--checkpoint", "base", "--out", str(tmp_path / "report"), *overrides])
    with pytest.raises(Built):
        lightning_app.stage_config.data_settings(parse_stage_config(CONFIGS, overrides))
    data = built["inspect"]
    assert built["evaluate"] == data and built["lightning_app"] == data
    # the override, the link from model.base_model, and a value from stages/common.yaml's model section
    assert data["data_root"] == str(tmp_path) and data["max_seq_length"] == 300
    assert data["base_model"] == "tiny"
    assert data["expert_domains"] == ["psychology", "mental_health", "bias_detection", "general_therapeutic"]


def test_a_misspelt_override_is_refused_with_its_name(capsys):
    with pytest.raises(ArgumentError, match="max_seq_lenght"):
        parse_stage_config(CONFIGS, ["--data.max_seq_lenght", "300"])
    code = stages.evaluate.main(
        ["--config", CONFIGS[0], "--checkpoint", "base", "--out", "unused", "--data.max_seq_lenght", "300"]
    )
    assert code == 2 and "max_seq_lenght" in capsys.readouterr().err


def test_a_missing_config_names_the_file():
    with pytest.raises(FileNotFoundError, match="--config nowhere.yaml does not exist"):
        parse_stage_config(["nowhere.yaml"])
    with pytest.raises(SystemExit, match="error: --config nowhere.yaml does not exist"):
        stages.inspect.main(["--config", "nowhere.yaml"])


def test_the_cloud_evaluation_passes_the_data_root_as_an_override():
    from lightning_app.jobs_config import load_jobs_config
    from lightning_app.pipeline import StageStep, evaluation_job_command

    jobs = load_jobs_config()  # .lightning/jobs.yaml
    plan = lightning_app.stage_config.read_stage(CONFIGS)
    command = evaluation_job_command(StageStep(CONFIGS), plan, None, jobs, [], "reports")
    [evaluate] = [line for line in command.splitlines() if "stages.evaluate" in line]
    assert evaluate.startswith("python -m stages.evaluate --config stages/stage1.yaml --config stages/demo.yaml ")
    assert f"--data.data_root {shlex.quote(jobs.storage.data)}" in evaluate
