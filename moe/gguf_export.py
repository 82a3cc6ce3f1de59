"""Write a merged Llama or Mistral model as one GGUF file for llama.cpp and Ollama.

Uses the `gguf` package (llama.cpp's own Python writer and tensor-name map) rather than llama.cpp's
`convert_hf_to_gguf.py`: that script ships only in the llama-cpp-python sdist, which builds from source
for 10-20 minutes, while `gguf` is a pure-Python wheel the project already needs. What the script
does for these two architectures is written here as llama.cpp defines it: architecture `llama`
(llama.cpp serves Mistral models as `llama`), q/k rows permuted to llama.cpp's rotary layout, norms kept
in F32, the byte-level BPE vocabulary with its merges, token types, special ids and chat template.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gguf
import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
# --gguf-type name: (tensor type of 2-D weights, file type recorded in the header)
GGUF_TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
# llama.cpp's names for pre-tokenizer regexes it knows, keyed by the split regex in tokenizer.json.
_TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = {_TEKKEN: "tekken", _LLAMA3: "llama-bpe"}


def check_supported(model: PreTrainedModel) -> None:
    """Refuse what this writer would get wrong, before any file is written."""
    config = model.config
    architecture = (config.architectures or [type(model).__name__])[0]
    problems = []
    if architecture not in ARCHITECTURES and type(model).__name__ not in ARCHITECTURES:
        problems.append(f"architecture {architecture} (supported: {', '.join(ARCHITECTURES)})")
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        problems.append(f"rope scaling {rope.get('rope_type')!r}")
    if getattr(config, "sliding_window", None):
        problems.append(f"sliding window {config.sliding_window}")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        problems.append("bias terms in attention or MLP")
    if problems:
        raise ValueError("--format gguf cannot write this model: " + "; ".join(problems))


def _permute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """HF's rotate-half q/k rows into llama.cpp's interleaved rotary layout (its converter's `permute`)."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _tensor_data(tensor: torch.Tensor, qtype: gguf.GGMLQuantizationType) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """The array to store and its type: 1-D tensors and rows that do not fit a Q8_0 block stay float."""
    data = tensor.detach().to(torch.float32).cpu().numpy()
    if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
        return data, gguf.GGMLQuantizationType.F32
    if qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16), qtype
    if qtype == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16
    return gguf.quants.quantize(data, qtype), qtype


def _pre_tokenizer(tokenizer_json: dict, default: str) -> str:
    steps = tokenizer_json.get("pre_tokenizer") or {}
    for step in steps.get("pretokenizers", [steps]):
        regex = (step.get("pattern") or {}).get("Regex") if step.get("type") == "Split" else None
        if regex in PRE_TOKENIZERS:
            return PRE_TOKENIZERS[regex]
    return default


def _add_vocabulary(writer: gguf.GGUFWriter, tokenizer: PreTrainedTokenizerBase, vocab_size: int, pre: str) -> None:
    document = json.loads(tokenizer.backend_tokenizer.to_str())
    if document["model"]["type"] != "BPE":
        raise ValueError(f"--format gguf writes byte-level BPE vocabularies; this tokenizer is {document['model']['type']}")
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = {entry["id"]: entry for entry in document.get("added_tokens", [])}
    tokens, types = [], []
    for index in range(vocab_size):  # rows past the tokenizer's vocabulary are padding, as llama.cpp writes them
        token = by_id.get(index, f"[PAD{index}]")
        tokens.append(token)
        if index not in by_id:
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            types.append(gguf.TokenType.CONTROL if added[index]["special"] else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in document["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(document, pre))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id,
           "pad": tokenizer.pad_token_id}
    for name, value in ids.items():
        if value is not None:
            getattr(writer, f"add_{name}_token_id")(value)
    encoded = tokenizer("a")["input_ids"]
    writer.add_add_bos_token(tokenizer.bos_token_id is not None and encoded[0] == tokenizer.bos_token_id)
    writer.add_add_space_prefix(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def write_gguf(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    path: str | Path,
    gguf_type: str,
    name: str,
    pre_tokenizer: str = "default",
) -> Path:
    """Write `model` with its tokenizer to `path` as GGUF of `gguf_type` (a GGUF_TYPES key); returns it.

    `pre_tokenizer` is llama.cpp's name for the split regex when tokenizer.json does not spell a known one.
    """
    if gguf_type not in GGUF_TYPES:
        raise ValueError(f"--gguf-type {gguf_type!r}: choose one of {sorted(GGUF_TYPES)}")
    check_supported(model)
    qtype, file_type = GGUF_TYPES[gguf_type]
    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    arch = gguf.MODEL_ARCH.LLAMA
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(name)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_vocab_size(config.vocab_size)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    _add_vocabulary(writer, tokenizer, config.vocab_size, pre_tokenizer)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for key, tensor in model.state_dict().items():
        if tied and key == "lm_head.weight":
            continue  # llama.cpp reads a missing output.weight as tied to token_embd
        target = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ValueError(f"--format gguf: no GGUF name for tensor {key}")
        if key.endswith("q_proj.weight"):
            tensor = _permute(tensor, heads)
        elif key.endswith("k_proj.weight"):
            tensor = _permute(tensor, kv_heads)
        data, stored = _tensor_data(tensor, qtype)
        writer.add_tensor(target, data, raw_dtype=stored)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def modelfile(gguf_name: str, system_prompt: str | None = None) -> str:
    """An Ollama Modelfile for a ChatML model: the template llama.cpp's chat format uses, <|im_end|> as stop."""
    lines = [f"FROM ./{gguf_name}", 'TEMPLATE """{{- if .System }}<|im_start|>system', "{{ .System }}<|im_end|>",
             "{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}", "{{ .Content }}<|im_end|>",
             '{{ end }}<|im_start|>assistant', '"""', 'PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|im_start|>"']
    if system_prompt:
        lines.append(f'SYSTEM """{system_prompt}"""')
    return "\n".join(lines) + "\n"
