"""The benchmark's naive loop-over-experts computes the same mixture as the stacked layer, so its
timing compares like with like (the benchmark itself is run by hand: python -m benchmarks.moe_overhead)."""

import torch
from torch import nn

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
