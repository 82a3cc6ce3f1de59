"""benchmarks/gpu_check.sh is prepared for a GPU it has not met yet: what can run on a CPU runs here
(--dry-run: the same code at toy size), and without CUDA the real checks say skipped, never a figure."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_checks

REPO_ROOT = Path(__file__).resolve().parents[1]


def lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]


def test_packing_dry_run_finds_every_packed_example_isolated_and_the_control_leaky(capsys):
    gpu_checks.main(["packing", "--dry-run"])
    results = lines(capsys)
    assert [r["attn_implementation"] for r in results] == ["sdpa", "eager"]
    for result in results:
        assert result["isolated"] is True
        assert result["max_abs_gap"] <= result["tolerance"] < result["leaky_control_gap"]


def test_four_bit_dry_run_takes_one_training_step_that_updates_every_adapter_tensor(capsys):
    gpu_checks.main(["four-bit", "--dry-run"])
    (result,) = lines(capsys)
    assert result["finite"] is True and result["updated_tensors"] == result["trainable_tensors"] == 20


def test_without_cuda_the_real_checks_are_skipped_with_a_reason(capsys):
    for check in ("throughput", "plan", "packing", "four-bit"):
        gpu_checks.main([check])
    results = lines(capsys)
    assert [r["check"] for r in results] == ["throughput", "plan", "packing", "four_bit"]
    assert all("no CUDA device" in r["skipped"] and "value" not in r for r in results)


@pytest.mark.slow
def test_gpu_check_script_dry_run_prints_one_json_line_per_figure():
    result = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry-run"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHON": sys.executable},  # the interpreter running the tests, not PATH's
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert not [r for r in records if "error" in r], records
    figures = {r["figure"] for r in records if r["check"] == "throughput"}
    for variant in ("moe", "lora"):
        assert {f"{variant}_tokens_per_s", f"{variant}_peak_gb", f"{variant}_mfu"} <= figures
    assert "moe_vs_lora_step_time" in figures and "moe_hfu" in figures
    plan = [r for r in records if r["check"] == "plan"]
    assert [(r["run"], r["figure"]) for r in plan] == [
        (run, figure) for run in ("shipped_plan", "full_checkpointing")
        for figure in ("tokens_per_s", "peak_gib", "peak_vs_predicted")
    ]  # fmt: skip
    assert [r["activation_checkpointing"] for r in plan[::3]] == [False, True]
    assert all(r["predicted"] > 0 for r in plan if r["figure"] == "peak_gib")
    assert all(r["hardware_gflop_per_token"] > 0 for r in plan if r["figure"] == "tokens_per_s")
    assert sum(r["check"] == "packing" and r["isolated"] for r in records) == 2
    assert [r["finite"] for r in records if r["check"] == "four_bit"] == [True]
