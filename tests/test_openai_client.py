"""The shared OpenAI-compatible client against the local test server: what is retried, what is not,
and the key never in an error."""

from dataclasses import dataclass

import pytest
from openai_server import Call

from datamodules.openai_client import ChatClient, ChatRefused, ChatUnavailable

KEY = "sk-client-test-777"


@dataclass
class Settings:
    base_url: str
    model: str = "m"
    api_key_env: str | None = "CLIENT_TEST_KEY"
    temperature: float = 0.0
    max_tokens: int = 8
    timeout_s: float = 5.0
    max_retries: int = 2
    backoff_s: float = 0.01
    concurrency: int = 2


def test_overload_and_non_chat_answers_are_retried_then_answered(openai_server, monkeypatch):
    monkeypatch.setenv("CLIENT_TEST_KEY", KEY)

    def answer(call: Call) -> tuple[int, str | None]:
        if call.number == 1:
            return 429, ""
        if call.number == 2:
            return 200, None  # a chat completion whose content is not text
        return 200, f"hello {call.body['messages'][0]['content']}"

    server = openai_server(answer)
    client = ChatClient(Settings(server.url))
    assert client.complete([{"role": "user", "content": "you"}]) == "hello you"
    assert [c.auth for c in server.calls] == [f"Bearer {KEY}"] * 3
    assert KEY not in repr(client)


def test_exhausted_retries_raise_unavailable(openai_server):
    server = openai_server(lambda call: (503, ""))
    with pytest.raises(ChatUnavailable, match="HTTP 503 after 2 retries"):
        ChatClient(Settings(server.url)).complete([{"role": "user", "content": "x"}])
    assert len(server.calls) == 3


def test_a_refusal_is_not_retried_and_an_echoed_key_is_masked(openai_server, monkeypatch):
    monkeypatch.setenv("CLIENT_TEST_KEY", KEY)
    server = openai_server(lambda call: (401, f"bad key {call.auth}"))
    with pytest.raises(ChatRefused, match=r"answered HTTP 401: bad key Bearer \*\*\*") as error:
        ChatClient(Settings(server.url)).complete([{"role": "user", "content": "x"}])
    assert error.value.status == 401 and KEY not in str(error.value)
    assert len(server.calls) == 1


def test_map_keeps_the_order(openai_server):
    server = openai_server(lambda call: (200, call.body["messages"][0]["content"].upper()))
    client = ChatClient(Settings(server.url, api_key_env=None))
    prompts = [[{"role": "user", "content": word}] for word in ("a", "b", "c", "d", "e")]
    assert client.map(client.complete, prompts) == ["A", "B", "C", "D", "E"]
    assert {c.auth for c in server.calls} == {None}
