"""The benchmark's naive loop-over-experts computes the same mixture as the stacked layer, so its
timing compares like with like (the benchmark itself is run by hand: python -m benchmarks.moe_overhead)."""

import json

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from transformers import MistralConfig

import benchmarks.moe_overhead as bench
from benchmarks.moe_overhead import LoopMoELoRALinear, OpCounter, PlainLoRALinear
from moe.config import MoELoRAConfig
from moe.layer import AdapterGroup, MoELoRALinear
from moe.router import RoutingRecord


def test_naive_loop_equals_the_stacked_layer_and_dispatches_more_ops():
    torch.manual_seed(0)
    config = MoELoRAConfig(dropout=0.0, r=4)
    base = nn.Linear(32, 24, bias=False).requires_grad_(False)
    stacked, loop = MoELoRALinear(base, config), LoopMoELoRALinear(base, config)
    AdapterGroup([stacked], config, RoutingRecord(), parent=None)
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


def test_efficient_plain_lora_equals_peft_lora_with_the_same_weights():
    torch.manual_seed(0)
    config = MoELoRAConfig(dropout=0.0, r=4)
    block = nn.Module()
    block.q_proj = nn.Linear(32, 24, bias=False).requires_grad_(False)
    plain = PlainLoRALinear(block.q_proj, config)
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=config.alpha, target_modules=["q_proj"]), block)
    with torch.no_grad():
        block.q_proj.lora_A["default"].weight.copy_(plain.lora_A)
        block.q_proj.lora_B["default"].weight.copy_(plain.lora_B)
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(plain(x), block.q_proj(x))


def test_benchmark_runs_end_to_end_and_ends_with_the_json_summary(monkeypatch, capsys):
    small = MistralConfig(
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=None,
        attn_implementation="sdpa",
    )
    monkeypatch.setattr(bench, "wayfarer2_config", lambda: small)
    bench.main(["--seq-len", "16", "--repeats", "1", "--device", "cpu"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    required = {"moe_vs_lora_time", "loop_vs_lora_time", "moe_vs_lora_peak_memory", "moe_vs_lora_ops"}
    assert required | {"device", "moe_vs_peft_ops", "lora_vs_peft_time"} <= set(summary)
    assert summary["loop_vs_lora_ops"] > summary["moe_vs_lora_ops"] > 1.0
    # The efficient baseline never dispatches more ops than PEFT (fewer once PEFT casts a bf16 input).
    assert summary["ops"]["lora"] <= summary["ops"]["peft"]
    assert summary["memory_metric"] == "saved_activations"
