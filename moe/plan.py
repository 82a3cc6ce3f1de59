"""The training step measured on paper, and the checkpointing plan chosen from it.

A GPU is not needed to know what one step of the stage module costs: the step runs on PyTorch fake
tensors (shapes and dtypes, no data, no arithmetic) with the project's own configure_model() and
training_step(), a packed batch from the training collate, backward, gradient clipping and fused
AdamW. A dispatch mode sees every operation: it counts FLOPs with torch.utils.flop_counter's formulas
(attention counted dense, no causal discount) and the bytes of every live tensor storage (a storage
is freed when its last tensor dies: weakref.finalize), so the peak is of live tensors only; a GPU
adds the CUDA context, workspaces and allocator fragmentation on top (typically 5-15%).

Operations run during backward with grad mode on are activation-checkpointing recompute: they are
executed (hardware) FLOPs but not model FLOPs.

Every decoder layer costs the same memory and FLOPs, so the planner measures two shallow copies of
the model (d and 2d layers, d a multiple of the checkpointing period) and extrapolates linearly to
the real depth: seconds per candidate instead of minutes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import traceback
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Union

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop, sdpa_flop
from transformers import AutoModelForCausalLM, PretrainedConfig

from moe.batch import Collate

log = logging.getLogger(__name__)

# model.activation_checkpointing: on, off, {every_n_layers: N}, or "auto" (the plan below).
Checkpointing = Union[bool, Literal["auto"], dict[str, int]]

# The dispatch-level names the CPU flash-attention kernel gets on fake CPU tensors; the stock
# flop registry knows only the CUDA ones.
aten = torch.ops.aten
for _op, _formula in (
    (aten._scaled_dot_product_flash_attention_for_cpu, sdpa_flop),
    (aten._scaled_dot_product_flash_attention_for_cpu_backward, sdpa_backward_flop),
):
    flop_registry.setdefault(_op, _formula)

MOE_DIR = str(Path(__file__).parent)
TORCH_DIR = str(Path(torch.__file__).parent)
GIB = 2**30
# Dense bf16 tensor-core peaks from the vendors' datasheets (SXM parts), by a name fragment of
# torch.cuda.get_device_name(); and their memory, for planning a GPU that is not here.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
GPU_MEMORY_GIB = {"H100": 79.19, "H200": 139.8, "A100": 79.15}
# The share of the dense bf16 peak that the schedule assumes a step executes at: a TARGET (typical of
# well-tuned LoRA fine-tuning at this size), not a measurement, until benchmarks/gpu_check.sh measures it.
TARGET_PEAK_SHARE = 0.40
DEFAULT_BUDGET_SHARE = 0.85


def checkpoint_every(setting: Checkpointing) -> int | None:
    """The checkpointing period a setting asks for: None off, 1 every layer, N every N-th layer."""
    if setting is True:
        return 1
    if setting is False or setting is None:
        return None
    if isinstance(setting, dict) and set(setting) == {"every_n_layers"}:
        every = setting["every_n_layers"]
        if isinstance(every, int) and every >= 1:
            return every
    raise ValueError(
        f"model.activation_checkpointing: {setting!r} is not one of true, false, auto or "
        "{every_n_layers: N} with N >= 1"
    )


def checkpointing_name(every: int | None) -> str:
    return "none" if every is None else "full" if every == 1 else f"every {every} layers"


# -- the meter ----------------------------------------------------------------------------------------
@dataclass
class Phase:
    """Figures of one part of the step."""

    flops: int = 0
    recompute_flops: int = 0
    peak_bytes: int = 0


class StepMeter(TorchDispatchMode):
    """Counts FLOPs and live storage bytes of every operation dispatched under it.

    Storages are keyed by their C pointer and released by weakref.finalize when the storage dies, so
    views and in-place results never count twice. `wide_fp32` lists fp32 tensors of
    [tokens, hidden] or [tokens, vocab] created from code under moe/ (with the line that made them).
    """

    def __init__(self, tokens: int = 0, wide: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.live_bytes = 0
        self.phases: dict[str, Phase] = {}
        self.phase = Phase()
        self.tokens, self.wide = tokens, set(wide)
        self.wide_fp32: list[dict[str, Any]] = []

    def start(self, name: str) -> Phase:
        self.phase = self.phases.setdefault(name, Phase(peak_bytes=self.live_bytes))
        return self.phase

    def _free(self, key: int, nbytes: int) -> None:
        if self.live.pop(key, None) is not None:
            self.live_bytes -= nbytes

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self.live:
            return
        nbytes = storage.nbytes()
        self.live[key] = nbytes
        self.live_bytes += nbytes
        weakref.finalize(storage, self._free, key, nbytes)
        if self.live_bytes > self.phase.peak_bytes:
            self.phase.peak_bytes = self.live_bytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's signature)
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            flops = formula(*args, **kwargs, out_val=out)
            self.phase.flops += flops
            # Forward work redone inside backward (grad mode on) is checkpointing's recompute.
            if torch._C._current_graph_task_id() != -1 and torch.is_grad_enabled():
                self.phase.recompute_flops += flops
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                self.track(tensor)
                if tensor.dtype == torch.float32 and self.wide:
                    self._check_wide(func, tensor)
        return out

    def _check_wide(self, func: Any, tensor: torch.Tensor) -> None:
        if tensor.dim() < 2 or tensor.shape[-1] not in self.wide or tensor.numel() != self.tokens * tensor.shape[-1]:
            return
        # The innermost caller outside torch and this meter made it: count it if that is moe/ code.
        frames = [
            f for f in traceback.extract_stack()
            if not f.filename.startswith((TORCH_DIR, __file__)) and f.filename != "<string>"
        ]  # fmt: skip
        if frames and frames[-1].filename.startswith(MOE_DIR):
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"
            self.wide_fp32.append({"op": str(func), "shape": list(tensor.shape), "where": where})


# -- the step --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepSettings:
    """What one measurement runs: micro_batch rows of seq_len token slots (packed, full rows)."""

    micro_batch: int = 4
    seq_len: int = 2048
    checkpointing: int | None = 1  # checkpoint_every(...) of the setting
    precision: str = "bf16-mixed"
    loss_chunk_tokens: int | None = 1024
    layers: int | None = None  # None: the config's depth; fewer for the planner's shallow copies
    load_in_4bit: bool = False  # frozen decoder linears counted as bitsandbytes NF4 (double quant)


@dataclass
class StepFigures:
    """What one step costs: bytes, FLOPs per token slot, and the settings measured."""

    settings: StepSettings
    layers: int
    peak_bytes: int
    memory_bytes: dict[str, int]  # frozen_base, adapters_grads_optimizer, kept_activations, step_temporaries
    trainable_params: int
    model_flops_per_token: float
    hardware_flops_per_token: float
    wide_fp32: list[dict[str, Any]] = field(default_factory=list)

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    def summary(self) -> dict[str, Any]:
        """JSON-ready: GiB and GFLOP per token."""
        return {
            "peak_gib": round(self.peak_gib, 3),
            "peak_bytes": self.peak_bytes,
            "memory_gib": {k: round(v / GIB, 3) for k, v in self.memory_bytes.items()},
            "trainable_params": self.trainable_params,
            "model_gflop_per_token": round(self.model_flops_per_token / 1e9, 4),
            "hardware_gflop_per_token": round(self.hardware_flops_per_token / 1e9, 4),
            "hardware_flops_per_token": self.hardware_flops_per_token,
            "layers": self.layers,
            "settings": {**asdict(self.settings), "checkpointing": checkpointing_name(self.settings.checkpointing)},
            "wide_fp32_from_moe": self.wide_fp32,
        }


PRECISIONS = {
    "bf16-mixed": (torch.bfloat16, torch.bfloat16),  # (frozen base dtype, autocast dtype)
    "16-mixed": (torch.float16, torch.float16),
    "bf16-true": (torch.bfloat16, None),
    "16-true": (torch.float16, None),
    "32-true": (torch.float32, None),
    "32": (torch.float32, None),
}


def packed_batch(micro_batch: int, seq_len: int, vocab: int, domains: int) -> dict[str, Any]:
    """A micro-batch as the training loader hands it over: full packed rows (a half, a quarter and
    two eighths of the row per example, position ids restarting, domains mixed) through the collate."""
    generator = torch.Generator().manual_seed(0)
    parts = [seq_len // 2, seq_len // 4, seq_len // 8]
    lengths = [*parts, seq_len - sum(parts)]
    positions = torch.cat([torch.arange(n) for n in lengths])
    rows = []
    for _ in range(micro_batch):
        ids = torch.randint(3, vocab, (seq_len,), generator=generator)
        rows.append({
            "input_ids": ids,
            "labels": ids,
            "position_ids": positions,
            "domain_ids": torch.cat([torch.full((n,), i % domains) for i, n in enumerate(lengths)]),
            "token_mask": torch.ones(seq_len, dtype=torch.bool),
        })  # fmt: skip
    return Collate(pad_token_id=0)(rows)


def _module_class() -> type:
    """MoELoRAModule with the base built from a config on the current (fake) device: the module's
    own configure_model and training_step, only the weights' source differs."""
    from moe.lightning_module import MoELoRAModule

    class PaperModule(MoELoRAModule):
        def __init__(self, base_config: PretrainedConfig, dtype: torch.dtype, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._base_config, self._base_dtype = base_config, dtype

        def load_base(self) -> torch.nn.Module:
            model = AutoModelForCausalLM.from_config(
                self._base_config, dtype=self._base_dtype, attn_implementation="sdpa"
            )
            return model.requires_grad_(False)

    return PaperModule


def measure_step(
    base_config: PretrainedConfig, settings: StepSettings, module_kwargs: dict[str, Any] | None = None
) -> StepFigures:
    """One steady-state optimizer step (Adam's state already exists) of micro_batch x seq_len on fake
    CPU tensors. module_kwargs: MoELoRAModule's arguments (moe, lr, ...) as the stage config gives them."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    if settings.precision not in PRECISIONS:
        raise ValueError(f"precision {settings.precision!r}: expected one of {sorted(PRECISIONS)}")
    # A copy without the loaded model's quantisation (4-bit is counted by quantization_saving).
    fields = {k: v for k, v in base_config.to_dict().items() if k != "quantization_config"}
    if settings.layers is not None:
        fields["num_hidden_layers"] = settings.layers
    config = type(base_config).from_dict(fields)
    dtype, autocast = PRECISIONS[settings.precision]
    kwargs = {k: v for k, v in (module_kwargs or {}).items() if k not in ("activation_checkpointing", "dtype")}
    kwargs["loss_chunk_tokens"] = settings.loss_chunk_tokens
    every = settings.checkpointing
    checkpointing = {"every_n_layers": every} if every else False
    tokens = settings.micro_batch * settings.seq_len
    module_class = _module_class()
    module = module_class(config, dtype, activation_checkpointing=checkpointing, **kwargs)
    real_batch = packed_batch(settings.micro_batch, settings.seq_len, config.vocab_size, len(module.moe_config.domains))
    meter = StepMeter(tokens, (config.vocab_size, config.hidden_size) if autocast else ())
    fake = FakeTensorMode()
    with quiet_logging(), fake, meter:
        meter.start("setup")
        module.configure_model()
        model = module.model
        model.train()
        batch = {k: fake.from_tensor(v) if isinstance(v, torch.Tensor) else v for k, v in real_batch.items()}
        for v in batch.values():
            if isinstance(v, torch.Tensor):
                meter.track(v)
        optimizer = module.make_optimizer(fused=True)
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:  # Adam's moments exist from the first step on: measure a later step
            p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        start = meter.live_bytes
        meter.start("forward")
        with torch.autocast("cpu", dtype=autocast) if autocast else nullcontext():
            loss = module.training_step(batch, 0)
        kept = meter.live_bytes - start
        backward = meter.start("backward")
        loss.backward()
        del loss
        meter.start("optimizer")
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        frozen = sum(t.untyped_storage().nbytes() for t in [*model.parameters(), *model.buffers()] if not t.requires_grad)
        saved = quantization_saving(model) if settings.load_in_4bit else 0
    peak = max(p.peak_bytes for name, p in meter.phases.items() if name != "setup")
    total = sum(p.flops for name, p in meter.phases.items() if name != "setup")
    recompute = backward.recompute_flops
    # Adapters, Adam's moments (and the batch) are live from the start; their gradients count too.
    state = start - frozen + sum(p.numel() * p.element_size() for p in params)
    frozen, peak = frozen - saved, peak - saved
    return StepFigures(
        settings=settings,
        layers=config.num_hidden_layers,
        peak_bytes=peak,
        memory_bytes={
            "frozen_base": frozen,
            "adapters_grads_optimizer": state,
            "kept_activations": kept,
            "step_temporaries": peak - frozen - state - kept,
        },
        trainable_params=sum(p.numel() for p in params),
        model_flops_per_token=(total - recompute) / tokens,
        hardware_flops_per_token=total / tokens,
        wide_fp32=meter.wide_fp32,
    )



# bitsandbytes NF4 with double quantisation: 4 bits per weight, an 8-bit absmax per 64 weights and
# an fp32 constant per 256 absmaxes. Embedding and output head stay in the compute dtype.
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)


def quantization_saving(model: torch.nn.Module) -> int:
    """Bytes that loading the frozen decoder linears in 4-bit saves (the dequantised weight of one
    matmul at a time is a temporary the fake step does not see: small beside these)."""
    head = model.get_output_embeddings()
    saving = 0.0
    for module in model.modules():
        if type(module) is torch.nn.Linear and module is not head and not module.weight.requires_grad:
            saving += module.weight.numel() * (module.weight.element_size() - NF4_BYTES_PER_WEIGHT)
    return int(saving)


# -- the plan ----------------------------------------------------------------------------------------
def extrapolated(
    base_config: PretrainedConfig, settings: StepSettings, module_kwargs: dict[str, Any] | None = None
) -> StepFigures:
    """The step at the config's full depth, from two shallow copies (d and 2d layers, d a multiple of
    the checkpointing period, at least 2): every figure is linear in the number of layers."""
    every = settings.checkpointing or 1
    shallow = every * max(1, math.ceil(2 / every))
    depth = base_config.num_hidden_layers
    if depth <= 2 * shallow:
        return measure_step(base_config, replace(settings, layers=None), module_kwargs)
    a = measure_step(base_config, replace(settings, layers=shallow), module_kwargs)
    b = measure_step(base_config, replace(settings, layers=2 * shallow), module_kwargs)
    scale = (depth - shallow) / shallow

    def line(x: float, y: float) -> float:
        return x + (y - x) * scale

    return StepFigures(
        settings=replace(settings, layers=None),
        layers=depth,
        peak_bytes=round(line(a.peak_bytes, b.peak_bytes)),
        memory_bytes={k: round(line(a.memory_bytes[k], b.memory_bytes[k])) for k in a.memory_bytes},
        trainable_params=round(line(a.trainable_params, b.trainable_params)),
        model_flops_per_token=line(a.model_flops_per_token, b.model_flops_per_token),
        hardware_flops_per_token=line(a.hardware_flops_per_token, b.hardware_flops_per_token),
        wide_fp32=a.wide_fp32 + b.wide_fp32,
    )


@dataclass
class Plan:
    """The checkpointing (and micro-batch) chosen, with its figures and what it was chosen against."""

    micro_batch: int
    checkpointing: int | None
    figures: dict[str, Any]  # StepFigures.summary() of the choice
    budget_gib: float
    tried: list[dict[str, Any]]  # every candidate measured: micro_batch, checkpointing, peak, GFLOP/token

    def tokens_per_s(self, peak_flops: float, share: float = TARGET_PEAK_SHARE) -> float:
        """Token slots per second if the GPU executes the plan's FLOPs at `share` of its dense peak."""
        return share * peak_flops / self.figures["hardware_flops_per_token"]

    def describe(self) -> str:
        f = self.figures
        return (
            f"micro-batch {self.micro_batch}, checkpointing {checkpointing_name(self.checkpointing)}: "
            f"peak {f['peak_gib']:.1f} GiB of live tensors (budget {self.budget_gib:.1f} GiB), "
            f"{f['hardware_gflop_per_token']:.1f} GFLOP/token executed ({f['model_gflop_per_token']:.1f} model)"
        )


