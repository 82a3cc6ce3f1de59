"""Rebuild the tiny model's tokenizer shipped beside this file.

The tiny model stands in for Wayfarer-2-12B in the demo and the tests, so its tokenizer must
behave like the real one where our code cares: byte-level BPE (any text, Chinese included,
round-trips), ChatML special tokens as single ids, `<|im_end|>` as end of turn, and a chat
template in the tokenizer config. It is trained on Python's own docstrings (always present,
no download) plus a few counselling phrases, so English text gets reasonably short ids.

Run `python -m moe.tiny.build_tokenizer` only to change it; the output is committed.
"""

from __future__ import annotations

import json
import pydoc
import pkgutil
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = Path(__file__).parent
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 2048
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
COUNSELLING_PHRASES = [
    "I hear how hard this has been for you.",
    "It sounds like you are feeling anxious and overwhelmed.",
    "What would feel most helpful to talk about today?",
    "Therapy, trauma, attachment, shame, grief, depression, anxiety, boundaries, relationship.",
    "If you are in danger, please call your local emergency number or a crisis line.",
]


def corpus() -> list[str]:
    texts = list(COUNSELLING_PHRASES)
    for module in sorted(m.name for m in pkgutil.iter_modules() if not m.name.startswith("_")):
        if module in {"antigravity", "this", "idlelib", "tkinter", "turtle"}:
            continue
        try:
            doc = pydoc.getdoc(__import__(module))
        except Exception:  # noqa: BLE001 - any module that fails to import is just skipped
            continue
        if doc:
            texts.append(doc)
    return texts


def build() -> None:
    tokenizer = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    tokenizer.save(str(HERE / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "<|im_end|>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHATML_TEMPLATE,
    }
    (HERE / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    build()
