"""The training losses: next-token cross-entropy without full-vocabulary logits, and the router losses
computed once from the stacked logits of one forward ([routers, ..., E], `moe.router.record_routing`).

Nothing here reads a value back to the host: counts stay tensors, so a step never waits on the GPU.
Padding (token_mask False) never counts; the domain loss also skips tokens without a domain label
(domain_ids -1), so packed rows that mix domains work token by token. Every router loss is averaged
over the routers (a router shared by q/k/v counts once: one forward, one set of logits).
"""

from __future__ import annotations

import importlib.util
from functools import partial

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from moe.batch import IGNORE_INDEX
from moe.config import MoELoRAConfig
from moe.router import top_k_gates


# -- language modelling ------------------------------------------------------------------------------
def next_token_targets(labels: Tensor, position_ids: Tensor) -> Tensor:
    """targets[t] = labels[t + 1], except where t + 1 starts another example (position 0: packed
    examples never predict each other's first token) or lies past the end of the row."""
    targets = labels.roll(-1, dims=-1)
    targets[..., -1] = IGNORE_INDEX
    return targets.masked_fill(position_ids.roll(-1, dims=-1) == 0, IGNORE_INDEX)


def _chunk_cross_entropy(head: nn.Module, hidden: Tensor, targets: Tensor) -> Tensor:
    return nn.functional.cross_entropy(
        head(hidden).float(), targets, ignore_index=IGNORE_INDEX, reduction="sum"
    )


def fused_loss(device: torch.device, head: nn.Module) -> type | None:
    """Liger's fused linear cross-entropy (the `gpu` extra) when it can replace the chunks: on CUDA,
    liger-kernel importable, and a plain bias-free nn.Linear head (not an FSDP unit); else None."""
    if device.type != "cuda" or type(head) is not nn.Linear or head.bias is not None:
        return None
    if importlib.util.find_spec("liger_kernel") is None:
        return None
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    return LigerFusedLinearCrossEntropyLoss


def lm_loss_sum(
    hidden: Tensor, head: nn.Module, targets: Tensor, chunk_tokens: int | None
) -> tuple[Tensor, Tensor]:
    """(summed cross-entropy in fp32, number of scored tokens) of `head(hidden)` against `targets`.

    chunk_tokens: the vocabulary logits of at most this many tokens exist at once; each chunk's
    logits are recomputed in backward (activation checkpointing of the head), so a 4 x 2048 x 131k
    micro-batch never holds its ~4 GB of fp32 logits (plus their log-softmax). None: one chunk, the
    plain loss. On CUDA with liger-kernel installed and a plain nn.Linear head (not an FSDP unit),
    Liger's fused linear cross-entropy replaces the chunks (never materialises the logits at all).
    """
    hidden = hidden.flatten(0, -2)
    targets = targets.flatten().to(hidden.device)
    count = (targets != IGNORE_INDEX).sum()
    liger = fused_loss(hidden.device, head)
    if liger is not None:
        weight = head.weight.to(hidden.dtype)
        return liger(ignore_index=IGNORE_INDEX, reduction="sum")(weight, hidden, targets).float(), count
    if chunk_tokens is None or chunk_tokens >= hidden.shape[0]:
        return _chunk_cross_entropy(head, hidden, targets), count
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_tokens):
        piece = slice(start, start + chunk_tokens)
        total = total + checkpoint(
            partial(_chunk_cross_entropy, head), hidden[piece], targets[piece], use_reentrant=False
        )
    return total, count


# -- routing -----------------------------------------------------------------------------------------
def check_router_logits(logits: Tensor, token_mask: Tensor) -> None:
    """Router logits [R, *tokens, E] must be for this batch's tokens and carry their gradient."""
    if logits.shape[1:-1] != token_mask.shape:
        raise ValueError(
            f"router logits are for tokens of shape {tuple(logits.shape[1:-1])} but the batch is "
            f"{tuple(token_mask.shape)}: record the forward of the same batch"
        )
    if torch.is_grad_enabled() and not logits.requires_grad:
        raise RuntimeError(
            "router logits carry no gradient: the forward ran without autograd (under torch.no_grad, or "
            "reentrant activation checkpointing: enable it with {'use_reentrant': False})"
        )