PERIODS = (None, 8, 4, 2, 1)  # fewest recomputed layers first


@dataclass(frozen=True)
class PlanRequest:
    """What a plan is chosen for: the architecture, the step's settings, the memory budget, the
    micro-batches to try (None: settings.micro_batch alone) and the stage module's arguments."""

    base_config: PretrainedConfig
    settings: StepSettings
    budget_gib: float
    micro_batches: list[int] | None = None
    module_kwargs: dict[str, Any] | None = None

    def cache_key(self) -> str:
        """Names the request (and the candidate periods) in the plan cache."""
        source = json.dumps(
            [self.base_config.to_dict(), asdict(self.settings), round(self.budget_gib, 2), self.micro_batches,
             {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in (self.module_kwargs or {}).items()},
             PERIODS],
            sort_keys=True, default=str,
        )  # fmt: skip
        return hashlib.sha256(source.encode()).hexdigest()[:16]


def choose(request: PlanRequest) -> Plan:
    """The checkpointing period (and, among `micro_batches`, the largest micro-batch) that executes
    the fewest FLOPs per token with a peak under budget_gib; settings.micro_batch alone when
    micro_batches is None. Raises ValueError when nothing fits, naming the smallest peak found."""
    base_config, settings, budget_gib = request.base_config, request.settings, request.budget_gib
    sizes = sorted(request.micro_batches or [settings.micro_batch], reverse=True)
    tried, fitting = [], []
    for every in PERIODS:
        if every is not None and every >= base_config.num_hidden_layers:
            continue
        for size in sizes:
            figures = extrapolated(
                base_config, replace(settings, micro_batch=size, checkpointing=every), request.module_kwargs
            )
            summary = figures.summary()
            fits = figures.peak_gib <= budget_gib
            tried.append({"micro_batch": size, "checkpointing": checkpointing_name(every), "fits": fits,
                          "peak_gib": summary["peak_gib"], "hardware_gflop_per_token": summary["hardware_gflop_per_token"]})  # fmt: skip
            if fits:
                fitting.append((figures.hardware_flops_per_token, -size, every, summary))
                break
        if fitting and every is None:
            break  # nothing recomputes less than no checkpointing
    if not fitting:
        smallest = min(t["peak_gib"] for t in tried)
        raise ValueError(
            f"no micro-batch in {sizes} fits {budget_gib:.1f} GiB even with full activation checkpointing "
            f"(smallest peak {smallest:.1f} GiB): lower data.micro_batch_size or data.max_seq_length, "
            "or set model.load_in_4bit"
        )
    flops, size, every, summary = min(fitting, key=lambda c: (round(c[0] / 1e7), c[1]))
    return Plan(-size, every, summary, budget_gib, tried)


