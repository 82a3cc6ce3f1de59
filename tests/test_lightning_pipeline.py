"""lightning_app.pipeline: the stage chain through its gates, locally (real subprocesses) and as jobs
(lightning_sdk's Job replaced by a fake that plays the job's part on the storage)."""

import inspect
import json
from types import SimpleNamespace
from pathlib import Path

import pytest
import yaml
from lightning_sdk import Job
from safetensors.torch import load_file

from lightning_app import checkpoints, launch, pipeline, upload
from lightning_app.stage_config import plain_lora_overrides
from stages.fit import parse_stage_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "lightning_app" / "demo_pipeline.yaml"
NAMES = ["therapeutic_moe_stage1", "therapeutic_moe_stage2", "therapeutic_moe_stage3_FINAL"]
# The module's demo run (three fits and three evaluations with the reply comparison, crisis calibration
# and export gap) is set up inside the first test that needs it: more than the suite's 600 s under load.
pytestmark = pytest.mark.timeout(1800)


def demo_copy(root: Path, **changes) -> Path:
    """demo_pipeline.yaml writing under `root`: its own output folders and data cache, on the tiny model
    (the README demo's smollm2 is tests/test_smollm2.py's) (one more layer)."""
    config = yaml.safe_load(DEMO.read_text())
    layer = {"data": {"cache_dir": str(root / "cache")}, "model": {"base_model": "tiny"}}
    (root / "layer.yaml").write_text(yaml.safe_dump(layer))
    # The demo gates want >= 0.2% lower held-out loss, which 8 steps of the random tiny model never
    # reach (0.02%), and crisis replies a judge or a tripwire scored: this run tests the chain's
    # plumbing, not learning (tests/test_smollm2.py does).
    settings = yaml.safe_load((REPO_ROOT / "lightning_app" / "demo_evaluate.yaml").read_text())
    for gate in settings["gate"]["stages"].values():
        gate |= {"max_heldout_loss_ratio": 1.05, "replies_must_improve": False, "thresholds": {}}
    # Nor can its random replies pass the reply comparison, let alone improve on the previous stage's (they collapse onto the same token runs, which
    # the gate rightly calls retrain): every difference is a tie, any relevance difference (cosines lie
    # in -1..1) and any share of stock replies allowed.
    settings["replies"] = {**settings.get("replies", {}), "margin": 1.0, "max_stock_share": 1.0,
                           "relevance_tolerance": 2.0}
    (root / "plumbing_evaluate.yaml").write_text(yaml.safe_dump(settings))
    config |= {"output_root": str(root / "out"), "reports": str(root / "reports"),
               "evaluate_args": ["--settings", str(root / "plumbing_evaluate.yaml")]} | changes  # fmt: skip
    for step in config["stages"]:
        step["config"].append(str(root / "layer.yaml"))
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    code = pipeline.main(["--config", str(demo_copy(root)), "--local"])
    return root, code


@pytest.mark.slow
def test_local_demo_pipeline_trains_and_gates_three_stages(demo_run, capsys):
    root, code = demo_run
    assert code == 0
    for name in NAMES:
        assert (root / "out" / name / "checkpoint-final" / "adapter.safetensors").is_file()
        report = json.loads((root / "reports" / name / "report.json").read_text())
        assert report["decision"] == "proceed"
    stage2 = json.loads((root / "out" / NAMES[1] / "checkpoint-final" / "adapter_config.json").read_text())
    assert stage2["base_model"] == "tiny"


@pytest.mark.slow
def test_finished_stages_are_skipped(demo_run, monkeypatch, capsys):
    root, _ = demo_run
    monkeypatch.setattr(pipeline, "run", lambda command: pytest.fail(f"ran {command}"))
    assert pipeline.main(["--config", str(root / "pipeline.yaml"), "--local"]) == 0
    out = capsys.readouterr().out
    assert all(f"[pipeline] {name}: proceed; done (" in out for name in NAMES)


@pytest.mark.slow
def test_a_failing_gate_stops_the_pipeline_with_its_reasons(demo_run, capsys):
    """The real gates (evals/evaluate.yaml, short replies) on the demo's stage 1: the tiny model fails them."""
    root, _ = demo_run
    settings = yaml.safe_load((REPO_ROOT / "evals" / "evaluate.yaml").read_text())
    settings["generation"] |= {"max_new_tokens": 8, "batch_size": 32}
    settings |= {"epochs": 1, "suite_limit": 3}
    (root / "strict.yaml").write_text(yaml.safe_dump(settings))
    strict = demo_copy(root, reports=str(root / "strict-reports"), evaluate_args=["--settings", str(root / "strict.yaml")])
    capsys.readouterr()
    assert pipeline.main(["--config", str(strict), "--local"]) == 3  # stages.evaluate's "retrain"
    out = capsys.readouterr().out
    assert f"[pipeline] {NAMES[0]}: the gate says retrain (exit 3); stopped" in out
    # Crisis safety: short random replies trip no tripwire and no judge is configured, so none has a verdict.
    assert "  - safety: 3 of 3 items were not scored" in out
    assert "stages.fit" not in out  # stage 1's checkpoint-final was there; stage 2 never started
    assert not (root / "strict-reports" / NAMES[1]).exists()


