import torch

from moe.base_model import TINY, load_base_model, load_tokenizer


def test_tiny_model_is_deterministic_frozen_and_mistral():
    first, second = load_base_model(TINY), load_base_model(TINY)
    assert type(first).__name__ == "MistralForCausalLM"
    assert not any(p.requires_grad for p in first.parameters())
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_tiny_tokenizer_speaks_chatml_and_round_trips_any_text():
    tokenizer = load_tokenizer(TINY)
    messages = [
        {"role": "user", "content": "I feel sad 我很难过"},
        {"role": "assistant", "content": "I hear you."},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>user\nI feel sad 我很难过<|im_end|>\n<|im_start|>assistant\nI hear you.<|im_end|>\n"
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id
    assert ids.count(tokenizer.eos_token_id) == 2


def test_wayfarer2_config_has_the_real_projection_shapes():
    from moe.base_model import wayfarer2_config

    config = wayfarer2_config()
    hidden, heads = config.hidden_size, config.num_attention_heads * config.head_dim
    kv = config.num_key_value_heads * config.head_dim
    assert (hidden, heads, kv, config.num_hidden_layers, config.vocab_size) == (5120, 4096, 1024, 40, 131074)