def cache_dir() -> Path:
    from moe.smollm2 import cache_root

    return cache_root() / "plans"


def cached_choice(request: PlanRequest) -> Plan:
    """choose(), kept in the cache dir per request (architecture, settings, budget, candidates, MoE)."""
    path = cache_dir() / f"{request.cache_key()}.json"
    if path.exists():
        return Plan(**json.loads(path.read_text()))
    plan = choose(request)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")  # every rank of a job may plan at once
    partial.write_text(json.dumps(asdict(plan)))
    partial.replace(path)
    return plan


def gpu_budget_gib(budget_gib: float | None = None, share: float = DEFAULT_BUDGET_SHARE) -> float:
    """budget_gib if given, else `share` of this machine's GPU memory, read now."""
    if budget_gib is not None:
        return budget_gib
    if not torch.cuda.is_available():
        raise ValueError("no GPU to read the memory of: give a memory budget in GiB")
    return share * torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / GIB


def plan_for_gpu(
    base_config: PretrainedConfig,
    *,
    micro_batch: int,
    seq_len: int,
    precision: str,
    loss_chunk_tokens: int | None,
    moe: Any,
    budget_gib: float | None = None,
    load_in_4bit: bool = False,
) -> Plan:
    """The checkpointing for this run's micro-batch on this GPU (the `auto` setting), cached."""
    settings = StepSettings(micro_batch, seq_len, 1, precision, loss_chunk_tokens, load_in_4bit=load_in_4bit)
    return cached_choice(PlanRequest(base_config, settings, gpu_budget_gib(budget_gib), None, {"moe": moe}))


