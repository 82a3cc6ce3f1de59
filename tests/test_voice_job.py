"""The voice job: its dry run (job spec and the vLLM command, nothing contacted) and its runner
against the local OpenAI-compatible test server (outputs on storage, resumed from the journal)."""

import inspect
import json
from pathlib import Path

import pytest
import yaml
from lightning_sdk import Job

from lightning_app import launch
from lightning_app.voice_run import COMPLETE, OUT_NAME, run

SAMPLES = Path(__file__).parents[1] / "datamodules" / "voice" / "samples"
SECRET = "s3cr3t-token-value"


@pytest.fixture
def jobs_yaml(tmp_path, monkeypatch):
    jobs = yaml.safe_load(launch.JOBS_YAML.read_text())
    jobs["storage"] = {"data": str(tmp_path / "store" / "data"), "checkpoints": str(tmp_path / "store" / "ckpt")}
    jobs["scratch"] = str(tmp_path / "scratch")
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(jobs))

    def refuse(*args, **kwargs):
        raise AssertionError("the platform was contacted")

    refuse.__signature__ = inspect.signature(Job.run)
    monkeypatch.setattr(Job, "run", refuse)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    return str(path)


def test_voice_job_dry_run_serves_the_named_model_and_builds_against_it(tmp_path, jobs_yaml, capsys):
    model = "Qwen/Qwen2.5-7B-Instruct"
    argv = ["voice", "--model", model, "--jobs", jobs_yaml, "--teamspace", "me/therapy", "--dry-run",
            "--", "--reply", "rewrite", "--judge.model", "judge"]
    assert launch.main(argv) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    spec = json.loads(out)
    store, scratch = tmp_path / "store" / "data", tmp_path / "scratch"
    assert spec["stage"] == "voice" and spec["machine"] == "H100" and spec["teamspace"] == "me/therapy"
    assert spec["serve"] == (
        f"vllm serve {model} --host 127.0.0.1 --port 8000 --dtype auto --served-model-name voice-generator"
    )
    lines = spec["command"].splitlines()
    assert lines[0] == f"cd {launch.REPO_ROOT}" and lines[1] == f"export HF_HOME={scratch}/hf_home"
    voice = yaml.safe_load((launch.REPO_ROOT / "datamodules" / "voice" / "voice.yaml").read_text())
    assert lines[2] == (
        f"exec timeout --signal=TERM --kill-after=120 {spec['timeout_s']} python -m lightning_app.voice_run "
        f"--model {model} --port 8000 --local {scratch}/voice "
        f"--remote {store}/{Path(voice['out']).parent} -- --config datamodules/voice/voice.yaml "
        f"--transcripts {store}/{voice['transcripts']} --reply rewrite --judge.model judge"
    )
    with pytest.raises(SystemExit):
        launch.main(["voice", "--jobs", jobs_yaml, "--dry-run"])  # --model is required


@pytest.mark.slow
def test_voice_runner_publishes_to_storage_and_resumes_from_the_journal(tmp_path, openai_server):
    def answer(call):
        return 200, f"I keep feeling like I am the problem, case {call.number}. Why does that happen to me?"

    server = openai_server(answer)
    stopped = []

    def start_server():
        return server.url, lambda: stopped.append(True)

    local, remote = tmp_path / "scratch" / "voice", tmp_path / "store" / "voice"
    build_args = ["--transcripts", str(SAMPLES), "--speaker", "Tim Fletcher", "--mode", "backtranslation",
                  "--heldout_fraction", "0", "--min_words", "200"]
    assert run(local, remote, build_args, start_server) == 0
    assert stopped == [True]
    names = {p.name for p in remote.iterdir()}
    stem = OUT_NAME.removesuffix(".json")
    assert {OUT_NAME, f"{stem}_journal.jsonl", f"{stem}_stats.json", COMPLETE} <= names
    first = json.loads((remote / f"{stem}_stats.json").read_text())
    assert first["generation"]["generated_now"] == first["units"] > 0

    # a fresh machine: nothing local, the journal comes back from storage and nothing is asked again
    calls = len(server.calls)
    assert run(tmp_path / "fresh" / "voice", remote, build_args, start_server) == 0
    second = json.loads((remote / f"{stem}_stats.json").read_text())
    assert second["generation"]["reused_from_journal"] == first["units"] and len(server.calls) == calls
    assert json.loads((remote / OUT_NAME).read_text()) == json.loads((local / OUT_NAME).read_text())
