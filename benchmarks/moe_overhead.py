"""What the mixture costs over a plain LoRA: one decoder layer at Wayfarer-2-12B's dimensions.

    python -m benchmarks.moe_overhead [--seq-len 2048] [--batch 4] [--repeats 3] [--device cpu|cuda]

Side by side in one run, on the same frozen layer (random weights, nothing downloaded):
  base   the frozen layer alone
  peft   PEFT LoRA r16 on q/k/v/o (casts the input to the adapter's fp32 and back, per linear)
  lora   an efficient plain LoRA r16 on q/k/v/o: base(x) + s * B(dropout(A x)), the matmuls in the
         input's (or autocast's) dtype, no fp32 copies: the strongest fair baseline
  moe    this package's MoE-LoRA, 4 experts, top-2 (q/k/v one fused adapter: their A projections and
         the router logits in one matmul; o_proj its own)
  loop   a naive loop over experts with token dispatch (MixLoRA's way), one router per linear, kept only
         here for comparison
Defaults: 4 x 2048 tokens on CUDA (the training micro-batch); on CPU 1 x 512 (a 2-core machine).
Forward + backward with the input requiring grad (a middle layer of the stack), dropout on (training).
Times are medians of --repeats runs after a warm-up, variants interleaved so machine noise hits all.
Memory: peak allocated on CUDA; on CPU (no allocator statistics) the bytes of activations saved for
backward. Ops: aten operations dispatched in one forward + backward, views excluded (a CPU-measurable
proxy for GPU kernel launches). --precision bf16-mixed (the CUDA default) runs the base in bf16 under
bf16 autocast with fp32 adapters (Lightning's bf16-mixed); CPU defaults to fp32. The last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from transformers.models.mistral.modeling_mistral import MistralDecoderLayer, MistralRotaryEmbedding

from moe.base_model import wayfarer2_config
from moe.config import MoELoRAConfig
from moe.model import attach_moe_lora, moe_layers
from moe.router import Router, RoutingRecord

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


class LoopMoELoRALinear(nn.Module):
    """The naive mixture: one (A, B) pair per expert, tokens gathered per chosen expert, index_add."""

    def __init__(self, base: nn.Linear, config: MoELoRAConfig):
        super().__init__()
        self.base, self.top_k, self.scaling = base, config.top_k, config.scaling
        dtype, device = config.torch_adapter_dtype, base.weight.device
        self.experts = nn.ModuleList(
            nn.Sequential(
                nn.Linear(base.in_features, config.r, bias=False, dtype=dtype, device=device),
                nn.Linear(config.r, base.out_features, bias=False, dtype=dtype, device=device),
            )
            for _ in range(config.num_experts)
        )
        for expert in self.experts:
            nn.init.normal_(expert[1].weight, std=0.02)
        self.dropout = nn.Dropout(config.dropout)
        self.router = Router(
            base.in_features, config.num_experts, config.top_k, RoutingRecord(), device=device
        )

    def forward(self, x: Tensor) -> Tensor:
        result = self.base(x)
        gates = self.router(x).flatten(0, -2)
        weights, chosen = gates.topk(self.top_k, dim=-1)
        inputs = self.dropout(x.to(self.experts[0][0].weight.dtype)).flatten(0, -2)
        update = torch.zeros(inputs.shape[0], result.shape[-1], dtype=inputs.dtype, device=x.device)
        for index, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == index)
            routed = expert(inputs[token]) * weights[token, slot, None] * self.scaling
            update = update.index_add(0, token, routed)
        return result + update.view(result.shape).to(result.dtype)


class PlainLoRALinear(nn.Module):
    """The efficient plain LoRA: y = base(x) + s * B(dropout(A x)). Dropout on the r-dim hidden (like
    the mixture's), weights cast to the compute dtype (small), never the [N, in] input."""

    def __init__(self, base: nn.Linear, config: MoELoRAConfig):
        super().__init__()
        dtype, device = config.torch_adapter_dtype, base.weight.device
        self.base, self.scaling, self.dropout = base, config.scaling, config.dropout
        self.lora_A = nn.Parameter(torch.empty(config.r, base.in_features, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, config.r, dtype=dtype, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=5**0.5)
        nn.init.normal_(self.lora_B, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        result = self.base(x)
        autocast = torch.is_autocast_enabled(x.device.type)
        a, b = (w if autocast else w.to(x.dtype) for w in (self.lora_A, self.lora_B))
        hidden = nn.functional.dropout(nn.functional.linear(x, a), self.dropout, self.training)
        return result + (nn.functional.linear(hidden, b) * self.scaling).to(result.dtype)


class OpCounter(TorchDispatchMode):
    """Counts aten operations that are not views (views launch no kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.count += 1
        return func(*args, **(kwargs or {}))


def build_variants(layer: MistralDecoderLayer, config: MoELoRAConfig) -> dict[str, dict[str, nn.Module]]:
    """For each variant, the four attention projections to put in place (all wrap the same base linears)."""
    attn = layer.self_attn
    base = {name: getattr(attn, name) for name in TARGETS}

    def restore() -> None:
        for name, module in base.items():
            setattr(attn, name, module)

    inject_adapter_in_model(
        LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=TARGETS),
        layer,
    )
    peft = {name: getattr(attn, name) for name in TARGETS}
    for module in peft.values():
        module.lora_A.to(config.torch_adapter_dtype)  # the same adapter dtype as the mixture (PEFT may
        module.lora_B.to(config.torch_adapter_dtype)  # have cast them to a bf16 base's dtype)
        nn.init.normal_(module.lora_B["default"].weight, std=0.02)  # as after some training
    restore()
    attach_moe_lora(layer, config)
    moe = {name.rsplit(".", 1)[-1]: module for name, module in moe_layers(layer).items()}
    for module in moe.values():
        nn.init.normal_(module.lora_B, std=0.02)
    restore()
    lora = {name: PlainLoRALinear(module, config) for name, module in base.items()}
    loop = {name: LoopMoELoRALinear(module, config) for name, module in base.items()}
    return {"base": base, "peft": peft, "lora": lora, "moe": moe, "loop": loop}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq-len", type=int, default=None, help="default 2048 on CUDA, 512 on CPU")
    parser.add_argument("--batch", type=int, default=None, help="default 4 on CUDA, 1 on CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["bf16-mixed", "fp32"], default=None,
                        help="bf16 base under bf16 autocast, fp32 adapters (training's setting; default on "
                        "CUDA) or all fp32 (default on CPU, where bf16 matmuls are slow)")  # fmt: skip
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    mixed = (args.precision or ("bf16-mixed" if cuda else "fp32")) == "bf16-mixed"
    args.seq_len = args.seq_len or (2048 if cuda else 512)
    args.batch = args.batch or (4 if cuda else 1)
    base_dtype = torch.bfloat16 if mixed else torch.float32
    torch.manual_seed(0)

    model_config = wayfarer2_config()
    model_config._attn_implementation = "sdpa"
    layer = MistralDecoderLayer(model_config, layer_idx=0).to(device=device, dtype=base_dtype).train()
    for param in layer.parameters():
        nn.init.normal_(param, std=0.02) if param.dim() > 1 else None
    layer.requires_grad_(False)
    variants = build_variants(layer, MoELoRAConfig())
    hidden = torch.randn(args.batch, args.seq_len, model_config.hidden_size, device=device, dtype=base_dtype)
    position_ids = torch.arange(args.seq_len, device=device).unsqueeze(0)
    position_embeddings = MistralRotaryEmbedding(model_config).to(device)(hidden, position_ids)
    grad_out = torch.randn_like(hidden)

    groups = {id(m.group): m.group for m in variants["moe"].values() if m.group.shared}.values()

    def use(name: str) -> list[nn.Parameter]:
        for target, module in variants[name].items():
            setattr(layer.self_attn, target, module)
        for group in groups:  # q/k/v's fused adapter runs before the attention block, for "moe" only
            if name == "moe":
                group.attach(layer.self_attn)
            else:
                group.detach()
        params = [p for module in variants[name].values() for p in module.parameters() if p.requires_grad]
        for param in params:
            param.grad = None
        return params

    def step() -> None:
        x = hidden.detach().requires_grad_(True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
            out = layer(x, position_embeddings=position_embeddings)
        out.backward(grad_out)

    def timed(fn: Callable[[], None]) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def memory(params: list[nn.Parameter]) -> int:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            step()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - before
        weights = {p.untyped_storage().data_ptr() for p in layer.parameters()}
        weights |= {p.untyped_storage().data_ptr() for p in params}
        saved: dict[int, int] = {}

        def pack(tensor: Tensor) -> Tensor:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in weights:
                saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            step()
        return sum(saved.values())

    results: dict[str, dict[str, float]] = {}
    for name in variants:
        params = use(name)
        counter = OpCounter()
        with counter:  # the warm-up also counts the operations (and, on CPU, the saved activations)
            saved = memory(params)
        if cuda:  # peak memory from a warm run: the first one also allocates cuBLAS workspaces
            use(name)
            saved = memory(params)
        results[name] = {"ops": counter.count, "memory": saved, "times": []}
        print(f"warm-up {name} done", file=sys.stderr, flush=True)
    for repeat in range(args.repeats):
        for name in variants:
            use(name)
            results[name]["times"].append(timed(step))
            seconds = results[name]["times"][-1]
            print(f"run {repeat + 1}/{args.repeats} {name}: {seconds:.3f} s", file=sys.stderr, flush=True)
    for result in results.values():
        result["time"] = statistics.median(result.pop("times"))

    memory_metric = "peak_allocated" if cuda else "saved_activations"
    dims = f"{model_config.hidden_size}/{model_config.intermediate_size}"
    print(
        f"decoder layer {dims}, seq {args.seq_len} x batch {args.batch}, {device.type}, "
        f"base {str(base_dtype).removeprefix('torch.')}, median of {args.repeats}"
    )
    memory_column = f"{memory_metric} MiB"
    header = f"{'variant':8} {'time s':>9} {'vs lora':>8} {'vs peft':>8} {memory_column:>24} {'vs lora':>8}"
    print(f"{header} {'ops':>6} {'vs lora':>8} {'vs peft':>8}")
    lora, peft = results["lora"], results["peft"]
    for name, result in results.items():
        print(
            f"{name:8} {result['time']:9.3f} {result['time'] / lora['time']:8.3f} "
            f"{result['time'] / peft['time']:8.3f} {result['memory'] / 2**20:24.1f} "
            f"{result['memory'] / lora['memory']:8.3f} {result['ops']:6d} {result['ops'] / lora['ops']:8.3f} "
            f"{result['ops'] / peft['ops']:8.3f}"
        )
    if cuda:
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"

    def ratio(a: str, b: str, key: str) -> float:
        return round(results[a][key] / results[b][key], 4)

    summary = {
        "moe_vs_lora_ops": ratio("moe", "lora", "ops"),
        "moe_vs_lora_time": ratio("moe", "lora", "time"),
        "moe_vs_lora_peak_memory": ratio("moe", "lora", "memory"),
        "moe_vs_peft_ops": ratio("moe", "peft", "ops"),
        "moe_vs_peft_time": ratio("moe", "peft", "time"),
        "lora_vs_peft_time": ratio("lora", "peft", "time"),
        "lora_vs_peft_ops": ratio("lora", "peft", "ops"),
        "loop_vs_lora_ops": ratio("loop", "lora", "ops"),
        "loop_vs_lora_time": ratio("loop", "lora", "time"),
        "lora_vs_base_time": ratio("lora", "base", "time"),
        "ops": {name: result["ops"] for name, result in results.items()},
        "precision": "bf16-mixed" if mixed else "fp32",
        "memory_metric": memory_metric,
        "seq_len": args.seq_len,
        "batch": args.batch,
        "device": device_name,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
