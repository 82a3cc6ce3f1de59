"""The one LightningModule every stage trains: a frozen base model carrying MoE-LoRA adapters.

Read top to bottom: configure_model loads the base (the only place that does), attaches the mixture
and optionally starts it from a previous stage's adapter; training_step is LM loss plus the weighted
router losses; validation accumulates loss and routing per domain; configure_optimizers sizes warmup
and cosine decay to the steps that will actually run. Checkpoints hold only the trainable weights.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import Timer
from torch import Tensor
from torch.distributed.tensor import DTensor
from torch.optim.lr_scheduler import LambdaLR

from moe.adapter_io import load_adapter
from moe.base_model import WAYFARER2, default_dtype, load_base_model
from moe.batch import flatten_rows, needs_flattening
from moe.config import MoELoRAConfig
from moe.losses import lm_loss_sum, next_token_targets, router_losses, routing_counts_per_domain
from moe.model import attach_moe_lora, trainable_parameters
from moe.plan import Checkpointing, checkpoint_every, plan_for_gpu
from moe.router import record_routing

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: the step is not taken and nothing after it is saved."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's adapter keys are not exactly this model's trainable parameters."""


class Forward(NamedTuple):
    """What one micro-batch's forward gives the steps."""

    lm_sum: Tensor  # summed next-token cross-entropy (fp32)
    tokens: Tensor  # scored tokens
    router: dict[str, Tensor]  # unweighted balance, z and domain losses
    router_logits: Tensor  # [routers, *tokens, E], detached, for routing statistics
    batch: dict[str, Any]  # the batch as the model saw it (flattened for flash-attn)


