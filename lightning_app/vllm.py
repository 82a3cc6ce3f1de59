"""The one place that spells a vLLM OpenAI-compatible server command.

Used by every job that serves a model on a Studio GPU (serving an export, stage 3's generator), so
the flags are written once. vLLM is an existing serving engine; nothing here implements a server.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

# vLLM accepts only these values for --max-lora-rank (vllm/config/lora.py: MaxLoRARanks); its default
# is 16, so a rank-64 export is refused unless the flag is given.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def max_lora_rank(rank: int) -> int:
    """The smallest value vLLM accepts for --max-lora-rank that serves an adapter of `rank`."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"LoRA rank {rank} is above vLLM's largest --max-lora-rank ({VLLM_LORA_RANKS[-1]})")


@dataclass(frozen=True)
class ServeSpec:
    """What `vllm serve` is asked to serve; `lora_modules` maps a served name to an adapter folder."""

    model: str
    port: int = 8000
    host: str = "127.0.0.1"
    served_model_name: str | None = None
    lora_modules: dict[str, str] = field(default_factory=dict)
    lora_rank: int | None = None  # the largest adapter rank among lora_modules
    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    extra: tuple[str, ...] = ()


def serve_argv(spec: ServeSpec) -> list[str]:
    """`vllm serve ...` as an argument list."""
    argv = ["vllm", "serve", spec.model, "--host", spec.host, "--port", str(spec.port), "--dtype", spec.dtype]
    if spec.served_model_name:
        argv += ["--served-model-name", spec.served_model_name]
    if spec.lora_modules:
        if spec.lora_rank is None:
            raise ValueError("serving LoRA adapters needs their rank (ServeSpec.lora_rank)")
        argv += ["--enable-lora", "--max-lora-rank", str(max_lora_rank(spec.lora_rank)), "--lora-modules"]
        argv += [f"{name}={path}" for name, path in spec.lora_modules.items()]
    if spec.max_model_len is not None:
        argv += ["--max-model-len", str(spec.max_model_len)]
    if spec.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", str(spec.gpu_memory_utilization)]
    return argv + list(spec.extra)


def serve_command(spec: ServeSpec) -> str:
    """The same command as one shell-quoted line (for a job command or a README)."""
    return shlex.join(serve_argv(spec))
