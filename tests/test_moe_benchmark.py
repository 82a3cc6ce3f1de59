"""The benchmark's naive loop-over-experts computes the same mixture as the stacked layer, so its
timing compares like with like (the benchmark itself is run by hand: python -m benchmarks.moe_overhead)."""

import json

import torch
from torch import nn
from transformers import MistralConfig

import benchmarks.moe_overhead as bench
from benchmarks.moe_overhead import LoopMoELoRALinear, OpCounter
from moe.config import MoELoRAConfig
from moe.layer import MoELoRALinear


def test_naive_loop_equals_the_stacked_layer_and_dispatches_more_ops():
    torch.manual_seed(0)
    config = MoELoRAConfig(dropout=0.0, r=4)
    base = nn.Linear(32, 24, bias=False).requires_grad_(False)
    stacked, loop = MoELoRALinear(base, config), LoopMoELoRALinear(base, config)
    with torch.no_grad():
        stacked.lora_B.normal_()
        loop.router.weight.copy_(stacked.router.weight)
        for index, expert in enumerate(loop.experts):
            rows = slice(index * config.r, (index + 1) * config.r)
            expert[0].weight.copy_(stacked.lora_A[rows])
            expert[1].weight.copy_(stacked.lora_B[:, rows])
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(loop(x), stacked(x))

    def ops(module: nn.Module) -> int:
        with OpCounter() as counter:
            module(x.clone().requires_grad_(True)).sum().backward()
        return counter.count

    assert ops(loop) > ops(stacked)


def test_benchmark_runs_end_to_end_and_ends_with_the_json_summary(monkeypatch, capsys):
    small = MistralConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=16, sliding_window=None, attn_implementation="sdpa")
    monkeypatch.setattr(bench, "wayfarer2_config", lambda: small)
    bench.main(["--seq-len", "16", "--repeats", "1", "--device", "cpu"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    required = {"moe_vs_lora_time", "loop_vs_lora_time", "moe_vs_lora_peak_memory", "moe_vs_lora_ops"}
    assert required | {"device"} <= set(summary)
    assert summary["loop_vs_lora_ops"] > summary["moe_vs_lora_ops"] > 1.0
    assert summary["memory_metric"] == "saved_activations"
