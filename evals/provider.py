"""Our checkpoints as an inspect_ai model provider: `--model therapeutic/<source>`.

<source> is anything evals.loading.load_model takes: a mixture checkpoint-final/, an exported PEFT
adapter, a merged model folder, or `base`. Model args (`-M name=value`): base_model (what `base`
means and what an adapter must be built on), dtype, load_in_4bit, attn_implementation, batch_size,
min_p, repetition_penalty.

Registered through the `inspect_ai` entry point of this package (pyproject.toml), so the `inspect`
command line finds it. Generation is batched: inspect runs samples concurrently, each sample's
generate() call waits in a queue, and one worker thread generates whatever has queued up as one
left-padded batch (evals.generate.generate_replies), greedy at temperature 0, seeded otherwise.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import anyio
from inspect_ai.model import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    modelapi,
)
from inspect_ai.tool import ToolChoice, ToolInfo

PROVIDER = "therapeutic"
# Wayfarer-2-12B model card values, used when the task's config does not set them.
DEFAULT_MIN_P = 0.025
DEFAULT_REPETITION_PENALTY = 1.05


@dataclass
class _Pending:
    messages: list[dict[str, str]]
    future: asyncio.Future

    @property
    def length(self) -> int:
        """The prompt's length in characters (a cheap stand-in for its tokens)."""
        return sum(len(m["content"]) for m in self.messages)


class CheckpointAPI(ModelAPI):
    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = GenerateConfig(),
        **model_args: Any,
    ):
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)
        import torch

        from evals.loading import load_model

        dtype = model_args.pop("dtype", None)
        self.batch_size = int(model_args.pop("batch_size", 8))
        self.min_p = float(model_args.pop("min_p", DEFAULT_MIN_P))
        self.repetition_penalty = float(model_args.pop("repetition_penalty", DEFAULT_REPETITION_PENALTY))
        base_model = model_args.pop("base_model", None)
        options = {k: model_args.pop(k) for k in ("load_in_4bit", "attn_implementation") if k in model_args}
        if model_args:
            raise ValueError(f"{PROVIDER}/{model_name}: unknown model args {sorted(model_args)}")
        self.loaded = load_model(
            model_name, base_model, dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype, **options
        )
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task | None = None
        self._batches = 0

    def max_connections(self) -> int:
        """inspect's concurrency per model: enough samples in flight to fill a batch."""
        return self.batch_size

    def max_tokens(self) -> int | None:
        return 400

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        if tools:
            raise ValueError(f"{PROVIDER}: tool use is not supported")
        messages = [{"role": m.role, "content": m.text} for m in input]
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(messages, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(config))
        text = await future
        return ModelOutput.from_content(model=self.model_name, content=text)

    def _next_batch(self) -> list[_Pending]:
        """The shortest queued prompts, up to batch_size, none more than twice the shortest's length:
        a left-padded batch costs its longest prompt for every row, so a 1,500-token conversation
        does not pad twenty one-line openers."""
        self._queue.sort(key=lambda p: p.length)
        limit = 2 * self._queue[0].length + 256
        size = next(
            (i for i, p in enumerate(self._queue[: self.batch_size]) if p.length > limit),
            min(self.batch_size, len(self._queue)),
        )
        batch, self._queue = self._queue[:size], self._queue[size:]
        return batch

    async def _drain(self, config: GenerateConfig) -> None:
        """Generate queued requests a batch at a time until the queue is empty."""
        from evals.generate import generate_replies
        from evals.settings import GenerationSettings

        await asyncio.sleep(0.05)  # let the samples started together all queue up
        while self._queue:
            batch = self._next_batch()
            settings = GenerationSettings(
                temperature=config.temperature if config.temperature is not None else 0.0,
                min_p=self.min_p,
                repetition_penalty=self.repetition_penalty,
                max_new_tokens=config.max_tokens or self.max_tokens() or 400,
                batch_size=len(batch),
                # A different seed per batch: repeated samples of one prompt differ, reruns repeat.
                seed=(config.seed or 0) + self._batches,
            )
            self._batches += 1
            try:
                texts = await anyio.to_thread.run_sync(
                    lambda: generate_replies(
                        self.loaded.model, self.loaded.tokenizer, [p.messages for p in batch], settings, progress=False
                    )
                )
            except Exception as error:  # every waiting sample gets the error, none hangs
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            for pending, text in zip(batch, texts, strict=True):
                pending.future.set_result(text)


@modelapi(name=PROVIDER)
def therapeutic() -> type[ModelAPI]:
    return CheckpointAPI
