import json

import pytest
import torch
from mixtures import perturbed_mixture

from moe.adapter_io import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    adapter_moe_config,
    check_adapter_compatible,
    load_adapter,
    read_adapter_config,
    save_adapter,
)
from moe.base_model import TINY, load_base_model
from moe.config import MoELoRAConfig
from moe.model import attach_moe_lora, trainable_parameters


def logits(model):
    ids = torch.arange(5, 25).unsqueeze(0)
    return model(input_ids=ids, use_cache=False).logits


def test_save_load_round_trip_is_exact_and_keeps_extras(tmp_path):
    config = MoELoRAConfig(top_k=1)
    source = perturbed_mixture(TINY, config, scale=0.1, seed=0)
    gates = {"psychology": [0.7, 0.1, 0.1, 0.1]}
    save_adapter(source, tmp_path, config, base_model=TINY, extra={"observed_gates": gates, "stage": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])

    document = read_adapter_config(tmp_path)
    assert document["base_model"] == TINY and document["observed_gates"] == gates and document["stage"] == 1
    assert adapter_moe_config(tmp_path) == config

    target = perturbed_mixture(TINY, config, scale=0.1, seed=1)
    assert not torch.equal(logits(target), logits(source))
    assert load_adapter(target, tmp_path)["moe"] == config.to_dict()
    for name, param in trainable_parameters(source).items():
        assert torch.equal(trainable_parameters(target)[name], param), name
    assert torch.equal(logits(target), logits(source))


def test_load_names_missing_unexpected_and_misshaped_keys(tmp_path):
    config = MoELoRAConfig(target_modules=["q_proj", "v_proj"])
    save_adapter(perturbed_mixture(TINY, config, scale=0.1), tmp_path, config, base_model=TINY)

    other = attach_moe_lora(load_base_model(TINY), MoELoRAConfig(target_modules=["q_proj", "o_proj"], r=8))
    with pytest.raises(ValueError) as error:
        load_adapter(other, tmp_path)
    text = str(error.value)
    assert f"{tmp_path / WEIGHTS_NAME} does not fit this model (adapter: 4 experts, r 16" in text
    o_proj = "model.layers.0.self_attn.o_proj"
    assert f"6 missing key(s): {o_proj}.lora_A, {o_proj}.lora_B" in text
    # q_proj and v_proj share one router (the adapter's q_proj.router.weight): v_proj has none of its own.
    assert "4 unexpected key(s): model.layers.0.self_attn.v_proj.lora_A" in text
    assert "model.layers.0.self_attn.q_proj.lora_A (file (64, 64), model (32, 64))" in text

    top1 = attach_moe_lora(load_base_model(TINY), MoELoRAConfig(target_modules=["q_proj", "v_proj"], top_k=1))
    with pytest.raises(ValueError, match=r"differing config.*top_k \(file 2, model 1\)"):
        load_adapter(top1, tmp_path)


def test_config_is_readable_without_a_model_and_incompatible_adapters_are_refused(tmp_path):
    config = MoELoRAConfig()
    save_adapter(perturbed_mixture(TINY, config, scale=0.1), tmp_path, config, base_model="some/base")
    check_adapter_compatible(tmp_path, config, "some/base")
    with pytest.raises(ValueError, match=r"built for another model: base_model 'some/base' != 'other/base'"):
        check_adapter_compatible(tmp_path, config, "other/base")
    three = MoELoRAConfig(num_experts=3, expert_domains=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"num_experts 4 != 3; .*expert_domains"):
        check_adapter_compatible(tmp_path, three, "some/base")
    unshared = MoELoRAConfig(shared_router_groups=[])  # one router per linear: other adapter keys
    shared = r"shared_router_groups \[\['q_proj', 'k_proj', 'v_proj'\]\] != \[\]"
    with pytest.raises(ValueError, match=shared):
        check_adapter_compatible(tmp_path, unshared, "some/base")
    with pytest.raises(FileNotFoundError, match="no adapter config"):
        read_adapter_config(tmp_path / "nowhere")
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ValueError, match="format None version None, expected 'moe-lora' version 2"):
        read_adapter_config(tmp_path)


def test_reserved_extra_keys_and_models_without_adapters_are_refused(tmp_path):
    config = MoELoRAConfig()
    model = perturbed_mixture(TINY, config, scale=0.1)
    with pytest.raises(ValueError, match=r"extra keys \['moe'\] are reserved"):
        save_adapter(model, tmp_path, config, base_model=TINY, extra={"moe": {}})
    with pytest.raises(ValueError, match="carries no MoE-LoRA layers"):
        save_adapter(load_base_model(TINY), tmp_path, config, base_model=TINY)
