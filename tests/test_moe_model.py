import pytest
import torch
from peft import LoraConfig, get_peft_model

from moe.base_model import TINY, load_base_model
from moe.config import MoELoRAConfig
from moe.layer import AdapterGroup, MoELoRALinear
from moe.losses import router_losses
from moe.model import (
    attach_moe_lora,
    detach_moe_lora,
    forced_gates,
    moe_layers,
    moe_routers,
    trainable_parameters,
)
from moe.router import RoutingRecord, record_routing

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def batch(seed: int = 0, rows: int = 2, length: int = 12) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 200, (rows, length), generator=generator)
    token_mask = torch.ones(rows, length, dtype=torch.bool)
    token_mask[1, -3:] = False  # padding at the end of the second row
    domain_ids = torch.randint(0, 4, (rows, length), generator=generator)
    domain_ids[0, :2] = -1
    domain_ids[~token_mask] = -1
    position_ids = torch.arange(length).expand(rows, length)
    return {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "labels": input_ids.masked_fill(~token_mask, -100),
        "token_mask": token_mask,
        "domain_ids": domain_ids,
    }


def forward(model, data):
    return model(
        input_ids=data["input_ids"], position_ids=data["position_ids"], labels=data["labels"], use_cache=False
    )


def recorded(model, data):
    """(output, stacked router logits) of one forward."""
    with record_routing(model) as record:
        out = forward(model, data)
        return out, record.take()


def randomize_b(model, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in moe_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.1)


def test_fresh_adapter_leaves_the_base_output_exactly_unchanged():
    data = batch()
    base = load_base_model(TINY)
    expected = forward(base, data).logits
    model = attach_moe_lora(load_base_model(TINY), MoELoRAConfig())
    assert torch.equal(forward(model, data).logits, expected)


def test_attach_wraps_only_targets_freezes_base_and_detach_restores():
    model = load_base_model(TINY)
    original = {name: type(module) for name, module in model.named_modules()}
    attach_moe_lora(model, MoELoRAConfig(target_modules=["q_proj", "o_proj"]))
    wrapped = moe_layers(model)
    names = [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("o_proj", "q_proj")]
    assert sorted(wrapped) == names
    trainable = trainable_parameters(model)
    parts = ("lora_A", "lora_B", "router.weight")
    assert set(trainable) == {f"{name}.{part}" for name in wrapped for part in parts}
    assert {name for name, p in model.named_parameters() if p.requires_grad} == set(trainable)
    layer = wrapped["model.layers.0.self_attn.q_proj"]
    assert layer.lora_A.shape == (4 * 16, 64) and layer.lora_B.shape == (64, 4 * 16)
    assert layer.router.weight.dtype == torch.float32
    with pytest.raises(ValueError, match="already carries MoE-LoRA layers"):
        attach_moe_lora(model, MoELoRAConfig())
    detach_moe_lora(model)
    assert {name: type(module) for name, module in model.named_modules()} == original
    assert not hasattr(model, "moe_config")


def test_router_gives_exactly_k_nonzero_gates_summing_to_one():
    model = attach_moe_lora(load_base_model(TINY), MoELoRAConfig(top_k=2))
    router = moe_routers(model)["model.layers.1.self_attn.q_proj.router"]
    hidden = torch.randn(3, 7, 64)
    with record_routing(model) as record:
        gates = router(hidden)
        logits = record.take()[0]
    assert gates.shape == (3, 7, 4) and gates.dtype == torch.float32
    assert ((gates > 0).sum(-1) == 2).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(3, 7))
    # The chosen experts are the two most probable ones, in the proportion of their probabilities.
    probs = logits.softmax(-1)
    top = probs.topk(2, dim=-1)
    torch.testing.assert_close(gates.gather(-1, top.indices), top.values / top.values.sum(-1, keepdim=True))


