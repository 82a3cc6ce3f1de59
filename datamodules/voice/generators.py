"""Who writes the client side: an OpenAI-compatible HTTP server or a local transformers model.

Both take a batch of chat prompts and return one text per prompt (None where a request failed
after its retries: that unit is not journalled and is generated again on the next run). The HTTP
backend is the project's one OpenAI-compatible client, datamodules/openai_client.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from datamodules.openai_client import ChatClient, ChatRefused, ChatUnavailable
from datamodules.voice.config import LocalSettings, OpenAISettings

log = logging.getLogger(__name__)

Prompt = list[dict[str, str]]


class GeneratorError(RuntimeError):
    """The server refused the request itself (bad key, unknown model): retrying will not help."""


class Generator(Protocol):
    def identity(self) -> dict:
        """What decides its outputs (backend, model, sampling): a journal written by another
        generator is not resumed with this one."""
        ...

    def generate(self, prompts: list[Prompt]) -> list[str | None]: ...


class OpenAIGenerator:
    """The shared chat client, with the build's error handling: a refusal stops the build, a
    request that failed after its retries leaves its unit unjournalled for the next run."""

    def __init__(self, settings: OpenAISettings):
        self.settings = settings
        self.client = ChatClient(settings)

    def identity(self) -> dict:
        s = self.settings
        return {
            "backend": "openai",
            "model": s.model,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
        }

    def complete(self, prompt: Prompt) -> str | None:
        try:
            return self.client.complete(prompt)
        except ChatRefused as error:
            raise GeneratorError(str(error)) from None
        except ChatUnavailable as error:
            log.warning("%s; the unit is generated again on the next run", error)
            return None

    def generate(self, prompts: list[Prompt]) -> list[str | None]:
        return self.client.map(self.complete, prompts)


class LocalGenerator:
    """Batched sampling from a causal LM with its own chat template (left padding for generation)."""

    def __init__(self, settings: LocalSettings):
        import torch

        from moe.base_model import TINY, load_base_model, load_tokenizer

        if settings.model != TINY and not Path(settings.model).is_dir():
            raise FileNotFoundError(
                f"local generator model folder {settings.model} does not exist "
                "(--local.model: a model folder, or `tiny`)"
            )
        self.settings = settings
        self.torch = torch
        self.device = (
            ("cuda" if torch.cuda.is_available() else "cpu") if settings.device == "auto" else settings.device
        )
        self.tokenizer = load_tokenizer(settings.model)
        self.tokenizer.padding_side = "left"
        self.model = load_base_model(settings.model).to(self.device).eval()

    def identity(self) -> dict:
        s = self.settings
        return {
            "backend": "local",
            "model": s.model,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_new_tokens": s.max_new_tokens,
            "seed": s.seed,
        }

    def generate(self, prompts: list[Prompt]) -> list[str | None]:
        outputs: list[str | None] = []
        generator_seed = self.settings.seed
        for start in range(0, len(prompts), self.settings.batch_size):
            batch = prompts[start : start + self.settings.batch_size]
            texts = [
                self.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                for p in batch
            ]
            encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            encoded = encoded.to(self.device)
            self.torch.manual_seed(generator_seed + start)
            sampling = self.settings.temperature > 0
            with self.torch.no_grad():
                generated = self.model.generate(
                    **encoded,
                    max_new_tokens=self.settings.max_new_tokens,
                    do_sample=sampling,
                    temperature=self.settings.temperature if sampling else None,
                    top_p=self.settings.top_p if sampling else None,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new_tokens = generated[:, encoded["input_ids"].shape[1] :]
            outputs.extend(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return outputs


class NoGenerator:
    """Offline mode: nothing to generate."""

    def identity(self) -> dict:
        return {"backend": "none"}

    def generate(self, prompts: list[Prompt]) -> list[str | None]:
        if prompts:
            raise GeneratorError("mode offline asks for no client messages; this is a bug")
        return []


def make_generator(kind: str, openai: OpenAISettings, local: LocalSettings) -> Generator:
    if kind == "openai":
        return OpenAIGenerator(openai)
    if kind == "local":
        return LocalGenerator(local)
    return NoGenerator()
