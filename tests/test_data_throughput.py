"""The data benchmark's small run: it prepares a generated corpus end to end and reports per phase."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", ["tiny", "smollm2"])
def test_small_run_reports_end_to_end_per_phase_and_a_labelled_projection(tokenizer):
    command = [sys.executable, "-m", "benchmarks.data_throughput", "--rows", "60", "--priority-rows", "60"]
    command += ["--num-proc", "1", "2", "--tokenizer", tokenizer]
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    run = result["runs"][0]
    assert result["base_model"] == tokenizer
    assert run["conversations_read"] == 120 and run["examples"] > 0 and run["tokens"] > 0
    assert run["conversations_per_second_per_core"] > 0 and run["cpu_seconds"] > 0
    assert {"read_clean_dedup_split", "encode", "plan", "save"} <= set(run["phases"])
    assert all(p["seconds"] >= 0 for p in run["phases"].values())
    # two processes (reading a source each, dedup signatures, tokenization) prepare the same data
    two = result["runs"][1]
    assert two["num_proc"] == 2 and (two["examples"], two["tokens"]) == (run["examples"], run["tokens"])
    projection = result["projection_300k_on_8_cores_minutes"]
    assert projection["label"] == "projection, not measured" and projection["total"] > 0
    assert result["unchanged_rerun_seconds"] < run["first_step_seconds"]
