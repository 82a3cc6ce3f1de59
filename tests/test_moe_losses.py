import math

import pytest
import torch

from moe.base_model import TINY, load_base_model
from moe.config import MoELoRAConfig
from moe.losses import (
    IGNORE_INDEX,
    expert_use_per_domain,
    lm_loss_sum,
    next_token_targets,
    router_losses,
    routing_counts_per_domain,
    switch_balance_loss,
)
from moe.model import attach_moe_lora, trainable_parameters
from moe.router import record_routing


def test_balance_loss_equals_the_switch_formula_on_a_hand_computed_case():
    # Token 1 picks experts {0, 1}, token 2 picks {1, 2}: f = [1, 2, 1, 0] / 4, P = [.25, .4, .25, .1],
    # E * sum f * P = 4 * (.0625 + .2 + .0625) = 1.3.
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.1, 0.5, 0.3, 0.1]])
    assert switch_balance_loss(probs.log(), top_k=2).item() == pytest.approx(1.3)
    # Top-1, two experts: f = [2/3, 1/3], P = [1.75/3, 1.25/3] -> 2 * (3.5 + 1.25) / 9.
    top1 = torch.tensor([[math.log(3), 0.0], [math.log(3), 0.0], [0.0, math.log(3)]])
    assert switch_balance_loss(top1, top_k=1).item() == pytest.approx(9.5 / 9)
    # Perfectly balanced routing gives 1.
    assert switch_balance_loss(torch.zeros(8, 4), top_k=2).item() == pytest.approx(1.0)


def packed_batch(seed: int, rows: int = 4, segments: int = 4, segment: int = 6):
    """Packed rows mixing domains segment by segment (every domain present); domain d draws its tokens
    from its own id range."""
    generator = torch.Generator().manual_seed(seed)
    layout = torch.stack([torch.randperm(segments, generator=generator) % 4 for _ in range(rows)])
    domains = layout.repeat_interleave(segment, dim=1)
    offsets = torch.randint(0, 8, domains.shape, generator=generator)
    input_ids = 10 + 50 * domains + offsets
    position_ids = torch.arange(segment).repeat(segments).expand(rows, -1)
    return input_ids, position_ids, domains


def run(model, input_ids, position_ids):
    """The stacked router logits [routers, B, T, E] of one forward."""
    with record_routing(model) as record:
        model(input_ids=input_ids, position_ids=position_ids, use_cache=False)
        return record.take()


def test_losses_ignore_padding_and_unlabelled_tokens():
    config = MoELoRAConfig()
    model = attach_moe_lora(load_base_model(TINY), config).train()
    input_ids, position_ids, domains = packed_batch(0)
    token_mask = torch.ones_like(input_ids, dtype=torch.bool)
    token_mask[:, -5:] = False
    domains[:, -5:] = -1
    domains[0, :3] = -1
    logits = run(model, input_ids, position_ids)
    losses = router_losses(logits, domains, token_mask, config)
    # Other tokens in the padding (causal attention: the real tokens do not see them) change nothing.
    again = router_losses(
        run(model, input_ids.masked_fill(~token_mask, 7), position_ids), domains, token_mask, config
    )
    assert all(torch.equal(value, again[key]) for key, value in losses.items())
    # The domain loss is the router cross-entropy over labelled real tokens only, averaged over routers
    # (one shared by q/k/v and one for o_proj in each of the two decoder layers).
    assert len(logits) == 4
    labelled = domains >= 0
    by_hand = torch.stack(
        [torch.nn.functional.cross_entropy(router[labelled], domains[labelled]) for router in logits]
    ).mean()
    torch.testing.assert_close(losses["domain"], by_hand)
    z_by_hand = torch.stack([router[token_mask].logsumexp(-1).square().mean() for router in logits]).mean()
    torch.testing.assert_close(losses["z"], z_by_hand)
    balance_by_hand = torch.stack(
        [switch_balance_loss(router.flatten(0, 1), 2, token_mask.flatten().float()) for router in logits]
    ).mean()
    torch.testing.assert_close(losses["balance"], balance_by_hand)
    # Counting the padding would change them.
    unmasked = router_losses(logits, domains, torch.ones_like(token_mask), config)
    assert not torch.equal(unmasked["balance"], losses["balance"])


def test_a_batch_without_labels_gives_a_zero_domain_loss_and_a_wrong_shape_is_refused():
    config = MoELoRAConfig()
    model = attach_moe_lora(load_base_model(TINY), config).train()
    input_ids, position_ids, domains = packed_batch(1)
    logits = run(model, input_ids, position_ids)
    mask = torch.ones_like(input_ids, dtype=torch.bool)
    assert router_losses(logits, torch.full_like(domains, -1), mask, config)["domain"].item() == 0.0
    padding_only = router_losses(logits, domains, torch.zeros_like(mask), config)
    assert all(value.item() == 0.0 for value in padding_only.values())
    message = r"router logits are for tokens of shape \(4, 24\) but the batch is \(4, 23\)"
    with pytest.raises(ValueError, match=message):
        router_losses(logits, domains[:, 1:], mask[:, 1:], config)


