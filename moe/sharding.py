"""FSDP2 for a frozen base carrying trainable adapters: Lightning's ModelParallelStrategy, sharded here.

Why FSDP2 (`fully_shard`) and not Lightning's FSDPStrategy (FSDP1): FSDP1 flattens each unit into one
tensor of one dtype, so fp32 adapters inside bf16 decoder layers forced every nn.Linear to be its own
unit (hundreds of small all-gathers per step) and renamed parameters (`_fsdp_wrapped_module.`), which
broke the adapter-only checkpoints. FSDP2 shards parameter by parameter (DTensor), keeps each
parameter's dtype and name, so a decoder layer is one unit and state-dict keys are those of the
unsharded model.

- Units: every decoder layer (the classes the model lists in `_no_split_modules`, as Hugging Face
  models do), then the decoder stack as the root (norm). The input embeddings and the LM head are
  not sharded (`ignored_params`): they are frozen, the loss calls the head chunk by chunk outside the
  decoder's forward, and a tied head shares the embedding's weight.
- Across machines HYBRID: shard within a machine, replicate across machines (a 2-D mesh of
  [machines, GPUs per machine]), so the per-layer all-gathers stay on the machine's NVLink.
- Gradients are reduced in fp32 (`MixedPrecisionPolicy(reduce_dtype=float32)`).
- Checkpoints gather only the trainable parameters (`ignore_frozen_params`) into one file on rank 0,
  the same file a one-GPU run writes: the frozen base is never gathered to save.

Runs on CPU too (gloo), so the sharded path can be checked without a GPU:
    python -m stages.fit --config stages/stage1.yaml --config stages/demo.yaml \
        --config .lightning/strategies/fsdp.yaml --trainer.accelerator cpu --trainer.devices 2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def decoder_units(model: nn.Module) -> tuple[nn.Module, list[nn.Module], set[nn.Parameter]]:
    """(the decoder stack, its layers, the embedding and head parameters) of the Hugging Face model in `model`."""
    hf = next((m for m in model.modules() if getattr(m, "_no_split_modules", None)), None)
    if hf is None:
        raise TypeError(f"{type(model).__name__}: no Hugging Face model with `_no_split_modules` inside: nothing to shard")
    names = set(hf._no_split_modules)
    layers = [m for m in hf.modules() if type(m).__name__ in names]
    if not layers:
        raise TypeError(f"{type(hf).__name__}: none of its _no_split_modules {sorted(names)} found")
    ignored = {*hf.get_input_embeddings().parameters()}
    head = hf.get_output_embeddings()
    if head is not None:
        ignored |= set(head.parameters())
    return hf.base_model, layers, ignored


class AdapterFSDP(ModelParallelStrategy):
    """FSDP2 over the decoder layers, hybrid across machines, fp32 gradient reduction, adapter-only
    checkpoints (see the module docstring). param_dtype: the dtype layers compute in (None: each
    parameter's own: a bf16 base and fp32 adapters)."""

    def __init__(
        self,
        param_dtype: Literal["bfloat16", "float16", "float32"] | None = None,
        reduce_dtype: Literal["bfloat16", "float32"] = "float32",
        reshard_after_forward: bool = True,
        process_group_backend: str | None = None,
    ) -> None:
        super().__init__(save_distributed_checkpoint=False, process_group_backend=process_group_backend)
        self.param_dtype, self.reduce_dtype = param_dtype, reduce_dtype
        self.reshard_after_forward = reshard_after_forward

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        # every rank sees its own data (the parent's mesh calls the GPUs of a machine "tensor parallel")
        return {"num_replicas": self.world_size, "rank": self.global_rank}

    def shard_mesh(self) -> Any:
        """[machines, GPUs per machine] (HYBRID) on several machines, else the machine's GPUs."""
        return self.device_mesh if self.num_nodes > 1 else self.device_mesh["tensor_parallel"]

    def setup(self, trainer: pl.Trainer) -> None:
        from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

        if any(isinstance(m, FSDPModule) for m in self.lightning_module.modules()):
            return super().setup(trainer)  # sharded by an earlier fit or validate of this Trainer
        root, layers, ignored = decoder_units(self.lightning_module)
        policy = MixedPrecisionPolicy(
            param_dtype=DTYPES[self.param_dtype] if self.param_dtype else None,
            reduce_dtype=DTYPES[self.reduce_dtype],
        )
        mesh = self.shard_mesh()
        for layer in layers:
            fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=self.reshard_after_forward)
        fully_shard(root, mesh=mesh, mp_policy=policy, ignored_params=ignored)
        super().setup(trainer)

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The trainable parameters at full shape, on rank 0 only; the frozen base is never gathered."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        return get_model_state_dict(self.model, options=options)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """The parent loads the weights into the shards and drops them from the dict it returns; they
        are put back so that the module's on_load_checkpoint can check every adapter key came back."""
        path = Path(self.broadcast(checkpoint_path))
        saved = torch.load(path, mmap=True, map_location="cpu", weights_only=weights_only)["state_dict"]
        checkpoint = super().load_checkpoint(path, weights_only=weights_only)
        checkpoint["state_dict"] = saved
        return checkpoint