@pytest.mark.slow
def test_the_plain_lora_baseline_trains_through_the_stage_command_and_lands_in_the_report(demo_run, capsys):
    """--baseline-lora on the demo's stage 1 (its mixture already trained by the module's run): the plain LoRA
    of the same budget trains on the same data and steps, and the stage's report weighs the mixture against it."""
    root, _ = demo_run
    stage1 = yaml.safe_load(DEMO.read_text())["stages"][:1]
    config = demo_copy(root, reports=str(root / "baseline-reports"), stages=stage1)
    capsys.readouterr()
    assert pipeline.main(["--config", str(config), "--local", "--baseline-lora"]) == 0
    out = capsys.readouterr().out
    mixture, plain = root / "out" / NAMES[0] / "checkpoint-final", root / "out" / f"{NAMES[0]}_plain_lora" / "checkpoint-final"
    # The evaluation's own summary line is printed by its subprocess (not captured here); its report is read below.
    assert f"{NAMES[0]}_plain_lora" in out and "--plain-lora" in out
    document = json.loads((plain / "adapter_config.json").read_text())
    assert document["moe"]["num_experts"] == 1 and document["moe"]["r"] == 4 * 16
    assert document["moe"]["domain_experts"] == dict.fromkeys(
        ["psychology", "mental_health", "bias_detection", "general_therapeutic"], "plain_lora")
    # The same trainable budget (the router aside: [1, in] instead of [4, in]) and the same steps.
    sizes = [{k: v.shape for k, v in load_file(folder / "adapter.safetensors").items() if "router" not in k}
             for folder in (mixture, plain)]
    assert sizes[0] == sizes[1]
    steps = [json.loads((folder / "metrics.json").read_text())["global_step"] for folder in (mixture, plain)]
    assert steps[0] == steps[1] > 0
    report = json.loads((root / "baseline-reports" / NAMES[0] / "report.json").read_text())
    assert report["decision"] == "proceed"  # shown, not gated
    weighed = report["plain_lora"]
    assert weighed["heldout_loss"]["plain_lora"] == report["models"]["plain LoRA"]["heldout"]["overall"]["loss"]
    assert weighed["heldout_loss"]["mixture"] == report["models"]["checkpoint"]["heldout"]["overall"]["loss"]
    assert weighed["heldout_loss"]["plain_lora"] != weighed["heldout_loss"]["base"]  # it trained
    prompts = len(report["replies_compared"]["profiles"]["plain LoRA"]["relevance"])
    assert weighed["replies"]["wins"] + weighed["replies"]["losses"] + weighed["replies"]["ties"] == prompts > 0
    assert "## The mixture against a plain LoRA of the same budget" in (
        root / "baseline-reports" / NAMES[0] / "report.md").read_text()


def test_the_plain_lora_baseline_is_the_stage_with_one_lora_of_the_mixtures_budget_on_its_own_chain():
    stage2 = [str(REPO_ROOT / "stages" / "stage2.yaml"), str(REPO_ROOT / "stages" / "demo.yaml")]
    mixture = parse_stage_config(stage2)
    plain = parse_stage_config(stage2, plain_lora_overrides(mixture))
    moe = plain.model.moe
    assert (moe.num_experts, moe.top_k, moe.r, moe.alpha) == (1, 1, 64, 128.0)
    assert (moe.balance_coef, moe.z_coef, moe.domain_coef) == (0.0, 0.0, 0.0)
    assert moe.domain_experts == dict.fromkeys(mixture.model.moe.expert_domains, "plain_lora")
    # The same data (every source domain still known), steps, schedule; its own folder and chain.
    assert plain.data == mixture.data and plain.trainer == mixture.trainer and plain.model.lr == mixture.model.lr
    assert plain.run.name == "therapeutic_moe_stage2_plain_lora"
    assert plain.run.init_from == "therapeutic_moe_stage1_plain_lora/checkpoint-final"


def test_baseline_lora_is_refused_with_cloud(capsys):
    with pytest.raises(SystemExit):
        pipeline.main(["--config", str(DEMO), "--cloud", "--baseline-lora"])
    assert "--baseline-lora runs with --local only" in capsys.readouterr().err