def test_training_only_the_router_on_labelled_tokens_routes_each_domain_to_its_expert():
    torch.manual_seed(0)
    config = MoELoRAConfig()
    model = attach_moe_lora(load_base_model(TINY), config).train()
    routers = [param for name, param in trainable_parameters(model).items() if name.endswith("router.weight")]
    optimizer = torch.optim.Adam(routers, lr=0.05)
    held_out = packed_batch(999)
    mask = torch.ones_like(held_out[0], dtype=torch.bool)

    def domain_loss() -> float:
        with torch.no_grad():
            return router_losses(run(model, *held_out[:2]), held_out[2], mask, config)["domain"].item()

    before = domain_loss()
    for step in range(40):
        input_ids, position_ids, domains = packed_batch(step)
        logits = run(model, input_ids, position_ids)
        loss = router_losses(logits, domains, torch.ones_like(domains, dtype=torch.bool), config)["domain"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = domain_loss()
    assert after < 0.1 * before, (before, after)

    with torch.no_grad():
        logits = run(model, *held_out[:2])
    use = expert_use_per_domain(logits, held_out[2], mask, config)
    assert use.shape == (4, 4)
    torch.testing.assert_close(use.sum(-1), torch.ones(4))
    # Top-2: the domain's own expert is in nearly every token's pair of choices (at most half the choices).
    assert (use.diagonal() > 0.45).all(), use
    _, gates, tokens = routing_counts_per_domain(logits, held_out[2], mask, config)
    observed = gates / tokens.unsqueeze(-1)
    assert torch.equal(observed.argmax(-1), torch.arange(4)), observed
    assert (observed.diagonal() > 0.6).all(), observed


def test_chunked_cross_entropy_equals_the_plain_loss_and_its_gradients():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(2, 13, 16, requires_grad=True)
    targets = torch.randint(0, 50, (2, 13))
    targets[0, :4] = IGNORE_INDEX

    def run(chunk):
        hidden.grad, head.weight.grad = None, None
        total, count = lm_loss_sum(hidden, head, targets, chunk)
        total.backward()
        return total.detach(), count, hidden.grad.clone(), head.weight.grad.clone()

    plain = torch.nn.functional.cross_entropy(
        head(hidden).flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    whole = run(None)
    torch.testing.assert_close(whole[0], plain.detach())
    assert whole[1] == 22
    for chunk in (5, 8):  # chunks that do not divide the 26 tokens evenly
        chunked = run(chunk)
        assert chunked[1] == whole[1]
        for index in (0, 2, 3):  # the loss, the gradients of the hidden states and of the head
            torch.testing.assert_close(chunked[index], whole[index], rtol=1e-5, atol=1e-6)


def test_packed_examples_never_predict_each_others_first_token():
    labels = torch.tensor([[10, 11, 12, 20, 21, IGNORE_INDEX]])
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0]])
    assert next_token_targets(labels, position_ids).tolist() == [
        [11, 12, IGNORE_INDEX, 21, IGNORE_INDEX, IGNORE_INDEX]
    ]


def test_liger_replaces_the_chunks_only_on_cuda_with_a_plain_head_and_the_cpu_path_is_chunked(monkeypatch):
    import importlib.util
    import sys
    import types

    from moe import losses

    head = torch.nn.Linear(8, 32, bias=False)
    # Without liger-kernel (this machine) and on the CPU: the chunked loss.
    assert losses.fused_loss(torch.device("cpu"), head) is None
    fused = type("LigerFusedLinearCrossEntropyLoss", (), {})
    package = types.ModuleType("liger_kernel")
    submodule = types.ModuleType("liger_kernel.transformers")
    submodule.LigerFusedLinearCrossEntropyLoss = fused
    monkeypatch.setitem(sys.modules, "liger_kernel", package)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", submodule)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "liger_kernel" else real_find_spec(name, *a))
    assert losses.fused_loss(torch.device("cuda"), head) is fused
    assert losses.fused_loss(torch.device("cpu"), head) is None
    assert losses.fused_loss(torch.device("cuda"), torch.nn.Linear(8, 32)) is None  # a bias: chunks
    # The CPU path with liger importable is still the chunked loss (Liger's class is never built).
    hidden, targets = torch.randn(10, 8), torch.randint(0, 32, (10,))
    total, count = losses.lm_loss_sum(hidden, head, targets, chunk_tokens=4)
    plain = torch.nn.functional.cross_entropy(head(hidden), targets, reduction="sum")
    assert count == 10 and torch.allclose(total, plain, atol=1e-5)


def test_domain_experts_pull_each_domain_towards_its_mapped_expert_and_one_expert_has_no_domain_loss():
    """Four data domains on two experts: the domain loss is the router cross-entropy towards each token's
    mapped expert, and expert use is counted per data domain; with one expert nothing is left to route."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 10, 2, generator=generator, requires_grad=True)  # [routers, B, T, E]
    domains = torch.randint(0, 4, (2, 10), generator=generator)
    domains[0, :2] = -1
    mask = torch.ones(2, 10, dtype=torch.bool)
    config = MoELoRAConfig(num_experts=2, top_k=1, expert_domains=["talk", "think"],
                           domain_experts={"a": "talk", "b": "think", "c": "think", "d": "talk"})
    losses = router_losses(logits, domains, mask, config)
    target = torch.tensor([0, 1, 1, 0])[domains.clamp(min=0)]
    labelled = domains >= 0
    by_hand = torch.stack(
        [torch.nn.functional.cross_entropy(router[labelled], target[labelled]) for router in logits]
    ).mean()
    torch.testing.assert_close(losses["domain"], by_hand)
    choices, _, tokens = routing_counts_per_domain(logits, domains, mask, config)
    assert choices.shape == (4, 2)
    torch.testing.assert_close(tokens, torch.stack([(domains == d).sum() * 3 for d in range(4)]).float())
    one = MoELoRAConfig().plain_lora()
    single = router_losses(logits[..., :1], domains, mask, one)
    assert single["domain"].item() == 0.0 and single["balance"].item() == pytest.approx(1.0)
    assert routing_counts_per_domain(logits[..., :1], domains, mask, one)[0].shape == (4, 1)
