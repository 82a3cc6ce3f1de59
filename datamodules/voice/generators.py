"""Who writes the client side (and, with `reply: rewrite`, the reply): an OpenAI-compatible HTTP
server or a local transformers model.

Both answer one chat prompt at a time (`complete`), called from the build's one worker pool: text,
or None where a request failed after its retries (that unit is not journalled and is written again
on the next run). A request the server refuses (HTTP 4xx other than auth or a missing model) raises
`ItemRefused`: that unit is counted and skipped. An auth error (401/403) or a wrong model or URL
(404) raises `GeneratorError` at once: every other request would fail the same way. The HTTP
backend is the project's one OpenAI-compatible client, datamodules/openai_client.py.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

from datamodules.openai_client import ChatClient, ChatRefused, ChatUnavailable
from datamodules.voice.config import LocalSettings, OpenAISettings

log = logging.getLogger(__name__)

Prompt = list[dict[str, str]]


class GeneratorError(RuntimeError):
    """The build cannot go on (bad key, unknown model or URL): retrying will not help."""


class Unavailable(RuntimeError):
    """A generator returned no text for a turn (its request failed after the retries)."""


class ItemRefused(RuntimeError):
    """The server refused this one request (e.g. a content filter): the unit is counted and skipped."""


# Statuses that mean every request would be refused: stop at once.
STOP_STATUS = frozenset({401, 403, 404})
# Refusals before any success that mean the setup, not the items, is wrong.
MAX_REFUSALS_BEFORE_SUCCESS = 20


class Generator(Protocol):
    def identity(self) -> dict:
        """What decides its outputs (backend, model, sampling): a journal written by another
        generator is not resumed with this one."""
        ...

    @property
    def workers(self) -> int:
        """Requests that may be in flight at once: the size of the build's worker pool."""
        ...

    def complete(self, prompt: Prompt) -> str | None: ...


class OpenAIGenerator:
    """The shared chat client, with the build's error handling (module docstring)."""

    def __init__(self, settings: OpenAISettings):
        self.settings = settings
        self.client = ChatClient(settings)
        self.lock = threading.Lock()
        self.succeeded = self.refused = 0

    @property
    def workers(self) -> int:
        return max(1, self.settings.concurrency)

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
            text = self.client.complete(prompt)
        except ChatRefused as error:
            if error.status in STOP_STATUS:
                raise GeneratorError(str(error)) from None
            with self.lock:
                self.refused += 1
                hopeless = self.refused >= MAX_REFUSALS_BEFORE_SUCCESS and not self.succeeded
            if hopeless:
                raise GeneratorError(
                    f"the first {self.refused} requests were all refused, the last with: {error}"
                ) from None
            raise ItemRefused(str(error)) from None
        except ChatUnavailable as error:
            log.warning("%s; the unit is generated again on the next run", error)
            return None
        with self.lock:
            self.succeeded += 1
        return text


class LocalGenerator:
    """Sampling from a causal LM with its own chat template."""

    def __init__(self, settings: LocalSettings):
        import torch

        from moe.base_model import load_base_model, load_tokenizer

        check_local_model(settings.model)
        self.settings = settings
        self.torch = torch
        self.device = (
            ("cuda" if torch.cuda.is_available() else "cpu") if settings.device == "auto" else settings.device
        )
        self.tokenizer = load_tokenizer(settings.model)
        self.model = load_base_model(settings.model).to(self.device).eval()
        self.lock = threading.Lock()  # one generate at a time (the pool has one worker anyway)
        self.calls = 0

    @property
    def workers(self) -> int:
        return 1

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

    def complete(self, prompt: Prompt) -> str | None:
        """One prompt at a time: the build's pool gives this backend a single worker."""
        with self.lock:
            self.calls += 1
            text = self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            encoded = self.tokenizer([text], return_tensors="pt", add_special_tokens=False).to(self.device)
            self.torch.manual_seed(self.settings.seed + self.calls)
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
            new_tokens = generated[0, encoded["input_ids"].shape[1] :]
            return self.tokenizer.decode(new_tokens, skip_special_tokens=True)


def check_local_model(name: str) -> None:
    """A local model is a folder or one of the built-in names every command accepts."""
    from moe.base_model import TINY  # torch and transformers load only when a local model is used
    from moe.smollm2 import SMOLLM2

    if name not in (TINY, SMOLLM2) and not Path(name).is_dir():
        raise FileNotFoundError(
            f"local.model folder {name} does not exist (a model folder, `{TINY}` or `{SMOLLM2}`)"
        )


class NoGenerator:
    """Offline mode: nothing to generate."""

    workers = 1

    def identity(self) -> dict:
        return {"backend": "none"}

    def complete(self, prompt: Prompt) -> str | None:
        raise GeneratorError("mode offline asks for no generated text; this is a bug")


def make_generator(kind: str, openai: OpenAISettings, local: LocalSettings) -> Generator:
    if kind == "openai":
        return OpenAIGenerator(openai)
    if kind == "local":
        return LocalGenerator(local)
    return NoGenerator()