# --cloud: the fake job does on the storage what the real job's command does there


class FakeJob:
    def __init__(self, status: str, link: str):
        self.status, self.link = status, link

    def wait(self, interval: float = 5.0) -> None:
        pass


@pytest.fixture
def cloud(tmp_path, monkeypatch):
    """Storage in tmp_path with stage 1's demo data uploaded, and a Job.run that plays the jobs:
    a fit job publishes checkpoint-final (after `time_limited` runs that end without it), an
    evaluation job publishes a report with the decision in `decisions`."""
    jobs = yaml.safe_load(launch.JOBS_YAML.read_text())
    store = tmp_path / "store"
    jobs |= {"storage": {"data": str(store / "data"), "checkpoints": str(store / "ckpt")}, "scratch": str(tmp_path / "scratch"),
             "caches": {"hf_home": None, "data": str(store / "data_cache")}}  # fmt: skip
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump(jobs))
    for stage in ("stage1", "stage2", "stage3"):
        upload.main(["--config", f"stages/{stage}.yaml", "--config", "stages/demo.yaml", "--to", str(store / "data")])
    state = {"submitted": [], "time_limited": {}, "decisions": {}, "kwargs": {}, "running": []}

    def fake_run(**kwargs):
        name = kwargs["name"]
        state["submitted"].append(name)
        state["kwargs"][name] = kwargs
        stage = next(n for n in NAMES if f"stage{n[len('therapeutic_moe_stage')]}-" in name)
        if "-fit-" in name:
            if state["time_limited"].get(stage, 0) > 0:
                state["time_limited"][stage] -= 1
                return FakeJob("Completed", f"job/{name}")
            final = tmp_path / "scratch" / stage / "checkpoint-final"
            final.mkdir(parents=True, exist_ok=True)
            (final / "adapter_config.json").write_text("{}")
            checkpoints.publish(final, store / "ckpt" / stage / "checkpoint-final")
        else:
            decision = state["decisions"].get(stage, "proceed")
            report = tmp_path / "scratch" / "reports" / stage
            report.mkdir(parents=True, exist_ok=True)
            reasons = ["every gate passed"] if decision == "proceed" else ["safety 0.000 is below the threshold 1.000"]
            (report / "report.json").write_text(json.dumps({"decision": decision, "reasons": reasons}))
            checkpoints.publish(report, store / "ckpt" / "reports" / stage)
        return FakeJob("Completed", f"job/{name}")

    fake_run.__signature__ = inspect.signature(Job.run)
    monkeypatch.setattr(Job, "run", fake_run)
    monkeypatch.setattr(launch, "platform_teamspace", lambda slug: slug)  # the SDK would look it up online
    monkeypatch.setattr(launch, "running_jobs", lambda teamspace, stage: [j for j in state["running"] if stage in j.tags])
    config = tmp_path / "pipeline.yaml"
    demo = yaml.safe_load(DEMO.read_text())
    config.write_text(yaml.safe_dump({"stages": demo["stages"], "reports": "reports"}))
    argv = ["--config", str(config), "--cloud", "--jobs", str(tmp_path / "jobs.yaml"), "--studio", "s", "--teamspace", "me/t"]
    return state, argv, store


def kinds(state):
    return [name.rsplit("-", 2)[0] for name in state["submitted"]]


def test_cloud_pipeline_runs_each_stage_as_jobs_and_relaunches_a_time_limited_fit(cloud, capsys):
    state, argv, store = cloud
    state["time_limited"][NAMES[1]] = 1  # stage 2's first job hits its wall-clock stop
    assert pipeline.main(argv) == 0
    assert kinds(state) == [
        "stage1-fit", "stage1-evaluate", "stage2-fit", "stage2-fit", "stage2-evaluate", "stage3-fit", "stage3-evaluate",
    ]  # fmt: skip
    assert all(checkpoints.is_complete(store / "ckpt" / name / "checkpoint-final") for name in NAMES)
    capsys.readouterr()
    assert pipeline.main(argv) == 0  # everything done: nothing submitted again
    assert len(state["submitted"]) == 7
    out = capsys.readouterr().out
    assert all(f"[pipeline] {name}: proceed; done (" in out for name in NAMES)


def test_cloud_pipeline_stops_at_a_failed_gate(cloud, capsys):
    state, argv, _ = cloud
    state["decisions"][NAMES[1]] = "retrain"
    assert pipeline.main(argv) == 3
    assert kinds(state) == ["stage1-fit", "stage1-evaluate", "stage2-fit", "stage2-evaluate"]
    out = capsys.readouterr().out
    assert f"[pipeline] {NAMES[1]}: the gate says retrain (exit 3); stopped\n  - safety 0.000 is below" in out
    assert f"the same command plus --retrain {NAMES[1]}" in out