@dataclass(frozen=True)
class Schedule:
    """Warmup then cosine over the optimizer steps this run will take, and why that many."""

    planned_steps: int  # what max_epochs over the training data asks for
    total_steps: int  # what will run: planned, cut by max_steps or by the time cap
    warmup_steps: int
    cut_by: str | None  # "max_steps", "max_time" or None

    def describe(self) -> str:
        cut = f", cut by {self.cut_by}" if self.cut_by else ""
        return (
            f"schedule: {self.total_steps} optimizer steps (plan {self.planned_steps}{cut}), "
            f"linear warmup {self.warmup_steps}, cosine decay to step {self.total_steps}"
        )

    def lr_factor(self, step: int, min_lr_ratio: float) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class MoELoRAModule(LightningModule):
    """Trains the adapters and routers of `moe` on a frozen `base_model`.

    base_model: Hub id, local folder, or `tiny` (moe.base_model). dtype: of the frozen base; None is
    bf16 on CUDA, fp32 on CPU. init_adapter: an adapter folder (a previous stage's checkpoint-final)
    to start from; stages.fit sets it from `run.init_from` after checking it fits. throughput_tokens_per_s:
    a measured training throughput; with Trainer(max_time) it tells how many steps fit in the time cap,
    so warmup and the cosine horizon follow those steps instead of the plan's epochs. loss_chunk_tokens:
    the LM head's vocabulary logits exist for at most this many tokens at once (moe.losses.lm_loss_sum);
    null computes them all at once. activation_checkpointing: true (every decoder layer), false,
    {every_n_layers: N}, or auto: on CUDA the checkpointing moe.plan finds fastest for the configured
    micro-batch within memory_budget_gib (default 85% of the GPU's memory, read at run time; set it to
    plan for another GPU), none off CUDA.
    """

    def __init__(
        self,
        base_model: str = WAYFARER2,
        moe: MoELoRAConfig = MoELoRAConfig(),  # noqa: B008 (read, never mutated: copied below)
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        throughput_tokens_per_s: float | None = None,
        dtype: Literal["bfloat16", "float16", "float32"] | None = None,
        attn_implementation: str | None = None,
        load_in_4bit: bool = False,
        activation_checkpointing: Checkpointing = False,
        memory_budget_gib: float | None = None,
        trust_remote_code: bool = False,
        init_adapter: str | None = None,
        loss_chunk_tokens: int | None = 1024,
    ) -> None:
        super().__init__()
        self.moe_config = replace(moe)
        self.save_hyperparameters(ignore=["moe"])
        self.hparams["moe"] = self.moe_config.to_dict()
        # Checkpoints carry only the adapter weights; on_load_checkpoint checks that all came back.
        self.strict_loading = False
        self.model: torch.nn.Module | None = None
        self.schedule: Schedule | None = None
        self._tokens_since_step: Tensor | int = 0
        # Non-finite training losses seen since the last check, counted on the device (a check reads it
        # back: at logging steps and before any checkpoint is written, never per micro-batch).
        self._nonfinite: Tensor | None = None
        self._first_nonfinite: Tensor | None = None
        self._last_step_time: float | None = None
        self.observed_routing: dict[str, Any] = {}

    # -- model -----------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Load the base (here only, so a bad config fails before the minutes this takes) and attach."""
        if self.model is not None:
            return
        h = self.hparams
        model = self.load_base()
        every = self.checkpointing_every(model)
        if every:
            # Non-reentrant: the frozen embedding output needs no grad, and moe.losses reads the
            # router logits of the real forward, never of the recompute.
            model.activation_checkpointing_enable({"use_reentrant": False}, every_n_layers=every)
        attach_moe_lora(model, self.moe_config)
        if h.init_adapter:
            load_adapter(model, h.init_adapter)
            log.info("adapters and routers initialised from %s", h.init_adapter)
        self.model = model

    def load_base(self) -> torch.nn.Module:
        """The frozen base as the settings name it (moe.plan builds it from a config instead)."""
        h = self.hparams
        return load_base_model(
            h.base_model,
            dtype=DTYPES[h.dtype] if h.dtype else default_dtype(),
            attn_implementation=h.attn_implementation,
            load_in_4bit=h.load_in_4bit,
            trust_remote_code=h.trust_remote_code,
        )

    def checkpointing_every(self, model: torch.nn.Module) -> int | None:
        """Checkpoint every N-th decoder layer (None: none); `auto` asks moe.plan for this GPU."""
        setting = self.hparams.activation_checkpointing
        if setting != "auto":
            return checkpoint_every(setting)
        if not torch.cuda.is_available():
            log.info("activation_checkpointing auto: not on CUDA, no checkpointing (the plan is for GPU memory)")
            return None
        try:
            trainer = self.trainer
        except RuntimeError:  # Lightning's public property raises when no Trainer is attached
            trainer = None
        data = trainer.datamodule if trainer is not None else None
        if data is None:
            raise ValueError("activation_checkpointing auto needs the trainer's datamodule (micro-batch, sequence length)")
        h = self.hparams
        chosen = plan_for_gpu(
            model.config,
            micro_batch=data.micro_batch_size,
            seq_len=data.max_seq_length,
            precision=str(trainer.precision),
            loss_chunk_tokens=h.loss_chunk_tokens,
            moe=self.moe_config,
            budget_gib=h.memory_budget_gib,
            load_in_4bit=h.load_in_4bit,
        )
        log.warning("activation_checkpointing auto: %s", chosen.describe())
        return chosen.checkpointing

    def trainable_state_keys(self) -> set[str]:
        """The adapter keys of a state dict: parameter names without the wrappers' prefixes (FSDP1,
        activation checkpointing, torch.compile), which state dicts do not carry either."""
        return {f"model.{_clean(name)}" for name in trainable_parameters(self.model)}

    def adapter_tensors(self) -> dict[str, Tensor]:
        """Adapter and router weights at full shape by their names in `self.model` (what
        moe.adapter_io.save_adapter writes), gathered from their shards under FSDP2: every rank must
        call it, in step (only the trainable weights are gathered, never the frozen base)."""
        return {
            _clean(name): (param.full_tensor() if isinstance(param, DTensor) else param).detach()
            for name, param in trainable_parameters(self.model).items()
        }

    # -- steps -----------------------------------------------------------------------------------
    def _forward(self, batch: dict[str, Any]) -> Forward:
        """The losses of one micro-batch.

        use_cache=False always; attention_mask only in padding mode (packed rows isolate examples
        through position_ids; for flash-attn the micro-batch is flattened into one row with its
        example boundaries, moe.batch.flatten_rows). The LM loss is computed from the
        decoder's hidden states in chunks (moe.losses.lm_loss_sum), never from full logits.
        """
        if "cu_seq_lens" in batch and needs_flattening(self.model.config._attn_implementation):
            batch = flatten_rows(batch)
        varlen = {
            k: batch[k]
            for k in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
            if k in batch
        }
        with record_routing(self.model) as routing:
            hidden = self.model.base_model(
                input_ids=batch["input_ids"],
                position_ids=batch["position_ids"],
                attention_mask=batch.get("attention_mask"),
                use_cache=False,
                **varlen,
            ).last_hidden_state
            logits = routing.take()
        targets = next_token_targets(batch["labels"], batch["position_ids"])
        head = self.model.get_output_embeddings()
        lm_sum, count = lm_loss_sum(hidden, head, targets, self.hparams.loss_chunk_tokens)
        router = router_losses(logits, batch["domain_ids"], batch["token_mask"], self.moe_config)
        return Forward(lm_sum, count, router, logits.detach(), batch)

    def _weighted(self, lm: Tensor, router: dict[str, Tensor]) -> tuple[Tensor, float]:
        c = self.moe_config
        progress = self.global_step / self.schedule.total_steps if self.schedule else 0.0
        domain_coef = c.domain_coef_at(progress)
        router_total = (
            c.balance_coef * router["balance"] + c.z_coef * router["z"] + domain_coef * router["domain"]
        )
        total = lm + router_total
        return total, domain_coef

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self._forward(batch)
        lm, router = out.lm_sum / out.tokens.clamp(min=1), out.router
        total, domain_coef = self._weighted(lm, router)
        self._count_nonfinite(total.detach(), lm.detach())
        self._tokens_since_step = self._tokens_since_step + batch["token_mask"].sum()
        self.log_dict(
            {
                "train_loss": lm,
                "train_ppl": torch.exp(lm.detach()),
                "train_balance": router["balance"],
                "train_z": router["z"],
                "train_domain": router["domain"],
                "train_total_loss": total,
                "domain_coef": domain_coef,
            },
            prog_bar=False,
        )
        return total

    # -- non-finite losses, checked without a host sync per micro-batch ----------------------------
    def _count_nonfinite(self, total: Tensor, lm: Tensor) -> None:
        """Count non-finite losses on the device; keep (step, total, LM loss) of the first one."""
        bad = ~torch.isfinite(total)
        if self._nonfinite is None:
            self._nonfinite = torch.zeros((), dtype=torch.int64, device=total.device)
            self._first_nonfinite = torch.zeros(3, dtype=torch.float64, device=total.device)
        first = bad & (self._nonfinite == 0)
        step = total.new_full((), float(self.global_step), dtype=torch.float64)  # a fill, not a host copy
        now = torch.stack([step, total.double(), lm.double()])
        self._first_nonfinite = torch.where(first, now, self._first_nonfinite)
        self._nonfinite = self._nonfinite + bad.to(torch.int64)

    def check_finite(self) -> None:
        """Raise NonFiniteLossError if any training loss so far was NaN or infinite (one read-back;
        called before the optimizer step of a logging step and before any checkpoint is saved)."""
        bad = self._nonfinite is not None and int(self._nonfinite) > 0
        # Every rank decides together: one rank raising alone would leave the others waiting in the
        # gradient all-reduce until the job's time runs out.
        if not self.trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        if not bad:
            raise NonFiniteLossError(
                f"another rank's training loss was NaN or infinite before global step {self.global_step}: "
                "stopped with it"
            )
        step, total, lm = self._first_nonfinite.tolist()
        raise NonFiniteLossError(
            f"training loss is {total} (LM loss {lm}) at global step {int(step)}, epoch "
            f"{self.current_epoch} ({int(self._nonfinite)} non-finite micro-batch loss(es) so far): "
            "stopped before the next optimizer step; nothing after that step was saved"
        )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Once per optimizer step, before clipping: at logging steps the non-finite check (the only
        host read-back of a step, as Lightning's own logging syncs there too); gradient norm and
        tokens/s since the last step, logged as device tensors."""
        every = self.trainer.log_every_n_steps
        if every and self.global_step % every == 0:
            self.check_finite()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads:
            norm = torch.nn.utils.get_total_norm([g.float() for g in grads])  # over every shard under FSDP2
            self.log("grad_norm", norm.full_tensor() if isinstance(norm, DTensor) else norm)
        now = time.perf_counter()
        if self._last_step_time is not None:
            tokens = self._tokens_since_step * self.trainer.world_size
            self.log("tokens_per_s", tokens / max(now - self._last_step_time, 1e-9))
        self._last_step_time, self._tokens_since_step = now, 0

    def on_validation_epoch_start(self) -> None:
        d, e = len(self.moe_config.domains), self.moe_config.num_experts
        self._val = {
            "loss_sum": torch.zeros((), device=self.device, dtype=torch.float64),
            "label_tokens": torch.zeros((), device=self.device, dtype=torch.float64),
            "balance": torch.zeros((), device=self.device, dtype=torch.float64),
            "z": torch.zeros((), device=self.device, dtype=torch.float64),
            "domain": torch.zeros((), device=self.device, dtype=torch.float64),
            "batches": torch.zeros((), device=self.device, dtype=torch.float64),
            "choices": torch.zeros(d, e, device=self.device),
            "gates": torch.zeros(d, e, device=self.device),
            "routed_tokens": torch.zeros(d, device=self.device),
        }

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        out = self._forward(batch)
        router = out.router
        # Token-weighted mean over the whole validation set.
        v = self._val
        v["loss_sum"] += out.lm_sum.double()
        v["label_tokens"] += out.tokens
        for name in ("balance", "z", "domain"):
            v[name] += router[name].double()
        v["batches"] += 1
        choices, gates, tokens = routing_counts_per_domain(
            out.router_logits, out.batch["domain_ids"], out.batch["token_mask"], self.moe_config
        )
        v["choices"] += choices
        v["gates"] += gates
        v["routed_tokens"] += tokens

    def on_validation_epoch_end(self) -> None:
        v = {k: self.trainer.strategy.reduce(t, reduce_op="sum") for k, t in self._val.items()}
        if v["label_tokens"] == 0:
            return
        loss = (v["loss_sum"] / v["label_tokens"]).float()
        metrics = {"val_loss": loss, "val_ppl": torch.exp(loss)}
        for name in ("balance", "z", "domain"):
            metrics[f"val_{name}"] = (v[name] / v["batches"]).float()
        c = self.moe_config
        use = v["choices"] / (c.top_k * v["routed_tokens"].clamp(min=1)).unsqueeze(-1)
        gates = v["gates"] / v["routed_tokens"].clamp(min=1).unsqueeze(-1)
        for d, domain in enumerate(c.domains):
            for e, expert in enumerate(c.expert_domains):
                metrics[f"expert_use/{domain}/{expert}"] = use[d, e]
        self.log_dict(metrics)
        seen = v["routed_tokens"] > 0
        self.observed_routing = {
            "val_loss": float(loss),
            "expert_use_per_domain": {
                domain: use[d].tolist() for d, domain in enumerate(c.domains) if seen[d]
            },
            "observed_gates": {
                domain: gates[d].tolist() for d, domain in enumerate(c.domains) if seen[d]
            },
        }

    # -- optimisation ------------------------------------------------------------------------------
    def plan_schedule(self) -> Schedule:
        """The steps that will run: the plan's epochs, cut by max_steps and by max_time x throughput."""
        trainer, h = self.trainer, self.hparams
        per_epoch = math.ceil(self.train_batches_per_epoch() / trainer.accumulate_grad_batches)
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        planned = per_epoch * epochs if epochs else trainer.max_steps
        if planned <= 0:
            raise ValueError("set trainer.max_epochs or trainer.max_steps: the schedule needs an end")
        total, cut_by = planned, None
        if 0 < trainer.max_steps < total:
            total, cut_by = trainer.max_steps, "max_steps"
        time_cap = _max_time_seconds(trainer)
        if h.throughput_tokens_per_s and time_cap:
            in_time = int(time_cap * h.throughput_tokens_per_s / self.tokens_per_step())
            if in_time < total:
                total, cut_by = in_time, "max_time"
        total = max(1, total)
        warmup = h.warmup_steps if total >= planned else round(h.warmup_steps * total / planned)
        return Schedule(planned, total, max(1, min(warmup, total)), cut_by)

    def train_batches_per_epoch(self) -> int:
        """Micro-batches per epoch on this device, from the datamodule's train rows per epoch (the
        prepared data's count): its sampler splits them across devices, then into micro-batches.

        Not trainer.estimated_stepping_batches: called from configure_optimizers it sets up the fit
        loop's train loader before the checkpoint's loop state is restored, and Lightning then never
        restores the loader's position (a resumed epoch would start over from its first batch).
        """
        trainer, data = self.trainer, self.trainer.datamodule
        per_device = math.ceil(data.rows_per_epoch() / trainer.world_size)  # the sampler pads, no drop
        batches = math.ceil(per_device / data.micro_batch_size)
        limit = trainer.limit_train_batches
        if isinstance(limit, int):
            return min(batches, limit)
        return int(batches * limit) if limit is not None else batches

    def tokens_per_step(self) -> int:
        """Token slots per optimizer step (packed rows are full): rows x length x accumulation x devices."""
        data = self.trainer.datamodule
        return (
            data.micro_batch_size
            * data.max_seq_length
            * self.trainer.accumulate_grad_batches
            * (self.trainer.world_size)
        )

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        self.schedule = self.plan_schedule()
        log.warning("%s", self.schedule.describe())
        optimizer = self.make_optimizer(fused=self.device.type == "cuda")
        schedule, min_lr_ratio = self.schedule, h.min_lr_ratio
        scheduler = LambdaLR(optimizer, lambda step: schedule.lr_factor(step, min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def make_optimizer(self, fused: bool) -> torch.optim.Optimizer:
        """AdamW over the adapters and routers (fused on CUDA)."""
        h = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=h.lr, betas=tuple(h.betas), weight_decay=h.weight_decay, fused=fused)

    # -- checkpoints: trainable weights only -------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_finite()  # never save weights that a non-finite step may have touched
        keep = self.trainable_state_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._apply_new_lr(checkpoint)
        expected, found = self.trainable_state_keys(), set(checkpoint["state_dict"])
        missing, extra = sorted(expected - found), sorted(found - expected)
        if missing or extra:
            raise CheckpointMismatchError(
                "checkpoint does not fit this model's adapters: "
                f"{len(missing)} missing key(s) {missing[:5]}, "
                f"{len(extra)} unexpected key(s) {extra[:5]}; was it written for another MoE config "
                "(num_experts, r, target_modules) or base model?"
            )


    def _apply_new_lr(self, checkpoint: dict[str, Any]) -> None:
        """A resume with another `model.lr` applies it: the restored optimizer and schedule would
        otherwise keep the checkpoint's rate. The schedule's position and Adam's moments are kept;
        only the peak rate, and the current rate with it, are scaled."""
        old = checkpoint.get("hyper_parameters", {}).get("lr")
        new = self.hparams.lr
        if old is None or old == new:
            return
        ratio = new / old if old else None
        for state in checkpoint.get("optimizer_states", []):
            for group in state["param_groups"]:
                group["lr"] = group["lr"] * ratio if ratio is not None else new
                group["initial_lr"] = new
        for state in checkpoint.get("lr_schedulers", []):
            state["base_lrs"] = [new for _ in state["base_lrs"]]
            if "_last_lr" in state:
                state["_last_lr"] = [lr * ratio if ratio is not None else new for lr in state["_last_lr"]]
        checkpoint["hyper_parameters"]["lr"] = new
        log.warning("model.lr changed on resume: %g -> %g, applied from step %d", old, new, checkpoint["global_step"])


_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def _clean(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def _max_time_seconds(trainer: Any) -> float | None:
    """Trainer(max_time) in seconds: the whole stage's budget (the same on every resume, so the
    schedule is too), from the Timer's public state: what remains plus what has elapsed."""
    timers = [cb for cb in trainer.callbacks if isinstance(cb, Timer)]
    if not timers or timers[0].time_remaining() is None:
        return None
    return timers[0].time_remaining() + timers[0].time_elapsed()
