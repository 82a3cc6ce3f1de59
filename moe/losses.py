"""Router losses and routing statistics, read from the logits of the model's last forward.

Each router keeps only its latest logits (see moe.router), so these functions see one forward, once,
even when activation checkpointing recomputes it during backward. Padding (token_mask False) never
counts; the domain loss also skips tokens without a domain label (domain_ids -1), so packed rows that
mix domains work token by token. Every loss is averaged over the routers (a router shared by q/k/v
counts once: one forward, one set of logits).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from moe.config import MoELoRAConfig
from moe.model import moe_routers
from moe.router import top_k_gates


def last_router_logits(model: nn.Module, token_mask: Tensor) -> list[Tensor]:
    """Each router's fp32 logits [B, T, E] from the last forward, checked against the batch's shape."""
    routers = list(moe_routers(model).values())
    logits = [router.logits for router in routers]
    if not logits or any(item is None for item in logits):
        raise ValueError("no router logits: run the model's forward on this batch first")
    for item in logits:
        if item.shape[:-1] != token_mask.shape:
            raise ValueError(
                f"router logits are for tokens of shape {tuple(item.shape[:-1])} but the batch is "
                f"{tuple(token_mask.shape)}: call this right after the forward of the same batch"
            )
    if torch.is_grad_enabled() and any(
        router.weight.requires_grad and not item.requires_grad for router, item in zip(routers, logits)
    ):
        raise RuntimeError(
            "router logits carry no gradient: the forward ran without autograd (under torch.no_grad, or "
            "reentrant activation checkpointing: enable it with {'use_reentrant': False})"
        )
    return logits


def switch_balance_loss(logits: Tensor, top_k: int, weights: Tensor | None = None) -> Tensor:
    """Switch load balancing E * sum_e f_e * P_e over tokens [N, E] (weights [N]: 1 real, 0 padding):
    f_e is the share of the top-k choices that went to expert e, P_e its mean router probability.
    1 when perfectly balanced."""
    experts = logits.shape[-1]
    weights = torch.ones(logits.shape[0], device=logits.device) if weights is None else weights
    total = weights.sum().clamp(min=1)
    probs = logits.softmax(dim=-1)
    chosen = torch.zeros_like(probs).scatter(-1, logits.topk(top_k, dim=-1).indices, 1.0)
    share = (chosen * weights[:, None]).sum(dim=0) / (total * top_k)
    mean_prob = (probs * weights[:, None]).sum(dim=0) / total
    return experts * (share * mean_prob).sum()


def router_losses(
    model: nn.Module, domain_ids: Tensor, token_mask: Tensor, config: MoELoRAConfig
) -> dict[str, Tensor]:
    """Unweighted scalar losses `balance`, `z` and `domain` from the last forward's routing.

    balance: Switch load balancing over real tokens; z: mean squared logsumexp of the logits (keeps
    them small); domain: cross-entropy of the full router softmax towards expert `domain_ids` (expert i
    is `config.expert_domains[i]`), 0 for a batch without labels. Weight them with config.balance_coef,
    z_coef and domain_coef_at(progress). Masked sums, not boolean indexing: static shapes.
    """
    logits = last_router_logits(model, token_mask)
    device = logits[0].device
    real = token_mask.to(device=device, dtype=torch.float32).flatten()
    domain_ids = domain_ids.to(device).flatten()
    if (domain_ids >= config.num_experts).any():
        raise ValueError(
            f"domain_ids hold {int(domain_ids.max())}, but there are {config.num_experts} experts"
        )
    labelled = real * (domain_ids >= 0)
    targets = domain_ids.clamp(min=0)
    balance, z, domain = [], [], []
    for item in logits:
        tokens = item.flatten(0, -2)  # [N, E]
        balance.append(switch_balance_loss(tokens, config.top_k, real))
        z.append((torch.logsumexp(tokens, dim=-1).square() * real).sum() / real.sum().clamp(min=1))
        cross_entropy = nn.functional.cross_entropy(tokens, targets, reduction="none")
        domain.append((cross_entropy * labelled).sum() / labelled.sum().clamp(min=1))
    return {
        "balance": torch.stack(balance).mean(),
        "z": torch.stack(z).mean(),
        "domain": torch.stack(domain).mean(),
    }


@torch.no_grad()
def routing_counts_per_domain(
    model: nn.Module, domain_ids: Tensor, token_mask: Tensor, config: MoELoRAConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Sums to accumulate over many batches, all over routers and real labelled tokens:
    (choices [D, E]: top-k choices per domain and expert, gates [D, E]: summed routing gates,
    tokens [D]: token-router pairs). choices / (k * tokens) is expert use; gates / tokens is the
    domain's mean routing (the "observed gates" that export can use)."""
    logits = last_router_logits(model, token_mask)
    real = token_mask.to(device=logits[0].device, dtype=torch.bool)
    domain_ids = domain_ids.to(logits[0].device)
    domains, experts = len(config.expert_domains), config.num_experts
    choices = torch.zeros(domains, experts, device=logits[0].device)
    gates = torch.zeros(domains, experts, device=logits[0].device)
    tokens = torch.zeros(domains, device=logits[0].device)
    labelled = real & (domain_ids >= 0)
    labels = domain_ids[labelled]
    for item in logits:
        routed = item[labelled].float()
        chosen = torch.zeros_like(routed).scatter(-1, routed.topk(config.top_k, dim=-1).indices, 1.0)
        choices.index_add_(0, labels, chosen)
        gates.index_add_(0, labels, top_k_gates(routed, config.top_k))
        tokens.index_add_(0, labels, torch.ones_like(labels, dtype=tokens.dtype))
    return choices, gates, tokens


def expert_use_per_domain(
    model: nn.Module, domain_ids: Tensor, token_mask: Tensor, config: MoELoRAConfig
) -> Tensor:
    """[num_domains, num_experts]: share of each domain's top-k choices that went to each expert in the
    last forward (rows sum to 1; a domain absent from the batch is a row of zeros)."""
    choices, _, tokens = routing_counts_per_domain(model, domain_ids, token_mask, config)
    return choices / (config.top_k * tokens.clamp(min=1)).unsqueeze(-1)
