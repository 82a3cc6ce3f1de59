"""One client for OpenAI-compatible /chat/completions endpoints: the voice build's generator and the
evaluation's LLM judge both call it.

It lives in datamodules/ beside the data layer's other leaf modules because the data side (the
voice build) is where the project first talks to such a server, and a new top-level folder for one
file would break the layout's one-idea-per-folder map. It imports only the standard library, so
`evals.judge` depending on it pulls in nothing of the data pipeline (evals still never imports
`datamodules.voice`, and the voice build never imports `evals`).

Stdlib HTTP (urllib + a thread pool) rather than the `openai` package: the protocol is one POST, and
every server that speaks it (vLLM, llama.cpp, TGI, Ollama, OpenAI) is reached the same way without
another dependency. The API key is read from the environment variable whose NAME the settings give;
it goes into the Authorization header and nowhere else (no log, no error message, no repr).

Retries: HTTP 408/409/425/429/5xx, timeouts, dropped connections and answers that are not a chat
completion are retried with exponential backoff and jitter, honouring a numeric Retry-After. Any
other HTTP status is the server refusing the request itself (bad key, unknown model, wrong path):
`ChatRefused` at once, since retrying will not help. Retries spent: `ChatUnavailable`. What a
caller does with either is its own choice.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
T = TypeVar("T")
R = TypeVar("R")


class EndpointSettings(Protocol):
    """The fields the voice build's `OpenAISettings` and the judge's `JudgeSettings` share."""

    base_url: str
    model: str
    api_key_env: str | None  # the variable's name; the key itself is never a setting
    temperature: float
    max_tokens: int
    timeout_s: float
    max_retries: int
    backoff_s: float  # the first retry waits about this long, doubling after each failure
    concurrency: int


class ChatRequestError(RuntimeError):
    """A chat completion that did not come back; the message names the URL, never the key."""


class ChatRefused(ChatRequestError):
    """The server answered a status that retrying will not change (4xx other than the retried ones)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class ChatUnavailable(ChatRequestError):
    """Every attempt failed for a reason that may heal (overload, timeout, dropped connection)."""


class ChatClient:
    def __init__(self, settings: EndpointSettings):
        self.settings = settings
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self._key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        if settings.api_key_env and not self._key:
            log.info("%s is not set: requests carry no Authorization header", settings.api_key_env)

    def __repr__(self) -> str:  # no key, even by accident
        return f"ChatClient({self.url!r}, model={self.settings.model!r})"

    def _post(self, messages: Messages, extra: dict | None = None) -> str:
        s = self.settings
        body = json.dumps(
            {
                "model": s.model,
                "messages": messages,
                "temperature": s.temperature,
                "max_tokens": s.max_tokens,
                **(extra or {}),
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=s.timeout_s) as response:
            content = json.load(response)["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("message content is not text")
        return content

    def complete(self, messages: Messages, extra: dict | None = None) -> str:
        """The assistant's text for one chat; raises ChatRefused or ChatUnavailable.

        extra: more request fields, e.g. `response_format` for guided JSON output."""
        s = self.settings
        for attempt in range(s.max_retries + 1):
            wait = s.backoff_s * 2**attempt + random.uniform(0, s.backoff_s)
            try:
                return self._post(messages, extra)
            except urllib.error.HTTPError as error:
                if error.code not in RETRY_STATUS:
                    detail = error.read()[:300].decode("utf-8", "replace")
                    if self._key:  # a server echoing the request must not leak the key
                        detail = detail.replace(self._key, "***")
                    message = f"{self.url} answered HTTP {error.code}: {detail}"
                    raise ChatRefused(message, error.code) from None
                retry_after = error.headers.get("Retry-After") if error.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = float(retry_after)
                reason = f"HTTP {error.code}"
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
                reason = type(error).__name__
            except (ValueError, KeyError, IndexError, TypeError):
                reason = "answer is not an OpenAI chat completion"
            if attempt < s.max_retries:
                log.debug("request to %s failed (%s), retry %d in %.1fs", self.url, reason, attempt + 1, wait)
                time.sleep(wait)
        raise ChatUnavailable(f"{self.url}: {reason} after {s.max_retries} retries")

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """function over items on `concurrency` threads, results in order: the endpoint's load limit."""
        with ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool:
            return list(pool.map(function, items))
