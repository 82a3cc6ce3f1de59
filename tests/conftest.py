"""Every test runs offline: no Hub, no W&B. The shared local OpenAI-compatible server fixture."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from contextlib import ExitStack  # noqa: E402 (the environment above is set before any import)

import pytest  # noqa: E402
from openai_server import serve  # noqa: E402


@pytest.fixture
def openai_server():
    """start(answer) -> OpenAIServer (tests/openai_server.py); every server started stops after the test."""
    with ExitStack() as stack:
        yield lambda answer: stack.enter_context(serve(answer))


@pytest.fixture(autouse=True)
def quiet_inspect_ai():
    """inspect_ai logs every sample at TRACE level; pytest's log capture would hold (and slow on) them all."""
    import logging

    logger = logging.getLogger("inspect_ai")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
