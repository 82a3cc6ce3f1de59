"""One voice build, top to bottom: read, clean, punctuate, chunk, dedup, profile, generate (resumably),
filter, split off held-out lectures, write.

Assistant turns are always the speaker's own words (a passage of the cleaned, punctuated
transcript); a generator only ever writes the client side.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm import tqdm

from datamodules.voice.chunk import Passage, chunk, drop_near_duplicates, question_spans
from datamodules.voice.config import BuildConfig
from datamodules.voice.filters import ConversationFilter, FilterSettings
from datamodules.voice.generators import Generator, Prompt, make_generator
from datamodules.voice.ingest import read_transcripts
from datamodules.voice.journal import Journal
from datamodules.voice.prompts import PROMPT_VERSION, follow_up_prompt, opening_prompt, tidy_client
from datamodules.voice.punctuate import ModelPunctuator, Punctuator, RulePunctuator
from datamodules.voice.style import style_profile

log = logging.getLogger(__name__)

SOURCE = "voice"
MAX_PASSAGES_PER_CONVERSATION = 5


@dataclass(frozen=True)
class Unit:
    """What one journal line covers: one conversation's worth of passages."""

    key: str
    lecture_id: str
    passages: tuple[Passage, ...]


def stable_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def make_units(mode: str, passages: list[Passage], per_conversation: int, counts: Counter) -> list[Unit]:
    """backtranslation/offline: a unit per passage; multiturn: consecutive passages of one lecture,
    `per_conversation` at a time (a lone last passage joins the previous window when it has room)."""
    if mode == "multiturn":
        by_lecture: dict[str, list[Passage]] = {}
        for passage in passages:
            by_lecture.setdefault(passage.lecture_id, []).append(passage)
        groups = []
        for lecture_passages in by_lecture.values():
            windows = [
                lecture_passages[i : i + per_conversation]
                for i in range(0, len(lecture_passages), per_conversation)
            ]
            if len(windows[-1]) == 1:
                lone = windows.pop()
                if windows and len(windows[-1]) < MAX_PASSAGES_PER_CONVERSATION:
                    windows[-1] = windows[-1] + lone
                else:
                    counts["single_passage_left"] += 1
            groups.extend(windows)
    else:
        groups = [[passage] for passage in passages]
    return [
        Unit(
            stable_hash(json.dumps([mode, g[0].lecture_id, [(p.text, p.question) for p in g]])),
            g[0].lecture_id,
            tuple(g),
        )
        for g in groups
    ]


def unit_prompts(mode: str, unit: Unit, speaker: str, profile: dict) -> list[Prompt]:
    if mode == "offline":
        return []
    detail = profile["lectures_detail"].get(unit.lecture_id, {})
    title, topics = detail.get("title"), detail.get("topics", [])
    prompts = [opening_prompt(speaker, unit.passages[0].text, title, topics)]
    if mode == "multiturn":
        prompts += [
            follow_up_prompt(speaker, before.text, after.text, title, topics)
            for before, after in itertools.pairwise(unit.passages)
        ]
    return prompts


def heldout_lectures(lecture_ids: list[str], fraction: float, explicit: list[str]) -> set[str]:
    """Whole lectures kept out of training: the explicit list, else the `fraction` of lectures with
    the smallest hash of their id (stable as lectures are added; at least one when fraction > 0)."""
    if explicit:
        unknown = sorted(set(explicit) - set(lecture_ids))
        if unknown:
            raise ValueError(f"heldout_lectures {unknown} are not among the lectures read")
        return set(explicit)
    if fraction == 0 or len(lecture_ids) < 2:
        return set()
    count = min(max(1, round(fraction * len(lecture_ids))), len(lecture_ids) - 1)
    return set(sorted(lecture_ids, key=stable_hash)[:count])


def generate_missing(
    units: list[Unit],
    prompts: dict[str, list[Prompt]],
    generator: Generator,
    journal: Journal,
    batch_size: int,
) -> dict[str, int]:
    """Generate every unit the journal lacks, a round at a time; the bar's ETA covers what is left."""
    pending = [u for u in units if u.key not in journal.records]
    failed = generated = 0
    with tqdm(total=len(units), initial=len(units) - len(pending), desc="client turns", unit="conv") as bar:
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            flat = [p for unit in batch for p in prompts[unit.key]]
            outputs = iter(generator.generate(flat))
            records = []
            for unit in batch:
                clients = [next(outputs) for _ in prompts[unit.key]]
                if any(c is None for c in clients):
                    failed += 1
                    continue
                records.append(
                    {
                        "key": unit.key,
                        "lecture_id": unit.lecture_id,
                        "clients": [tidy_client(c) for c in clients],
                    }
                )
            journal.add(records)
            generated += len(records)
            bar.update(len(batch))
    return {"generated_now": generated, "reused_from_journal": len(units) - len(pending), "failed": failed}