def test_one_expert_top1_equals_a_peft_lora_holding_the_same_weights():
    data = batch()
    config = MoELoRAConfig(
        num_experts=1, top_k=1, r=4, alpha=8, dropout=0.0, target_modules=TARGETS, expert_domains=["only"]
    )
    model = attach_moe_lora(load_base_model(TINY), config)
    randomize_b(model)
    peft = get_peft_model(
        load_base_model(TINY), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=0.0)
    )
    with torch.no_grad():
        for name, layer in moe_layers(model).items():
            peft_layer = peft.base_model.model.get_submodule(name)
            peft_layer.lora_A["default"].weight.copy_(layer.lora_A)
            peft_layer.lora_B["default"].weight.copy_(layer.lora_B)
    torch.testing.assert_close(forward(model, data).logits, forward(peft, data).logits, rtol=0, atol=1e-5)


def test_gradients_reach_only_adapter_and_router_parameters():
    data = batch()
    config = MoELoRAConfig()
    model = attach_moe_lora(load_base_model(TINY), config).train()
    randomize_b(model)
    out, logits = recorded(model, data)
    losses = router_losses(logits, data["domain_ids"], data["token_mask"], config)
    (out.loss + sum(losses.values())).backward()
    trainable = trainable_parameters(model)
    for name, param in model.named_parameters():
        if name in trainable:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
    data = batch()
    config = MoELoRAConfig(dropout=0.1)
    torch.manual_seed(0)
    model = attach_moe_lora(load_base_model(TINY), config).train()
    randomize_b(model)
    if checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    torch.manual_seed(1)  # the same dropout masks in both runs (checkpoint replays the RNG state)
    out, logits = recorded(model, data)
    losses = router_losses(logits, data["domain_ids"], data["token_mask"], config)
    total = (
        out.loss + config.balance_coef * losses["balance"] + config.z_coef * losses["z"] + losses["domain"]
    )
    total.backward()
    return {name: param.grad.clone() for name, param in trainable_parameters(model).items()}


def test_gradients_identical_with_and_without_non_reentrant_checkpointing():
    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=0, atol=0, msg=name)


def test_router_loss_gradients_identical_under_checkpointing():
    def router_grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        data = batch()
        config = MoELoRAConfig()
        torch.manual_seed(0)
        model = attach_moe_lora(load_base_model(TINY), config).train()
        if checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
        router = moe_layers(model)["model.layers.0.self_attn.q_proj"].router
        calls = []
        original = router.route
        router.route = lambda logits: calls.append(1) or original(logits)
        torch.manual_seed(1)
        _, logits = recorded(model, data)
        losses = router_losses(logits, data["domain_ids"], data["token_mask"], config)
        sum(losses.values()).backward()
        # Checkpointing really recomputed the router during backward (once for q/k/v: one fused
        # adapter); the losses read the forward's own logits.
        assert len(calls) == (2 if checkpointing else 1)
        params = trainable_parameters(model).items()
        return {name: p.grad.clone() for name, p in params if name.endswith("router.weight")}

    plain, checkpointed = router_grads(False), router_grads(True)
    for name in plain:
        assert plain[name].abs().sum() > 0
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=0, atol=0, msg=name)


def test_a_recompute_outside_the_record_block_records_nothing():
    data = batch()
    config = MoELoRAConfig()
    model = attach_moe_lora(load_base_model(TINY), config).train()
    model.activation_checkpointing_enable({"use_reentrant": False})
    out, logits = recorded(model, data)
    assert model.moe_routing.logits is None
    (
        out.loss + sum(router_losses(logits, data["domain_ids"], data["token_mask"], config).values())
    ).backward()
    assert model.moe_routing.logits is None  # the backward's recompute kept no graph alive
    with pytest.raises(ValueError, match="inside record_routing"):
        RoutingRecord().take()


def test_reentrant_checkpointing_is_refused_with_a_clear_message():
    data = batch()
    config = MoELoRAConfig()
    model = attach_moe_lora(load_base_model(TINY), config).train()
    model.activation_checkpointing_enable({"use_reentrant": True})
    _, logits = recorded(model, data)
    with pytest.raises(RuntimeError, match="use_reentrant': False"):
        router_losses(logits, data["domain_ids"], data["token_mask"], config)