def micro_batches(rows_per_step: int, largest: int = 16) -> list[int]:
    """Micro-batches that divide the optimizer step's rows (so tokens per step stay the same)."""
    return [n for n in range(1, min(rows_per_step, largest) + 1) if rows_per_step % n == 0]


@dataclass
class GpuPlan:
    """The plan of a stage for one GPU that is not here, with its throughput at the target share."""

    gpu: str
    plan: Plan
    rows_per_step: int

    @property
    def accumulate_grad_batches(self) -> int:
        return self.rows_per_step // self.plan.micro_batch

    @property
    def tokens_per_s(self) -> float:
        return self.plan.tokens_per_s(PEAK_FLOPS[self.gpu])

    def describe(self) -> str:
        return (
            f"plan for one {self.gpu}: {self.plan.describe()}; accumulation {self.accumulate_grad_batches}; "
            f"~{self.tokens_per_s:,.0f} tokens/s at {TARGET_PEAK_SHARE:.0%} of its dense bf16 peak "
            "(a target share, not measured)"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "gpu": self.gpu, "budget_gib": round(self.plan.budget_gib, 2), "micro_batch": self.plan.micro_batch,
            "accumulate_grad_batches": self.accumulate_grad_batches,
            "checkpointing": checkpointing_name(self.plan.checkpointing),
            "peak_gib": self.plan.figures["peak_gib"],
            "hardware_gflop_per_token": self.plan.figures["hardware_gflop_per_token"],
            "tokens_per_s_at_target_share": round(self.tokens_per_s), "target_peak_share": TARGET_PEAK_SHARE,
            "tried": self.plan.tried,
        }  # fmt: skip


