import math

import pytest

from moe.base_model import TINY, load_base_model
from moe.config import MoELoRAConfig
from moe.model import attach_moe_lora


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"top_k": 5}, r"MoELoRAConfig.top_k=5: must be between 1 and num_experts=4"),
        ({"top_k": 0}, r"MoELoRAConfig.top_k=0"),
        ({"target_modules": []}, r"MoELoRAConfig.target_modules=\[\]: name at least one linear layer"),
        ({"target_modules": ["q_proj", "q_proj"]}, r"target_modules.*lists a module twice"),
        (
            {"expert_domains": ["psychology", "psychology", "bias_detection", "general_therapeutic"]},
            r"MoELoRAConfig.expert_domains=.*duplicate domain\(s\) \['psychology'\]",
        ),
        ({"num_experts": 3}, r"MoELoRAConfig.expert_domains=.*has 4 names but num_experts=3"),
        ({"r": 0}, r"MoELoRAConfig.r=0"),
        ({"alpha": 0}, r"MoELoRAConfig.alpha=0"),
        ({"dropout": 1.0}, r"MoELoRAConfig.dropout=1.0: must be in \[0, 1\)"),
        ({"balance_coef": -1.0}, r"MoELoRAConfig.balance_coef=-1.0"),
        ({"domain_anneal": "step"}, r"MoELoRAConfig.domain_anneal='step'"),
        ({"adapter_dtype": "float16"}, r"MoELoRAConfig.adapter_dtype='float16'"),
        ({"shared_router_groups": ["q_proj", "k_proj"]}, r"shared_router_groups=.*a list of groups"),
        ({"shared_router_groups": [["q_proj"]]}, r"group \['q_proj'\] must name at least two different"),
        ({"shared_router_groups": [["q_proj", "q_proj"]]}, r"must name at least two different modules"),
        (
            {"shared_router_groups": [["q_proj", "k_proj"], ["k_proj", "v_proj"]]},
            r"shared_router_groups=.*\['k_proj'\] in more than one group",
        ),
        ({"domain_experts": {}}, r"MoELoRAConfig.domain_experts=\{\}: map each data domain to an expert name"),
        (
            {"domain_experts": {"psychology": "psychology", "grief": "grief_expert"}},
            r"MoELoRAConfig.domain_experts=.*names no expert \['grief_expert'\]",
        ),
    ],
)
def test_invalid_config_names_the_field(values, message):
    with pytest.raises(ValueError, match=message):
        MoELoRAConfig(**values)


def test_unknown_target_module_names_what_the_model_has():
    model = load_base_model(TINY)
    with pytest.raises(ValueError) as error:
        attach_moe_lora(model, MoELoRAConfig(target_modules=["q_proj", "query"]))
    text = str(error.value)
    assert "MoELoRAConfig.target_modules: ['query']" in text
    assert "MistralForCausalLM" in text
    assert "['down_proj', 'gate_proj', 'k_proj', 'lm_head', 'o_proj', 'q_proj', 'up_proj', 'v_proj']" in text


def test_defaults_match_the_design_and_round_trip_through_a_dict():
    config = MoELoRAConfig()
    assert (config.num_experts, config.top_k, config.r, config.alpha, config.dropout) == (4, 2, 16, 32.0, 0.1)
    assert config.scaling == 2.0
    assert config.shared_router_groups == [["q_proj", "k_proj", "v_proj"]]
    assert config.router_group("k_proj") == ["q_proj", "k_proj", "v_proj"]
    assert config.router_group("o_proj") == ["o_proj"]
    assert MoELoRAConfig(target_modules=["v_proj", "q_proj"]).router_group("q_proj") == ["q_proj", "v_proj"]
    assert MoELoRAConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown MoELoRAConfig field\(s\) \['experts'\]"):
        MoELoRAConfig.from_dict({**config.to_dict(), "experts": 4})


def test_domain_coefficient_schedules():
    constant = MoELoRAConfig(domain_coef=0.2)
    linear = MoELoRAConfig(domain_coef=0.2, domain_anneal="linear")
    cosine = MoELoRAConfig(domain_coef=0.2, domain_anneal="cosine")
    assert [constant.domain_coef_at(p) for p in (0.0, 0.5, 1.0)] == [0.2, 0.2, 0.2]
    assert [linear.domain_coef_at(p) for p in (0.0, 0.25, 1.0, 1.5)] == pytest.approx([0.2, 0.15, 0.0, 0.0])
    assert cosine.domain_coef_at(0.0) == pytest.approx(0.2)
    assert cosine.domain_coef_at(0.5) == pytest.approx(0.1)
    assert cosine.domain_coef_at(1.0) == pytest.approx(0.0, abs=1e-12)
    assert cosine.domain_coef_at(0.25) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))


def test_plain_lora_is_one_expert_of_the_mixtures_budget_with_every_domain_on_it_and_no_router_losses():
    mixture = MoELoRAConfig(num_experts=3, top_k=2, r=8, alpha=24, expert_domains=["a", "b", "c"], dropout=0.05)
    plain = mixture.plain_lora()
    assert (plain.num_experts, plain.top_k, plain.r, plain.dropout) == (1, 1, 24, 0.05)
    assert plain.scaling == mixture.scaling  # alpha / r kept: 72 / 24 == 24 / 8
    assert plain.domains == ["a", "b", "c"] and plain.domain_targets == [0, 0, 0]
    assert (plain.balance_coef, plain.z_coef, plain.domain_coef) == (0.0, 0.0, 0.0)
    assert plain.plain_lora() is plain
    assert MoELoRAConfig.from_dict(plain.to_dict()) == plain  # what adapter_config.json stores reads back
    # The same trainable adapter weights on the same modules; only the router shrinks to one logit.
    shapes = [
        {n: p.shape for n, p in attach_moe_lora(load_base_model(TINY), c).named_parameters()
         if p.requires_grad and "router" not in n}
        for c in (mixture, plain)
    ]
    assert shapes[0] == shapes[1] and shapes[0]


def test_domain_experts_separates_the_data_domains_from_the_expert_names():
    config = MoELoRAConfig(num_experts=2, expert_domains=["talk", "think"],
                           domain_experts={"grief": "talk", "anxiety": "talk", "cbt": "think"})
    assert config.domains == ["grief", "anxiety", "cbt"] and config.domain_targets == [0, 0, 1]
    plain = MoELoRAConfig()
    assert plain.domains == plain.expert_domains and plain.domain_targets == [0, 1, 2, 3]
