"""The shared vLLM server command: the rank flag vLLM needs and the adapters it serves."""

import pytest

from lightning_app.vllm import ServeSpec, max_lora_rank, serve_argv, serve_command


def test_max_lora_rank_rounds_up_to_a_value_vllm_accepts():
    assert max_lora_rank(16) == 16
    assert max_lora_rank(48) == 64
    assert max_lora_rank(64) == 64
    with pytest.raises(ValueError, match="largest"):
        max_lora_rank(1024)


def test_serve_command_with_an_adapter():
    spec = ServeSpec(model="HuggingFaceTB/SmolLM2-135M-Instruct", lora_modules={"stage1": "/exports/s1"}, lora_rank=64)
    argv = serve_argv(spec)
    assert argv[:3] == ["vllm", "serve", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert argv[argv.index("--max-lora-rank") + 1] == "64"
    assert argv[argv.index("--lora-modules") + 1] == "stage1=/exports/s1"
    assert "--enable-lora" in serve_command(spec)


def test_an_adapter_without_its_rank_is_refused():
    with pytest.raises(ValueError, match="rank"):
        serve_argv(ServeSpec(model="m", lora_modules={"a": "/x"}))