def plan_for(
    base_config: PretrainedConfig,
    settings: StepSettings,
    rows_per_step: int,
    gpu: str = "H100",
    budget_gib: float | None = None,
    module_kwargs: dict[str, Any] | None = None,
) -> GpuPlan:
    """The micro-batch (a divisor of the step's rows) and checkpointing for one `gpu` (default budget
    85% of its memory), cached."""
    if gpu not in GPU_MEMORY_GIB:
        raise ValueError(f"GPU {gpu!r}: expected one of {sorted(GPU_MEMORY_GIB)} (or give a budget in GiB)")
    budget = budget_gib or DEFAULT_BUDGET_SHARE * GPU_MEMORY_GIB[gpu]
    request = PlanRequest(base_config, settings, budget, micro_batches(rows_per_step), module_kwargs)
    chosen = cached_choice(request)
    return GpuPlan(gpu, chosen, rows_per_step)


@dataclass
class StageStep:
    """What a stage config says about its step: the architecture, the step's settings, the module's
    arguments and the rows per optimizer step."""

    base_config: PretrainedConfig
    settings: StepSettings
    module_kwargs: dict[str, Any]
    rows_per_step: int


def stage_step(model: Any, data: Any, trainer: Any) -> StageStep:
    """From a resolved stage config's model, data and trainer sections (`auto` measured as full
    checkpointing: what the plan then improves on)."""
    from moe.config import MoELoRAConfig

    setting = model.activation_checkpointing
    settings = StepSettings(
        micro_batch=data.micro_batch_size,
        seq_len=data.max_seq_length,
        checkpointing=1 if setting == "auto" else checkpoint_every(setting),
        precision=str(trainer.precision),
        loss_chunk_tokens=model.loss_chunk_tokens,
        load_in_4bit=bool(model.load_in_4bit),
    )
    kwargs = {"moe": MoELoRAConfig(**dict(model.moe)), "lr": model.lr, "betas": tuple(model.betas),
              "weight_decay": model.weight_decay}  # fmt: skip
    rows = data.micro_batch_size * int(trainer.accumulate_grad_batches or 1)
    return StageStep(base_config_for(model.base_model, bool(model.trust_remote_code)), settings, kwargs, rows)


def base_config_for(base_model: str, trust_remote_code: bool = False) -> PretrainedConfig:
    """The architecture a `model.base_model` setting names, without its weights: tiny's and
    Wayfarer-2-12B's from their numbers, anything else from its config.json."""
    from transformers import AutoConfig

    from moe.base_model import TINY, WAYFARER2, load_tokenizer, resolve_source, tiny_config, wayfarer2_config

    if base_model == TINY:
        return tiny_config(len(load_tokenizer(TINY)))
    if base_model == WAYFARER2:
        return wayfarer2_config()
    return AutoConfig.from_pretrained(resolve_source(base_model), trust_remote_code=trust_remote_code)


@contextmanager
def quiet_logging() -> Iterator[None]:
    """Lightning warns on every self.log outside a trainer: not news on paper."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")
        warnings.filterwarnings("ignore", message=".*self.trainer.*")
        yield
