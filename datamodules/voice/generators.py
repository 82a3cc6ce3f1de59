"""Who writes the client side: an OpenAI-compatible HTTP server or a local transformers model.

Both take a batch of chat prompts and return one text per prompt (None where a request failed
after its retries: that unit is not journalled and is generated again on the next run). The HTTP
backend uses only the standard library (urllib + a thread pool), so it adds no dependency.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from datamodules.voice.config import LocalSettings, OpenAISettings

log = logging.getLogger(__name__)

Prompt = list[dict[str, str]]
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class GeneratorError(RuntimeError):
    """The server refused the request itself (bad key, unknown model): retrying will not help."""


class Generator(Protocol):
    def identity(self) -> dict:
        """What decides its outputs (backend, model, sampling): a journal written by another
        generator is not resumed with this one."""
        ...

    def generate(self, prompts: list[Prompt]) -> list[str | None]: ...


class OpenAIGenerator:
    def __init__(self, settings: OpenAISettings):
        self.settings = settings
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self.key = os.environ.get(settings.api_key_env, "")
        if not self.key:
            log.info("%s is not set: requests carry no Authorization header", settings.api_key_env)

    def identity(self) -> dict:
        s = self.settings
        return {
            "backend": "openai",
            "model": s.model,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
        }

    def request(self, prompt: Prompt) -> str:
        body = json.dumps(
            {
                "model": self.settings.model,
                "messages": prompt,
                "temperature": self.settings.temperature,
                "max_tokens": self.settings.max_tokens,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
            payload = json.load(response)
        return payload["choices"][0]["message"]["content"]

    def complete(self, prompt: Prompt) -> str | None:
        """One prompt with retries: exponential backoff with jitter, honouring Retry-After."""
        for attempt in range(self.settings.max_retries + 1):
            wait = self.settings.backoff_s * 2**attempt + random.uniform(0, self.settings.backoff_s)
            try:
                return self.request(prompt)
            except urllib.error.HTTPError as error:
                if error.code not in RETRY_STATUS:
                    detail = error.read()[:300].decode("utf-8", "replace")
                    raise GeneratorError(f"{self.url} answered HTTP {error.code}: {detail}") from None
                retry_after = error.headers.get("Retry-After") if error.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = float(retry_after)
                reason = f"HTTP {error.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                reason = type(error).__name__
            except (ValueError, KeyError, IndexError, TypeError):
                reason = "malformed response"
            if attempt < self.settings.max_retries:
                log.debug("request failed (%s), retry %d in %.1fs", reason, attempt + 1, wait)
                time.sleep(wait)
        log.warning("request to %s failed after %d retries (%s)", self.url, self.settings.max_retries, reason)
        return None

    def generate(self, prompts: list[Prompt]) -> list[str | None]:
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            return list(pool.map(self.complete, prompts))


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