def write_json(path: Path, data) -> None:
    """Write-then-rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(temporary, path)


def describe(values: list[int]) -> dict:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean": round(statistics.fmean(values), 1),
        "min": min(values),
        "max": max(values),
    }


def assemble(
    config: BuildConfig,
    units: list[Unit],
    journal: Journal,
    words: dict[str, list[str]],
    heldout: set[str],
    keep: ConversationFilter,
) -> dict[str, list[dict]]:
    """Conversations in the stage-3 schema from the journal, filtered, in unit order (so the
    duplicate-client filter decides the same way on every run), split into train and held-out."""
    written: dict[str, list[dict]] = {"train": [], "heldout": []}
    for unit in units:
        record = journal.records.get(unit.key)
        if record is None:
            continue  # failed this run: generated again next run
        clients = [p.question or "" for p in unit.passages] if config.mode == "offline" else record["clients"]
        exchanges = [
            (client, p.text, " ".join(words[unit.lecture_id][p.start : p.end]))
            for client, p in zip(clients, unit.passages, strict=True)
        ]
        messages = keep(exchanges, min_exchanges=2 if config.mode == "multiturn" else 1)
        if messages:
            written["heldout" if unit.lecture_id in heldout else "train"].append(
                {
                    "messages": messages,
                    "domain": config.domain,
                    "lecture_id": unit.lecture_id,
                    "source": SOURCE,
                    "mode": config.mode,
                }
            )
    return written


def check_model_paths(config: BuildConfig) -> None:
    """Stop on a missing model folder before any transcript is read or model loaded."""
    if config.punctuation_model and not config.punctuation_model.is_dir():
        raise FileNotFoundError(f"punctuation_model folder {config.punctuation_model} does not exist")
    if config.generator == "local" and config.mode != "offline":
        from moe.base_model import TINY  # torch and transformers load only when a local model is used

        if config.local.model != TINY and not Path(config.local.model).is_dir():
            raise FileNotFoundError(f"local.model folder {config.local.model} does not exist")


def build(config: BuildConfig, generator: Generator | None = None) -> dict:
    """Run a build; returns the summary stats (also written to `<out stem>_stats.json`)."""
    check_model_paths(config)
    transcripts, ingest = read_transcripts(config.transcripts)
    if not transcripts:
        raise ValueError(
            f"no readable transcript in {config.transcripts} (skipped: {dict(ingest.skipped)}; "
            f"e.g. {ingest.examples[:3]})"
        )
    names = [config.speaker, *config.proper_nouns]
    punctuator: Punctuator = (
        ModelPunctuator(config.punctuation_model, names)
        if config.punctuation_model
        else RulePunctuator(names)
    )
    punctuated = {
        t.lecture_id: punctuator(t.text) for t in tqdm(transcripts, desc="punctuating", unit="lecture")
    }
    words = {t.lecture_id: t.text.split() for t in transcripts}
    titles = {t.lecture_id: t.title for t in transcripts}
    heldout = heldout_lectures(list(punctuated), config.heldout_fraction, config.heldout_lectures)

    profile = style_profile(config.speaker, punctuated, titles, heldout)
    write_json(config.beside_out("style_profile.json"), profile)

    chunking: Counter = Counter()
    passages: list[Passage] = []
    for lecture_id, text in punctuated.items():
        if config.mode == "offline":
            passages += question_spans(
                lecture_id, text, config.min_words, config.max_words, config.min_question_words, chunking
            )
        else:
            passages += chunk(lecture_id, text, config.min_words, config.max_words, chunking)
    passage_count = len(passages)
    passages = drop_near_duplicates(passages, config.dedup_threshold, chunking)
    units = make_units(config.mode, passages, config.passages_per_conversation, chunking)

    generator = generator or make_generator(
        config.generator if config.mode != "offline" else "none", config.openai, config.local
    )
    journal = Journal(
        config.journal_path, {"generator": generator.identity(), "prompt_version": PROMPT_VERSION}
    )
    prompts = {u.key: unit_prompts(config.mode, u, config.speaker, profile) for u in units}
    generation = generate_missing(units, prompts, generator, journal, config.batch_size)

    keep = ConversationFilter(
        FilterSettings(config.grounding_threshold, config.min_client_words, config.max_client_words)
    )
    written = assemble(config, units, journal, words, heldout, keep)
    write_json(config.out, written["train"])
    write_json(config.beside_out("heldout.json"), written["heldout"])
    config_dict = dataclasses.asdict(config)
    config.beside_out("config.yaml").write_text(
        yaml.safe_dump(json.loads(json.dumps(config_dict, default=str)), sort_keys=False), encoding="utf-8"
    )
    all_written = written["train"] + written["heldout"]
    stats = {
        "speaker": config.speaker,
        "mode": config.mode,
        "domain": config.domain,
        "generator": generator.identity(),
        "files": {
            "found": ingest.files,
            "read": ingest.read,
            "skipped": dict(ingest.skipped),
            "skipped_examples": ingest.examples,
        },
        "lectures": {
            "read": len(transcripts),
            "heldout": sorted(heldout),
            "titled": sum(t is not None for t in titles.values()),
        },
        "passages": {
            "made": passage_count,
            "kept": len(passages),
            "words": describe([p.words for p in passages]),
            "dropped": dict(chunking),
        },
        "units": len(units),
        "generation": {**generation, "journal_torn_lines": journal.torn_lines},
        "filters": {
            "exchanges_dropped": dict(keep.counts.exchanges_dropped),
            "conversations_dropped": dict(keep.counts.conversations_dropped),
            "conversations_trimmed": keep.counts.conversations_trimmed,
        },
        "conversations": {
            "train": len(written["train"]),
            "heldout": len(written["heldout"]),
            "turns": describe([len(c["messages"]) for c in all_written]),
        },
        "outputs": {
            "conversations": str(config.out),
            "heldout": str(config.beside_out("heldout.json")),
            "style_profile": str(config.beside_out("style_profile.json")),
            "journal": str(config.journal_path),
        },
    }
    write_json(config.beside_out("stats.json"), stats)
    log.info(
        "voice build: %d train + %d held-out conversations from %d lectures (%s)",
        len(written["train"]),
        len(written["heldout"]),
        len(transcripts),
        config.out,
    )
    return stats