def switch_balance_loss(logits: Tensor, top_k: int, weights: Tensor | None = None) -> Tensor:
    """Switch load balancing E * sum_e f_e * P_e over tokens [..., N, E] (weights [N]: 1 real, 0 padding),
    one value per leading index (per router): f_e is the share of the top-k choices that went to expert
    e, P_e its mean router probability. 1 when perfectly balanced."""
    experts = logits.shape[-1]
    weights = torch.ones(logits.shape[-2], device=logits.device) if weights is None else weights
    total = weights.sum().clamp(min=1)
    probs = logits.softmax(dim=-1)
    chosen = torch.zeros_like(probs).scatter(-1, logits.topk(top_k, dim=-1).indices, 1.0)
    share = (chosen * weights[:, None]).sum(dim=-2) / (total * top_k)
    mean_prob = (probs * weights[:, None]).sum(dim=-2) / total
    return experts * (share * mean_prob).sum(dim=-1)


def router_losses(
    logits: Tensor, domain_ids: Tensor, token_mask: Tensor, config: MoELoRAConfig
) -> dict[str, Tensor]:
    """Unweighted scalar losses `balance`, `z` and `domain` from stacked router logits [R, *tokens, E].

    balance: Switch load balancing over real tokens; z: mean squared logsumexp of the logits (keeps
    them small); domain: cross-entropy of the full router softmax towards the expert of each token's
    domain (`domain_ids` index `config.domains`, whose experts are `config.domain_targets`: expert i for
    domain i unless `domain_experts` maps them), 0 for a batch without labels. Weight them with config.balance_coef, z_coef and domain_coef_at(progress). Masked sums,
    not boolean indexing: static shapes, no host sync; all routers at once.
    """
    check_router_logits(logits, token_mask)
    tokens = logits.flatten(1, -2).float()  # [R, N, E]
    real = token_mask.to(device=tokens.device, dtype=torch.float32).flatten()
    domain_ids = domain_ids.to(tokens.device).flatten()
    labelled = real * (domain_ids >= 0)
    targets = domain_ids.clamp(min=0)
    if config.domain_experts is not None:
        targets = torch.tensor(config.domain_targets, device=tokens.device)[targets]
    z = (torch.logsumexp(tokens, dim=-1).square() * real).sum(dim=-1) / real.sum().clamp(min=1)
    log_probs = tokens.log_softmax(dim=-1)
    cross_entropy = -log_probs.gather(-1, targets.expand(tokens.shape[0], -1).unsqueeze(-1)).squeeze(-1)
    domain = (cross_entropy * labelled).sum(dim=-1) / labelled.sum().clamp(min=1)
    return {
        "balance": switch_balance_loss(tokens, config.top_k, real).mean(),
        "z": z.mean(),
        "domain": domain.mean(),
    }


@torch.no_grad()
def routing_counts_per_domain(
    logits: Tensor, domain_ids: Tensor, token_mask: Tensor, config: MoELoRAConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Sums to accumulate over many batches, all over routers and real labelled tokens, from stacked
    router logits [R, *tokens, E], D = len(config.domains): (choices [D, E]: top-k choices per domain and expert, gates [D, E]:
    summed routing gates, tokens [D]: token-router pairs). choices / (k * tokens) is expert use;
    gates / tokens is the domain's mean routing (the "observed gates" that export can use).
    Computed with one-hot matmuls, not boolean indexing: no host sync."""
    if logits.shape[1:-1] != token_mask.shape:
        raise ValueError(
            f"router logits are for tokens of shape {tuple(logits.shape[1:-1])} but the batch is "
            f"{tuple(token_mask.shape)}: record the forward of the same batch"
        )
    tokens = logits.flatten(1, -2).float()  # [R, N, E]
    routers = tokens.shape[0]
    real = token_mask.to(tokens.device).flatten()
    domain_ids = domain_ids.to(tokens.device).flatten()
    domains = len(config.domains)
    labelled = real & (domain_ids >= 0)
    membership = nn.functional.one_hot(domain_ids.clamp(min=0), domains).float() * labelled[:, None]  # [N, D]
    chosen = torch.zeros_like(tokens).scatter(-1, tokens.topk(config.top_k, dim=-1).indices, 1.0)
    choices = torch.einsum("nd,rne->de", membership, chosen)
    gates = torch.einsum("nd,rne->de", membership, top_k_gates(tokens, config.top_k))
    return choices, gates, membership.sum(dim=0) * routers


def expert_use_per_domain(
    logits: Tensor, domain_ids: Tensor, token_mask: Tensor, config: MoELoRAConfig
) -> Tensor:
    """[num_domains, num_experts]: share of each domain's top-k choices that went to each expert in the
    recorded forward (rows sum to 1; a domain absent from the batch is a row of zeros)."""
    choices, _, tokens = routing_counts_per_domain(logits, domain_ids, token_mask, config)
    return choices / (config.top_k * tokens.clamp(min=1)).unsqueeze(-1)