def test_forced_gates_replace_routing_and_restore_on_exit():
    data = batch()
    model = attach_moe_lora(load_base_model(TINY), MoELoRAConfig(dropout=0.0)).eval()
    randomize_b(model)
    layer: MoELoRALinear = moe_layers(model)["model.layers.0.self_attn.o_proj"]  # its own router
    hidden = torch.randn(5, 64)
    routed = layer(hidden)
    one_hot = torch.tensor([0.0, 0.0, 1.0, 0.0])
    with forced_gates(model, one_hot):
        forced = layer(hidden)
        assert torch.equal(layer.router(hidden), one_hot.expand(5, 4))
        logits = forward(model, data).logits
    expert = slice(2 * 16, 3 * 16)
    by_hand = layer.base(hidden) + 2.0 * hidden @ layer.lora_A[expert].T @ layer.lora_B[:, expert].T
    torch.testing.assert_close(forced, by_hand)
    torch.testing.assert_close(layer(hidden), routed, rtol=0, atol=0)
    assert not torch.allclose(forward(model, data).logits, logits)
    with pytest.raises(ValueError, match=r"gates must have shape \(4,\)"), forced_gates(model, torch.ones(3)):
        pass


def test_bf16_base_keeps_fp32_adapters_and_bf16_output():
    model = attach_moe_lora(load_base_model(TINY, dtype=torch.bfloat16), MoELoRAConfig())
    layer = moe_layers(model)["model.layers.0.self_attn.o_proj"]
    assert layer.lora_A.dtype == layer.lora_B.dtype == torch.float32
    with record_routing(model) as record:
        out = layer(torch.randn(2, 3, 64, dtype=torch.bfloat16))
        assert out.dtype == torch.bfloat16 and record.take().dtype == torch.float32
    assert layer.base.weight.dtype == torch.bfloat16
    # The whole model runs with a bf16 base and fp32 adapters, no autocast (no dtype mismatch).
    _, logits = recorded(model, batch())
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


