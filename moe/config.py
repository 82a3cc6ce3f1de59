"""The one source of truth for the mixture: sizes, routing, loss weights, adapter dtype.

A dataclass so that a LightningCLI YAML fills it (`model.moe: {...}`) and an adapter folder stores it
(`adapter_config.json["moe"]`). Every invalid value fails here, at construction, naming its field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch

ADAPTER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# The one expert of MoELoRAConfig.plain_lora().
PLAIN_LORA_EXPERT = "plain_lora"


@dataclass
class MoELoRAConfig:
    """A mixture of `num_experts` LoRA experts of rank `r` on each of `target_modules`, top-k routed.

    Expert i carries the name `expert_domains[i]`: the domain loss pulls tokens labelled with that
    domain towards expert i, and export picks experts by these names. `domain_experts` separates the
    data's domain labels from the experts' names when they differ (e.g. a plain LoRA: one expert that
    every domain's tokens go through, `plain_lora()`).
    """

    num_experts: int = 4
    top_k: int = 2
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    # Targeted linears that their parent module calls once each on its own input (q/k/v of an
    # attention block, whose forward takes hidden_states) form one fused adapter with one router: one
    # matmul for their A projections and the router logits. Names outside target_modules are
    # ignored, so the default fits any targets; [] gives every adapted linear its own router.
    shared_router_groups: list[list[str]] = field(default_factory=lambda: [["q_proj", "k_proj", "v_proj"]])
    expert_domains: list[str] = field(
        default_factory=lambda: ["psychology", "mental_health", "bias_detection", "general_therapeutic"]
    )
    # The data's domain labels and the expert each one's tokens belong to (the domain loss's target,
    # the expert `stages.export --domain` serves it with), e.g. {psychology: plain_lora, ...}.
    # None: the labels are the experts' own names, one expert per domain.
    domain_experts: dict[str, str] | None = None
    # Switch load balancing, router z-loss and the domain loss; each multiplies its unweighted loss.
    balance_coef: float = 0.01
    z_coef: float = 0.001
    domain_coef: float = 0.1
    # How the domain coefficient moves over training progress p in [0, 1]: "constant" keeps it,
    # "linear" and "cosine" take it to zero at p = 1 (experts specialise first, then routing is free).
    domain_anneal: Literal["constant", "linear", "cosine"] = "constant"
    # fp32 master weights by default; under bf16 autocast the adapter matmuls still run in bf16.
    adapter_dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> None:
            raise ValueError(f"MoELoRAConfig.{name}={getattr(self, name)!r}: {why}")

        if self.num_experts < 1:
            fail("num_experts", "needs at least one expert")
        if not 1 <= self.top_k <= self.num_experts:
            fail("top_k", f"must be between 1 and num_experts={self.num_experts}")
        if self.r < 1:
            fail("r", "the LoRA rank must be a positive integer")
        if not self.alpha > 0:
            fail("alpha", "must be positive (the adapter is scaled by alpha / r)")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", "must be in [0, 1)")
        if not self.target_modules:
            fail("target_modules", "name at least one linear layer, e.g. [q_proj, k_proj, v_proj, o_proj]")
        if len(set(self.target_modules)) != len(self.target_modules):
            fail("target_modules", "lists a module twice")
        self._check_shared_router_groups(fail)
        if len(set(self.expert_domains)) != len(self.expert_domains):
            duplicates = sorted({d for d in self.expert_domains if self.expert_domains.count(d) > 1})
            fail("expert_domains", f"duplicate domain(s) {duplicates}: each expert needs its own name")
        if len(self.expert_domains) != self.num_experts:
            fail(
                "expert_domains",
                f"has {len(self.expert_domains)} names but num_experts={self.num_experts}: "
                "one name per expert",
            )
        if self.domain_experts is not None:
            if not isinstance(self.domain_experts, dict) or not self.domain_experts:
                fail("domain_experts", "map each data domain to an expert name, e.g. {psychology: plain_lora}")
            unknown = sorted({e for e in self.domain_experts.values() if e not in self.expert_domains})
            if unknown:
                fail("domain_experts", f"names no expert {unknown}; the experts are {self.expert_domains}")
        for name in ("balance_coef", "z_coef", "domain_coef"):
            if not getattr(self, name) >= 0:
                fail(name, "a loss weight must be >= 0")
        if self.domain_anneal not in ("constant", "linear", "cosine"):
            fail("domain_anneal", "choose constant, linear or cosine")
        if self.adapter_dtype not in ADAPTER_DTYPES:
            fail("adapter_dtype", f"choose one of {sorted(ADAPTER_DTYPES)}")

    def _check_shared_router_groups(self, fail) -> None:
        groups = self.shared_router_groups
        if not isinstance(groups, list) or not all(
            isinstance(group, list) and all(isinstance(name, str) for name in group) for group in groups
        ):
            fail("shared_router_groups", "a list of groups of module names, e.g. [[q_proj, k_proj, v_proj]]")
        for group in groups:
            if len(group) < 2 or len(set(group)) != len(group):
                fail("shared_router_groups", f"group {group} must name at least two different modules")
        names = [name for group in groups for name in group]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            fail("shared_router_groups", f"{twice} in more than one group: a linear has one router")

    def router_group(self, module: str) -> list[str]:
        """The targeted modules that share `module`'s router (itself alone when in no group)."""
        for group in self.shared_router_groups:
            if module in group:
                return [name for name in group if name in self.target_modules]
        return [module]

    @property
    def domains(self) -> list[str]:
        """The data's domain labels: a batch's domain_ids index this list."""
        return list(self.domain_experts) if self.domain_experts is not None else list(self.expert_domains)

    @property
    def domain_targets(self) -> list[int]:
        """Per data domain (in `domains` order), the index of the expert its tokens belong to."""
        if self.domain_experts is None:
            return list(range(self.num_experts))
        return [self.expert_domains.index(self.domain_experts[d]) for d in self.domains]

    def plain_lora(self) -> MoELoRAConfig:
        """A plain LoRA of this mixture's trainable budget on the same modules: one expert of rank
        num_experts x r (the same A [E*r, in] and B [out, E*r] per linear), the same LoRA scale alpha / r
        and dropout, every domain mapped to it, and no router losses (with one expert the gate is 1
        for every token: the router's single logit changes nothing, so nothing is there to train)."""
        if self.num_experts == 1:
            return self
        return MoELoRAConfig(
            num_experts=1,
            top_k=1,
            r=self.num_experts * self.r,
            alpha=self.num_experts * self.alpha,
            dropout=self.dropout,
            target_modules=list(self.target_modules),
            shared_router_groups=[list(g) for g in self.shared_router_groups],
            expert_domains=[PLAIN_LORA_EXPERT],
            domain_experts=dict.fromkeys(self.domains, PLAIN_LORA_EXPERT),
            balance_coef=0.0,
            z_coef=0.0,
            domain_coef=0.0,
            adapter_dtype=self.adapter_dtype,
        )

    @property
    def scaling(self) -> float:
        """The LoRA scale alpha / r applied to every expert's output."""
        return self.alpha / self.r

    @property
    def torch_adapter_dtype(self) -> torch.dtype:
        return ADAPTER_DTYPES[self.adapter_dtype]

    def domain_coef_at(self, progress: float) -> float:
        """The domain-loss weight at training progress in [0, 1] (step / total steps)."""
        progress = min(max(progress, 0.0), 1.0)
        if self.domain_anneal == "linear":
            return self.domain_coef * (1.0 - progress)
        if self.domain_anneal == "cosine":
            return self.domain_coef * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.domain_coef

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MoELoRAConfig:
        """Build from a stored dict; an unknown key is an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MoELoRAConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)