def test_accept_goes_on_from_a_stage_whose_gate_said_retrain(cloud, capsys):
    state, argv, _ = cloud
    state["decisions"][NAMES[0]] = "retrain"
    assert pipeline.main(argv) == 3
    assert f"the same command plus --accept {NAMES[0]}" in capsys.readouterr().out
    state["submitted"].clear()
    assert pipeline.main([*argv, "--accept", "stage1"]) == 0
    # Stage 1's checkpoint and report stand as they were (nothing of it runs again); stages 2 and 3 follow.
    assert kinds(state) == ["stage2-fit", "stage2-evaluate", "stage3-fit", "stage3-evaluate"]
    out = capsys.readouterr().out
    assert f"[pipeline] {NAMES[0]}: the gate says retrain; accepted by --accept" in out
    state["submitted"].clear()
    assert pipeline.main(argv) == 3  # without --accept stage 1's verdict stops the chain again
    assert kinds(state) == ["stage1-evaluate"]


def test_retrain_trains_the_stage_afresh_and_keeps_the_old_run(cloud, capsys, monkeypatch):
    state, argv, store = cloud
    state["decisions"][NAMES[1]] = "retrain"
    assert pipeline.main(argv) == 3
    state["decisions"][NAMES[1]] = "proceed"
    state["submitted"].clear()
    assert pipeline.main([*argv, "--retrain", "stage2"]) == 0
    assert kinds(state) == ["stage2-fit", "stage2-evaluate", "stage3-fit", "stage3-evaluate"]
    (aside,) = [p for p in (store / "ckpt").iterdir() if p.name.startswith(f"{NAMES[1]}.retrain-")]
    assert checkpoints.is_complete(aside / "checkpoint-final")  # the old run, renamed, whole
    assert json.loads((aside / "report" / "report.json").read_text())["decision"] == "retrain"
    assert pipeline.read_report(checkpoints.current(store / "ckpt" / "reports" / NAMES[1]))[0] == "proceed"
    assert f"--retrain: the finished run is kept as {aside}" in capsys.readouterr().out


def test_cloud_pipeline_stops_at_the_preflight(cloud, capsys):
    state, argv, store = cloud
    (store / "data" / "counsel-chat" / "data" / "20200325_counsel_chat.csv").unlink()
    assert pipeline.main(argv) == 1
    assert state["submitted"] == []
    assert "source counsel_chat: counsel-chat/data/20200325_counsel_chat.csv is neither at" in capsys.readouterr().out


def test_the_evaluation_of_a_two_machine_fit_runs_on_one_gpu_with_the_judge_key(cloud, monkeypatch):
    state, argv, store = cloud
    monkeypatch.setenv("JUDGE_API_KEY", "judge-secret")
    assert pipeline.main([*argv, "--machine", "H100_X_8", "--num-machines", "2", "--interruptible"]) == 0
    fit = state["kwargs"][state["submitted"][0]]
    assert str(fit["machine"]) == "H100_X_8" and fit["num_machines"] == 2 and fit["max_run_attempts"] == 3
    evaluation = state["kwargs"][state["submitted"][1]]
    assert state["submitted"][1].startswith("stage1-evaluate-")
    assert str(evaluation["machine"]) == "H100" and evaluation["num_machines"] == 1
    assert evaluation["interruptible"] is False and evaluation["max_run_attempts"] == 1
    assert evaluation["env"]["JUDGE_API_KEY"] == "judge-secret"  # by name from this shell, into the job only
    lines = evaluation["command"].splitlines()
    scratch = store.parent / "scratch"
    assert f"export HF_HOME={scratch}/hf_home" in lines
    evaluate = next(line for line in lines if "stages.evaluate" in line)
    assert f"--data.cache_dir {scratch}/data_cache" in evaluate
    publish = lines.index('if [ "${NODE_RANK:-0}" = 0 ]; then')
    assert "lightning_app.checkpoints publish" in lines[publish + 1] and lines[publish + 3] == "fi"
    assert lines[publish + 2] == f"  python -m lightning_app.data_cache push {scratch}/data_cache {store}/data_cache || true"


def test_a_second_pipeline_is_refused_while_a_job_of_the_stage_runs(cloud):
    state, argv, _ = cloud
    running = SimpleNamespace(name="stage1-fit-20261204-100000", tags=("therapeutic-moe", "stage1", "fit"), status="Running", link="job/L")
    state["running"].append(running)
    with pytest.raises(SystemExit) as stop:
        pipeline.main(argv)
    assert "stage1: a job of this stage is still at work: stage1-fit-20261204-100000 (Running, job/L)" in str(stop.value)
    assert state["submitted"] == []