class PackedLinear(torch.nn.Linear):
    """Stands in for bitsandbytes Linear4bit: an nn.Linear subclass whose stored weight is packed, so
    its shape is not the layer's (in, out)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)
        self.weight = torch.nn.Parameter(self.weight.detach().flatten().unsqueeze(-1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.weight.view(self.out_features, self.in_features))


def test_linear_subclasses_with_packed_weights_are_wrapped_by_their_features():
    block = torch.nn.Module()
    block.q_proj = PackedLinear(32, 24)
    x = torch.randn(3, 32)
    expected = block.q_proj(x)
    attach_moe_lora(block, MoELoRAConfig(target_modules=["q_proj"], r=4))
    layer = block.q_proj
    assert layer.lora_A.shape == (16, 32) and layer.lora_B.shape == (24, 16)
    assert torch.equal(block.q_proj(x), expected)


def single(base: torch.nn.Linear, config: MoELoRAConfig) -> MoELoRALinear:
    layer = MoELoRALinear(base, config)
    AdapterGroup([layer], config, RoutingRecord(), parent=None)
    return layer


def test_under_bf16_autocast_the_adapter_matmuls_run_in_bf16_with_fp32_master_weights():
    torch.manual_seed(0)
    base = torch.nn.Linear(32, 24, bias=False).requires_grad_(False)
    layer = single(base, MoELoRAConfig(dropout=0.0, r=4))
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(6, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    bf16 = torch.bfloat16
    # One bf16 matmul gives the A projection and the router logits; routing itself runs in fp32.
    fused = x.to(bf16) @ torch.cat([layer.lora_A, layer.router.weight]).to(bf16).T
    gates = layer.router.route(fused[:, -4:].float()) * layer.scaling
    hidden = fused[:, :-4].unflatten(-1, (4, 4)) * gates.to(bf16).unsqueeze(-1)
    expected = x.to(bf16) @ layer.base.weight.to(bf16).T + hidden.flatten(-2) @ layer.lora_B.to(bf16).T
    assert out.dtype == bf16 and layer.lora_A.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_q_k_v_are_one_fused_adapter_with_one_router_and_o_proj_has_its_own():
    data = batch()
    model = attach_moe_lora(load_base_model(TINY), MoELoRAConfig()).train()
    layers = moe_layers(model)
    attn = "model.layers.0.self_attn"
    q, k, v, o = (layers[f"{attn}.{p}_proj"] for p in "qkvo")
    assert q.group is k.group is v.group and o.group is not q.group
    assert not hasattr(k, "router") and not hasattr(v, "router") and o.router is not q.router
    owners = [f"model.layers.{i}.self_attn.{p}_proj.router" for i in (0, 1) for p in "qo"]
    assert list(moe_routers(model)) == owners
    keys = [name for name in trainable_parameters(model) if name.startswith(attn)]
    assert [name for name in keys if name.endswith("router.weight")] == [
        f"{attn}.q_proj.router.weight",
        f"{attn}.o_proj.router.weight",
    ]
    matmuls = []
    original = q.group.updates
    q.group.updates = lambda x, training: matmuls.append(x) or original(x, training)
    forward(model, data).loss.backward()
    forward(model, data)
    assert len(matmuls) == 2  # one fused computation per forward of the attention block
    assert q.group.pending == [None, None, None]  # every member took its update: nothing kept
    # A member of a shared group called on its own is refused with the reason.
    with pytest.raises(RuntimeError, match="outside its parent's forward"):
        k(torch.randn(3, 64))


def test_fused_adapter_computes_what_separate_routers_with_equal_weights_compute():
    data = batch()
    torch.manual_seed(0)
    shared = attach_moe_lora(load_base_model(TINY), MoELoRAConfig(dropout=0.0))
    separate = attach_moe_lora(load_base_model(TINY), MoELoRAConfig(dropout=0.0, shared_router_groups=[]))
    randomize_b(shared)
    assert len(moe_routers(separate)) == 8 and len(moe_routers(shared)) == 4
    with torch.no_grad():
        for name, layer in moe_layers(separate).items():
            source = moe_layers(shared)[name]
            layer.lora_A.copy_(source.lora_A)
            layer.lora_B.copy_(source.lora_B)
            layer.router.weight.copy_(source.group.router.weight)
    torch.testing.assert_close(
        forward(separate, data).logits, forward(shared, data).logits, rtol=1e-6, atol=1e-6
    )


def test_linears_of_different_input_sizes_cannot_share_a_router():
    block = torch.nn.Module()
    block.q_proj, block.o_proj = torch.nn.Linear(32, 16), torch.nn.Linear(16, 32)
    config = MoELoRAConfig(
        target_modules=["q_proj", "o_proj"], shared_router_groups=[["q_proj", "o_proj"]], r=4
    )
    with pytest.raises(ValueError, match="must read inputs of one size"):
        attach_moe_lora(block, config)


def test_under_inference_mode_gives_the_no_grad_output():
    data = batch()
    model = attach_moe_lora(load_base_model(TINY), MoELoRAConfig()).eval()
    randomize_b(model)
    with torch.no_grad():
        expected = forward(model, data).logits
    with torch.inference_mode():
        assert torch.equal(forward(model, data).logits, expected)


def test_compiled_tiny_model_has_no_graph_break_inside_moe():
    """torch._dynamo.explain over a training forward + the router record: every break it reports is
    named with its source location, and none lies in moe/."""
    import torch._dynamo

    data = batch()
    model = attach_moe_lora(load_base_model(TINY), MoELoRAConfig()).train()

    def step(input_ids, position_ids):
        return model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits

    torch._dynamo.reset()
    with record_routing(model) as record:
        explanation = torch._dynamo.explain(step)(data["input_ids"], data["position_ids"])
        assert len(record.take()) == 4  # the compiled forward still recorded every router
    in_moe = [str(reason) for reason in explanation.break_reasons if "/moe/" in str(reason)]
    assert in_moe == [], in_moe
    assert explanation.graph_break_count == 0, [str(r) for r in explanation.break_reasons]
