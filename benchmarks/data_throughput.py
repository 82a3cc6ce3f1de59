"""Data pipeline throughput: read + dedup + split + chat template + tokenize + pack, then the cached run.

    python -m benchmarks.data_throughput [--megabytes 30] [--num-proc 1] [--base-model tiny]

Generates a counselling-shaped JSON Lines file (multi-turn `messages` records, realistic turn
lengths, seeded) of the given size in a temporary folder, builds a StageDataModule on it from an
empty cache (first run), then builds a second one with the same settings (cached run: it only
memory-maps the cache). Last line: one JSON object with tokens_per_second (first run, tokens of
all splits / wall seconds), cached_seconds, packing_efficiency and the details.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

from datamodules.datamodule import StageDataModule

WORDS = (
    "I you we feel felt anxious tired sad hopeful angry lonely overwhelmed work family partner friend "
    "sleep night morning week month year therapy session talk listen understand notice breathe pause "
    "worry fear grief loss change boundary trust shame guilt relief calm safe support help hard easy "
    "small step try again maybe perhaps really often sometimes never always because when while after "
    "before about with without through into around the a an and but or so that this it is was be have "
    "had do did can could would should might what how why where who which tell me more sounds like"
).split()
DOMAINS = ["psychology", "mental_health", "bias_detection", "general_therapeutic"]


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 22))]
    return " ".join(words).capitalize() + rng.choice(".?!")


def turn(rng: random.Random, sentences: tuple[int, int]) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(*sentences)))


def generate(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write multi-turn conversations (1-6 exchanges) until the file reaches `megabytes`."""
    rng = random.Random(seed)
    target, written, records = megabytes * 1e6, 0, 0
    with path.open("w", encoding="utf-8") as f:
        while written < target:
            messages = []
            for _ in range(rng.choice([1, 1, 2, 3, 4, 6])):
                messages.append({"role": "user", "content": turn(rng, (1, 5))})
                messages.append({"role": "assistant", "content": turn(rng, (2, 9))})
            line = json.dumps({"id": f"conv{records}", "messages": messages}) + "\n"
            f.write(line)
            written += len(line.encode())
            records += 1
    return records


def data_module(root: Path, args: argparse.Namespace) -> StageDataModule:
    return StageDataModule(
        stage=9,
        base_model=args.base_model,
        expert_domains=DOMAINS,
        data_root=str(root),
        sources={
            "generated": {
                "path": "generated.jsonl",
                "schema": "messages",
                "stage": 9,
                "domain": "general_therapeutic",
                "options": {"group_key": "id"},
            }
        },
        cache_dir=str(root / "cache"),
        max_seq_length=args.max_seq_length,
        num_proc=args.num_proc,
        template_check_examples=4,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=30.0)
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--max-seq-length", type=int, default=2048)
    parser.add_argument("--base-model", default="tiny")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        records = generate(root / "generated.jsonl", args.megabytes)
        size = os.path.getsize(root / "generated.jsonl") / 1e6
        start = time.perf_counter()
        first = data_module(root, args)
        first.setup("fit")
        first_seconds = time.perf_counter() - start
        start = time.perf_counter()
        cached = data_module(root, args)
        cached.setup("fit")
        batch = next(iter(cached.train_dataloader()))
        cached_seconds = time.perf_counter() - start
        splits = first.report["splits"]
        tokens = sum(s["tokens"] for s in splits.values())
        result = {
            "tokens_per_second": round(tokens / first_seconds),
            "cached_seconds": round(cached_seconds, 2),
            "packing_efficiency": round(splits["train"]["efficiency"], 4),
            "first_run_seconds": round(first_seconds, 2),
            "tokens": tokens,
            "records": records,
            "megabytes": round(size, 1),
            "train_rows": splits["train"]["rows"],
            "first_batch_shape": list(batch["input_ids"].shape),
            "num_proc": args.num_proc,
            "max_seq_length": args.max_seq_length,
            "base_model": args.base_model,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible",
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
