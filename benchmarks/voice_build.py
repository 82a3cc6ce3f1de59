"""How long an offline voice build takes per lecture, stage by stage, on this machine.

Writes N synthetic lectures (the shipped samples' sentences shuffled per lecture, so MinHash dedup
keeps most of them) in the four formats, runs each stage once, and prints seconds per stage and the
projected time for the ~900 lectures stage 3 uses (generation excluded: that is the server's or
the GPU's time). Last line: one JSON object.

    python -m benchmarks.voice_build [--lectures 200]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from datamodules.voice.chunk import chunk, drop_near_duplicates
from datamodules.voice.ingest import read_transcripts
from datamodules.voice.punctuate import RulePunctuator, split_sentences
from datamodules.voice.style import style_profile

SAMPLES = Path(__file__).parents[1] / "datamodules" / "voice" / "samples"
TARGET_LECTURES = 900


def write_lectures(directory: Path, count: int) -> None:
    """Each lecture ~3,000 words (a 20-minute talk) of sample sentences in random order."""
    transcripts, _ = read_transcripts(SAMPLES)
    sentences = [s for t in transcripts for s in split_sentences(RulePunctuator()(t.text))]
    rng = random.Random(0)
    for number in range(count):
        words = " ".join(rng.choice(sentences) for _ in range(200)).lower().replace(".", "").replace("?", "")
        kind = number % 3
        if kind == 0:  # rolling auto-caption style cues
            chunks = [" ".join(words.split()[i : i + 8]) for i in range(0, len(words.split()), 8)]
            cues = [f"00:00:{i % 60:02d}.000 --> 00:00:{i % 60:02d}.500\n{c}\n" for i, c in enumerate(chunks)]
            (directory / f"lecture{number}.vtt").write_text("WEBVTT\n\n" + "\n".join(cues))
        elif kind == 1:
            segments = [
                {"text": " ".join(words.split()[i : i + 8]), "start": i, "duration": 2.0}
                for i in range(0, len(words.split()), 8)
            ]
            (directory / f"lecture{number}.json").write_text(json.dumps(segments))
        else:
            (directory / f"lecture{number}.txt").write_text(words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lectures", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        write_lectures(Path(folder), args.lectures)
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        transcripts, _ = read_transcripts(Path(folder))
        seconds["ingest_and_clean"] = time.perf_counter() - start
        start = time.perf_counter()
        punctuate = RulePunctuator(["Tim Fletcher"])
        punctuated = {t.lecture_id: punctuate(t.text) for t in transcripts}
        seconds["punctuate_rules"] = time.perf_counter() - start
        start = time.perf_counter()
        counts: Counter = Counter()
        passages = [p for k, text in punctuated.items() for p in chunk(k, text, 150, 400, counts)]
        seconds["chunk"] = time.perf_counter() - start
        start = time.perf_counter()
        kept = drop_near_duplicates(passages, 0.8, counts)
        seconds["minhash_dedup"] = time.perf_counter() - start
        start = time.perf_counter()
        style_profile("Tim Fletcher", punctuated, {k: None for k in punctuated})
        seconds["style_profile"] = time.perf_counter() - start
    total = sum(seconds.values())
    for stage, value in seconds.items():
        print(
            f"{stage:18s} {value:8.2f} s  {1000 * value / len(transcripts):8.1f} ms/lecture"
            f"  {value / total:6.1%} of the build"
        )
    result = {
        "lectures": len(transcripts),
        "words": sum(len(t.text.split()) for t in transcripts),
        "passages": len(passages),
        "passages_after_dedup": len(kept),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "share_of_build": {k: round(v / total, 3) for k, v in seconds.items()},
        "ms_per_lecture": round(1000 * total / len(transcripts), 1),
        f"projected_seconds_for_{TARGET_LECTURES}_lectures": round(
            total * TARGET_LECTURES / len(transcripts), 1
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
