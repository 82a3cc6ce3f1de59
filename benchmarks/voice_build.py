"""The voice build at the user's scale: 913 synthetic lecture-length transcripts.

Offline mode (no model): the whole build (read, clean, punctuate, chunk, dedup, style profile,
TF-IDF index, conversations, filters, write), wall time, time per lecture and peak memory.
Generator mode: the same build in multiturn mode against the local OpenAI-compatible test server
(tests/openai_server.py) answering after a fixed latency, as a model server would: requests per
second with the build's one worker pool at concurrency 16, side by side with concurrency 1 (the
fair baseline: the same requests one at a time). Last line: one JSON object.

    python -m benchmarks.voice_build [--lectures 913] [--words 3000] [--server-lectures 12] [--latency-ms 50]

The lectures are the bundled samples' sentences, shuffled per lecture (so MinHash dedup keeps
them), in the four formats in turn.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from datamodules.voice.build import build
from datamodules.voice.config import BuildConfig, OpenAISettings
from datamodules.voice.ingest import read_transcripts
from datamodules.voice.punctuate import RulePunctuator, split_sentences

SAMPLES = Path(__file__).parents[1] / "datamodules" / "voice" / "samples"
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from openai_server import serve  # noqa: E402 (the tests' server, on the path just above)


def clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def write_lectures(directory: Path, count: int, words_per_lecture: int) -> None:
    """Lecture-length transcripts of sample sentences in random order, in .vtt/.json/.srt/.txt."""
    transcripts, _ = read_transcripts(SAMPLES)
    sentences = [s for t in transcripts for s in split_sentences(RulePunctuator()(t.text))]
    rng = random.Random(0)
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        chosen: list[str] = []
        while sum(len(s.split()) for s in chosen) < words_per_lecture:
            chosen.append(rng.choice(sentences))
        text = " ".join(chosen)
        words = text.split()
        pieces = [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)]
        kind = number % 4
        if kind == 0:  # auto-captions: lower case, no punctuation
            pieces = [p.lower().replace(".", "").replace("?", "").replace(",", "") for p in pieces]
            cues = [f"{clock(i)}.000 --> {clock(i)}.900\n{p}\n" for i, p in enumerate(pieces)]
            (directory / f"lecture{number}.en.vtt").write_text("WEBVTT\n\n" + "\n".join(cues))
        elif kind == 1:
            segments = [{"text": p.lower(), "start": 1.0 * i, "duration": 0.9} for i, p in enumerate(pieces)]
            (directory / f"lecture{number}.json").write_text(json.dumps(segments))
        elif kind == 2:
            cues = [f"{i + 1}\n{clock(i)},000 --> {clock(i)},900\n{p}\n" for i, p in enumerate(pieces)]
            (directory / f"lecture{number}.srt").write_text("\n".join(cues))
        else:
            (directory / f"lecture{number}.txt").write_text(f"Title: Lecture {number}\n{text}")


def offline(folder: Path, out: Path) -> dict:
    start = time.perf_counter()
    stats = build(BuildConfig(transcripts=folder, out=out / "offline.json", speaker="Tim Fletcher"))
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 1),
        "ms_per_lecture": round(1000 * seconds / stats["lectures"]["read"], 1),
        "lectures": stats["lectures"]["read"],
        "passages": stats["passages"]["kept"],
        "conversations": stats["conversations"]["train"] + stats["conversations"]["heldout"],
        "turns": stats["conversations"]["turns"],
        "risk": stats["risk"]["disclosures"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def answer_after(latency_s: float, arrivals: list[float]):
    """A client message about the prompt's two longest words, after `latency_s`; each request's
    arrival time is appended to `arrivals`."""

    def answer(call):
        arrivals.append(time.perf_counter())
        time.sleep(latency_s)
        prompt = call.body["messages"][-1]["content"].split()
        about = " and ".join(sorted({w.strip('.,?!"') for w in prompt}, key=lambda w: (-len(w), w))[:2])
        return 200, f"I keep thinking about {about}. Why does it affect me so much?"

    return answer


def with_server(folder: Path, out: Path, concurrency: int, latency_s: float) -> dict:
    arrivals: list[float] = []
    with serve(answer_after(latency_s, arrivals), lifetime_s=3600) as server:
        config = BuildConfig(
            transcripts=folder,
            out=out / f"server{concurrency}.json",
            speaker="Tim Fletcher",
            mode="multiturn",
            generator="openai",
            passages_per_conversation=2,
            openai=OpenAISettings(base_url=server.url, model="bench", concurrency=concurrency, api_key_env=""),
        )
        start = time.perf_counter()
        stats = build(config)
        seconds = time.perf_counter() - start
        requests = len(server.calls)
    generating = max(arrivals) - min(arrivals) + latency_s  # first request sent to last answered
    return {
        "concurrency": concurrency,
        "requests": requests,
        "build_seconds": round(seconds, 2),
        "generation_seconds": round(generating, 2),
        "requests_per_s": round(requests / generating, 1),
        "conversations": stats["conversations"]["train"] + stats["conversations"]["heldout"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lectures", type=int, default=913)
    parser.add_argument("--words", type=int, default=3000, help="words per lecture (~20 minutes of talk)")
    parser.add_argument("--server-lectures", type=int, default=12)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the test server's answer time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        start = time.perf_counter()
        write_lectures(root / "lectures", args.lectures, args.words)
        write_lectures(root / "few", args.server_lectures, args.words)
        written = time.perf_counter() - start
        result = {"lectures_written_s": round(written, 1), "offline": offline(root / "lectures", root / "out")}
        print(f"offline: {json.dumps(result['offline'])}", flush=True)
        served = [with_server(root / "few", root / "out", c, args.latency_ms / 1000) for c in (16, 1)]
    result["server"] = {"latency_ms": args.latency_ms, "lectures": args.server_lectures, "runs": served}
    result["server"]["speedup_16_over_1"] = round(served[0]["requests_per_s"] / served[1]["requests_per_s"], 2)
    for run in served:
        print(
            f"server concurrency {run['concurrency']:2d}: {run['requests_per_s']:7.1f} requests/s "
            f"({run['requests']} requests)"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
