"""Source-side cost on generated data of realistic shape: read + validate, exact dedup, near dedup.

`python -m benchmarks.source_read [--mb 40]` writes a therapist-sft-like CSV (multi-turn `human:` /
`gpt:` text, ~4 KB a row) and a priority-like JSONL of the same size into a temporary folder, then
times `read_sources` and `deduplicate` with and without the MinHash near-duplicate pass, in one run.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from pathlib import Path

from datamodules.dedup import deduplicate
from datamodules.registry import SourceSpec
from datamodules.sources import ReadOptions, read_sources

WORDS = (
    "feel anxious work sleep mother partner worry breathe notice name thought pattern body safe "
    "together small step today week talk listen hard tired angry sad hope change try help"
).split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize() + "."


def turns(rng: random.Random, size: int) -> list[str]:
    out, total = [], 0
    while total < size:
        out.append(" ".join(sentence(rng) for _ in range(rng.randint(2, 6))))
        total += len(out[-1])
    return out if len(out) % 2 == 0 else out + [sentence(rng)]


def write_data(folder: Path, megabytes: float, rng: random.Random) -> dict[str, SourceSpec]:
    csv_path, jsonl_path = folder / "train.csv", folder / "priority.jsonl"
    rows = int(megabytes * 1e6 / 4000)
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        for _ in range(rows):
            parts = turns(rng, 4000)
            writer.writerow(
                ["\n".join(f"{'human' if i % 2 == 0 else 'GPT'}: {t}" for i, t in enumerate(parts))]
            )
    with jsonl_path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            conversation = [
                {"role": ("client", "therapist")[j % 2], "content": t} for j, t in enumerate(turns(rng, 4000))
            ]
            record = {
                "conversation": conversation,
                "conversation_id": f"c{i}",
                "metadata": {"quality_score": 0.9},
            }
            handle.write(json.dumps(record) + "\n")
    return {
        "sft": SourceSpec("sft", str(csv_path), "therapist_sft", 1, "general_therapeutic"),
        "priority": SourceSpec("priority", str(jsonl_path), "priority", 1, "general_therapeutic"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=40.0, help="megabytes per generated file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        specs = write_data(Path(tmp), args.mb, random.Random(0))
        size = sum(Path(s.path).stat().st_size for s in specs.values())
        start = time.perf_counter()
        result = read_sources(specs, tmp, ReadOptions(progress=False))
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        deduplicate(result, near_threshold=None, progress=False)
        exact_s = time.perf_counter() - start
        start = time.perf_counter()
        deduplicate(result, progress=False)
        near_s = time.perf_counter() - start
    n = len(result.conversations)
    print(
        json.dumps(
            {
                "megabytes": round(size / 1e6, 1),
                "conversations": n,
                "read_seconds": round(read_s, 2),
                "read_mb_per_second": round(size / 1e6 / read_s, 1),
                "exact_dedup_seconds": round(exact_s, 2),
                "near_dedup_seconds": round(near_s, 2),
                "near_dedup_conversations_per_second": round(n / near_s),
            }
        )
    )


if __name__ == "__main__":
    main()
