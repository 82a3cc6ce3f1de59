"""One voice build, top to bottom: read, clean, punctuate, chunk, dedup, profile, index, write
conversations (one worker pool across the build, journalled), filter, split off held-out lectures,
write.

Every conversation starts from one passage (its topic). Each client turn, written by the offline
templates or a generator from a persona and the conversation so far, is answered from the passage
of that lecture that matches it (datamodules/voice/retrieve.py), never simply the next chunk; a risk
disclosure is answered with a safe reply instead (datamodules/voice/risk.py). Replies are the
speaker's own words: a verbatim span that stands alone, or with `reply: rewrite` a reply written
from the conversation, the passage and his style card, kept when the judge finds no claim the
passage does not hold. With a judge, every exchange is scored and only the well-scored are kept.

Offline (templates, verbatim spans, no model) the result tests the plumbing; it is not a voice
corpus, and its stats say so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import statistics
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import yaml
from tqdm import tqdm

from datamodules.voice.chunk import Passage, chunk, drop_near_duplicates
from datamodules.voice.clients import GeneratorClient, Plan, TemplateClient
from datamodules.voice.config import BuildConfig
from datamodules.voice.converse import TurnSettings, converse
from datamodules.voice.filters import ConversationFilter, FilterSettings
from datamodules.voice.generators import Generator, check_local_model, make_generator
from datamodules.voice.ingest import read_transcripts
from datamodules.voice.journal import Journal, JournalMismatch
from datamodules.voice.judged import EXCHANGE_FIELDS, VoiceJudge
from datamodules.voice.prompts import PROMPT_VERSION
from datamodules.voice.boilerplate import strip_boilerplate
from datamodules.voice.punctuate import ModelPunctuator, Punctuator, RulePunctuator, is_punctuated
from datamodules.voice.retrieve import PassageIndex
from datamodules.voice.spans import SpanLedger
from datamodules.voice.style import style_card, style_profile

log = logging.getLogger(__name__)

SOURCE = "voice"
PURPOSE = {
    "offline": (
        "plumbing-test data: template client turns and verbatim lecture spans, no model. It checks the "
        "pipeline end to end; it is not a voice corpus (use a generator with reply: rewrite and a judge)"
    ),
    "generated": "stage-3 voice data: generated client turns answered from his lectures",
}


class VoiceBuildError(ValueError):
    """The build cannot write a usable file; the message says why and what was counted."""


def stable_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def make_plans(config: BuildConfig, passages: list[Passage]) -> list[Plan]:
    """One conversation per passage, keyed by its text (stable as lectures are added)."""
    plans = []
    for row, passage in enumerate(passages):
        key = stable_hash(json.dumps([config.mode, passage.lecture_id, passage.text]))
        variant = int(key[:8], 16)
        if config.mode == "backtranslation":
            turns = 1
        elif config.mode == "multiturn":
            turns = config.passages_per_conversation
        else:
            turns = 1 + variant % config.passages_per_conversation
        discloses = config.mode == "offline" and int(key[8:16], 16) / 16**8 < config.risk_example_share
        # the disclosure comes early (turn 1 or 2), so the conversation reaches it
        disclose_at = min(1, turns - 1) if discloses else None
        plans.append(Plan(key, passage.lecture_id, row, turns, variant, disclose_at))
    return plans


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


def write_conversations(
    plans: list[Plan],
    write_one: Callable[[Plan], dict | None],
    journal: Journal,
    workers: int,
    batch_size: int,
) -> Counter:
    """Every unit the journal lacks, on ONE pool of `workers` threads for the whole build (no
    rounds: a slow request holds up only its own conversation). Finished conversations are
    journalled `batch_size` at a time and whatever finished is journalled even when the build stops
    (an auth error, Ctrl-C), so the next run resumes from there."""
    pending = [p for p in plans if p.key not in journal.records]
    counts: Counter = Counter(reused_from_journal=len(plans) - len(pending), generated_now=0, failed=0)
    buffer: list[dict] = []

    def finished(record: dict | None) -> None:
        if record is None:
            counts["failed"] += 1
            return
        buffer.append(record)
        counts["generated_now"] += 1
        if len(buffer) >= batch_size:
            journal.add(buffer)
            buffer.clear()

    with tqdm(total=len(plans), initial=len(plans) - len(pending), desc="conversations", unit="conv") as bar:
        try:
            if workers <= 1:
                for plan in pending:
                    finished(write_one(plan))
                    bar.update()
            else:
                pool = ThreadPoolExecutor(max_workers=workers)
                try:
                    for future in as_completed([pool.submit(write_one, plan) for plan in pending]):
                        finished(future.result())
                        bar.update()
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
        finally:
            journal.add(buffer)
    return counts


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
    plans: list[Plan],
    journal: Journal,
    words: dict[str, list[str]],
    heldout: set[str],
    keep: ConversationFilter,
    index: PassageIndex,
) -> tuple[dict[str, list[dict]], Counter, Counter]:
    """Conversations in the stage-3 schema from the journal, filtered, in plan order (so the
    duplicate-client filter decides the same way on every run), split into train and held-out;
    with how the conversations ended and the risk disclosures, by kind."""
    written: dict[str, list[dict]] = {"train": [], "heldout": []}
    ended: Counter = Counter()
    risks: Counter = Counter()
    for plan in plans:
        record = journal.records.get(plan.key)
        if record is None:
            continue  # failed this run: written again next run
        ended[record["status"]] += 1
        if record.get("risk"):
            risks[record["risk"]] += 1
        lecture_words = words[plan.lecture_id]
        exchanges = [
            (
                e["client"],
                e["reply"],
                " ".join(lecture_words[e["span"][0] : e["span"][1]]) if "span" in e else "",
                e["kind"],
                {
                    **{k: e[k] for k in ("faithful", "curation") if k in e},
                    "sentences": [
                        (plan.lecture_id, s) for s in index.sentence_starts(plan.lecture_id, *e["span"])
                    ]
                    if e["kind"] == "verbatim"
                    else [],
                },
            )
            for e in record["exchanges"]
        ]
        minimum = 2 if config.mode == "multiturn" else 1
        messages = keep(exchanges, min_exchanges=minimum) if exchanges else None
        if messages:
            written["heldout" if plan.lecture_id in heldout else "train"].append(
                {
                    "messages": messages,
                    "domain": config.domain,
                    "lecture_id": plan.lecture_id,
                    "source": SOURCE,
                    "mode": config.mode,
                }
            )
    return written, ended, risks


def curation_stats(plans: list[Plan], journal: Journal, keep: ConversationFilter, judge: VoiceJudge | None) -> dict:
    """Per field, how many exchanges got each 1-5 score; the lowest score's histogram (what decides
    keeping); the share of judged exchanges kept."""
    if judge is None:
        return {"judge": None}
    fields = {name: Counter() for name in EXCHANGE_FIELDS}
    lowest: Counter = Counter()
    judged = 0
    for plan in plans:
        for exchange in journal.records.get(plan.key, {}).get("exchanges", []):
            scores = exchange.get("curation", {}).get("scores")
            if scores:
                judged += 1
                lowest[min(scores.values())] += 1
                for name, value in scores.items():
                    fields[name][value] += 1
    below = keep.counts.exchanges_dropped.get("curation", 0)
    return {
        "judge": judge.identity(),
        "min_score": keep.settings.curate_min_score,
        "judged_exchanges": judged,
        "kept_share": round(1 - below / judged, 4) if judged else 0.0,
        "lowest_score_histogram": {str(k): lowest[k] for k in range(1, 6)},
        "histograms": {name: {str(k): c[k] for k in range(1, 6)} for name, c in fields.items()},
        "judge_calls": dict(judge.counts),
    }


def replay_spans(plans: list[Plan], journal: Journal, index: PassageIndex, ledger: SpanLedger) -> None:
    """The ledger learns the verbatim spans of conversations already journalled (a resumed build
    keeps the reuse limit across runs)."""
    for plan in plans:
        for exchange in journal.records.get(plan.key, {}).get("exchanges", []):
            if exchange.get("kind") == "verbatim":
                start, end = exchange["span"]
                ledger.record(plan.lecture_id, index.sentence_starts(plan.lecture_id, start, end))


def span_stats(config: BuildConfig, written: list[dict], journal: Journal, plans: list[Plan], words: dict) -> dict:
    """How much of the lecture text the verbatim replies use, and how often a span recurs."""
    used: dict[str, set[int]] = {}
    repeats: Counter = Counter()
    for plan in plans:
        for exchange in journal.records.get(plan.key, {}).get("exchanges", []):
            if exchange.get("kind") == "verbatim":
                start, end = exchange["span"]
                used.setdefault(plan.lecture_id, set()).update(range(start, end))
                repeats[(plan.lecture_id, start, end)] += 1
    total = sum(len(w) for w in words.values())
    return {
        "max_uses": config.max_span_uses,
        "lecture_words_used_share": round(sum(len(u) for u in used.values()) / total, 4) if total else 0.0,
        "most_conversations_per_span": max(repeats.values(), default=0),
    }


def punctuate_all(config: BuildConfig, transcripts: list, punctuator: Punctuator) -> tuple[dict[str, str], dict]:
    """Every lecture punctuated and stripped of boilerplate; how many needed punctuation from the
    rules (caption text without marks and no punctuation model), with a warning above
    `max_rule_punctuated_share`: rule-punctuated text has no commas and long sentences."""
    punctuated: dict[str, str] = {}
    counts: Counter = Counter()
    for t in tqdm(transcripts, desc="punctuating", unit="lecture"):
        already = is_punctuated(t.text)
        counts["already_punctuated" if already else ("model" if config.punctuation_model else "rules")] += 1
        punctuated[t.lecture_id], removed = strip_boilerplate(punctuator(t.text))
        counts["boilerplate_sentences_removed"] += removed
    share = counts["rules"] / len(transcripts)
    stats = {
        "already_punctuated": counts["already_punctuated"],
        "by_model": counts["model"],
        "by_rules": counts["rules"],
        "rule_share": round(share, 4),
        "boilerplate_sentences_removed": counts["boilerplate_sentences_removed"],
        "warning": None,
    }
    if share > config.max_rule_punctuated_share:
        stats["warning"] = (
            f"{counts['rules']} of {len(transcripts)} lectures were punctuated by rules (no commas, long "
            "sentences): set punctuation_model to a local punctuation model"
        )
        log.warning(stats["warning"])
    return punctuated, stats


def open_journal(config: BuildConfig, generator: Generator, judge: VoiceJudge | None) -> Journal:
    header = {
        "generator": generator.identity(),
        "judge": judge.identity() if judge else None,
        "prompt_version": PROMPT_VERSION,
        "turns": {
            k: getattr(config, k)
            for k in (
                "reply",
                "risk",
                "risk_example_share",
                "reply_min_words",
                "reply_max_words",
                "min_answer_score",
                "passages_per_conversation",
                "min_question_words",
                "max_span_uses",
            )
        },
    }
    try:
        return Journal(config.journal_path, header)
    except JournalMismatch:
        if config.uses_generator:
            raise
        # offline conversations cost nothing to write again: start the journal over
        log.info("offline build settings changed: %s is written again", config.journal_path)
        config.journal_path.unlink()
        return Journal(config.journal_path, header)


def check_model_paths(config: BuildConfig) -> None:
    """Stop on a missing model folder before any transcript is read or model loaded."""
    if config.punctuation_model and not config.punctuation_model.is_dir():
        raise FileNotFoundError(f"punctuation_model folder {config.punctuation_model} does not exist")
    if config.generator == "local" and config.uses_generator:
        check_local_model(config.local.model)


def build(config: BuildConfig, generator: Generator | None = None) -> dict:
    """Run a build; returns the summary stats (also written to `<out stem>_stats.json`). Raises
    VoiceBuildError (after writing the stats) when it would write no training conversation."""
    check_model_paths(config)
    transcripts, ingest = read_transcripts(config.transcripts)
    files = {
        "found": ingest.files,
        "read": ingest.read,
        "skipped": dict(ingest.skipped),
        "listing": ingest.listing,
    }
    if not transcripts:
        raise VoiceBuildError(
            f"no readable transcript in {config.transcripts} (skipped: {dict(ingest.skipped)}; "
            f"e.g. {ingest.examples[:3]})"
        )
    names = [config.speaker, *config.proper_nouns]
    punctuator: Punctuator = (
        ModelPunctuator(config.punctuation_model, names)
        if config.punctuation_model
        else RulePunctuator(names)
    )
    punctuated, punctuation = punctuate_all(config, transcripts, punctuator)
    # spans index these words: the lecture as punctuated, boilerplate and openings removed
    words = {lecture_id: text.split() for lecture_id, text in punctuated.items()}
    titles = {t.lecture_id: t.title for t in transcripts}
    heldout = heldout_lectures(list(punctuated), config.heldout_fraction, config.heldout_lectures)

    profile = style_profile(config.speaker, punctuated, titles, heldout)
    write_json(config.beside_out("style_profile.json"), profile)

    chunking: Counter = Counter()
    passages: list[Passage] = []
    for lecture_id, text in punctuated.items():
        passages += chunk(lecture_id, text, config.min_words, config.max_words, chunking)
    passage_count = len(passages)
    passages = drop_near_duplicates(passages, config.dedup_threshold, chunking)
    if not passages:
        raise VoiceBuildError(
            f"no passage of {config.min_words}+ words in {len(transcripts)} lecture(s) "
            f"(dropped: {dict(chunking)}): lower --min_words or add longer transcripts"
        )
    index = PassageIndex(passages)
    plans = make_plans(config, passages)

    generator = generator or make_generator(
        config.generator if config.uses_generator else "none", config.openai, config.local
    )
    judge = VoiceJudge(config.judge, generator.identity().get("model", "")) if config.judge.configured else None
    journal = open_journal(config, generator, judge)
    workers = generator.workers if config.uses_generator else 1
    # Retrieval steers away from used-up spans when conversations are written one after another
    # (so a resumed build decides as an uninterrupted one); the filter enforces the cap in plan
    # order either way.
    ledger = SpanLedger(config.max_span_uses) if workers == 1 else None
    if ledger is not None:
        replay_spans(plans, journal, index, ledger)
    client = (
        GeneratorClient(generator, index, config.speaker, profile)
        if config.mode != "offline"
        else TemplateClient(index, config.min_question_words, profile)
    )
    turn_settings = TurnSettings(
        config.speaker,
        config.reply,
        config.risk,
        config.reply_min_words,
        config.reply_max_words,
        config.min_answer_score,
        style_card(profile),
    )
    rewriter = generator if config.reply == "rewrite" else None
    generation = write_conversations(
        plans,
        lambda plan: converse(plan, client, index, turn_settings, rewriter, judge, ledger),
        journal,
        workers,
        config.batch_size,
    )

    keep = ConversationFilter(
        FilterSettings(
            config.grounding_threshold,
            config.min_client_words,
            config.max_client_words,
            config.min_faithful_words,
            config.min_faithful_ngrams,
            config.curate_min_score if judge else None,
            config.speaker,
            config.max_span_uses,
        )
    )
    written, ended, risks = assemble(config, plans, journal, words, heldout, keep, index)
    write_json(config.out, written["train"])
    write_json(config.beside_out("heldout.json"), written["heldout"])
    config_dict = dataclasses.asdict(config)
    config.beside_out("config.yaml").write_text(
        yaml.safe_dump(json.loads(json.dumps(config_dict, default=str)), sort_keys=False), encoding="utf-8"
    )
    all_written = written["train"] + written["heldout"]
    replies = [m["content"] for c in all_written for m in c["messages"][1::2]]
    stats = {
        "speaker": config.speaker,
        "purpose": PURPOSE["offline" if config.mode == "offline" and config.reply == "verbatim" else "generated"],
        "mode": config.mode,
        "reply": config.reply,
        "domain": config.domain,
        "generator": generator.identity(),
        "files": files,
        "lectures": {
            "read": len(transcripts),
            "heldout": sorted(heldout),
            "titled": sum(t is not None for t in titles.values()),
        },
        "punctuation": punctuation,
        "passages": {
            "made": passage_count,
            "kept": len(passages),
            "words": describe([p.words for p in passages]),
            "dropped": dict(chunking),
        },
        "units": len(plans),
        "generation": {
            **generation,
            "refused": ended["refused"],
            "journal_torn_lines": journal.torn_lines,
        },
        "ended": dict(ended),
        "risk": {
            "policy": config.risk,
            "disclosures": sum(risks.values()),
            "by_kind": dict(risks),
            "answered_safely": ended["risk_respond"],
            "dropped": ended["risk_drop"],
        },
        "curation": curation_stats(plans, journal, keep, judge),
        "spans": span_stats(config, all_written, journal, plans, words),
        "filters": {
            "exchanges_dropped": dict(keep.counts.exchanges_dropped),
            "conversations_dropped": dict(keep.counts.conversations_dropped),
            "conversations_trimmed": keep.counts.conversations_trimmed,
        },
        "conversations": {
            "train": len(written["train"]),
            "heldout": len(written["heldout"]),
            "turns": describe([len(c["messages"]) for c in all_written]),
            "reply_words": describe([len(r.split()) for r in replies]),
        },
        "outputs": {
            "conversations": str(config.out),
            "heldout": str(config.beside_out("heldout.json")),
            "style_profile": str(config.beside_out("style_profile.json")),
            "journal": str(config.journal_path),
        },
    }
    write_json(config.beside_out("stats.json"), stats)
    if not written["train"]:
        raise VoiceBuildError(
            f"no training conversation written from {len(transcripts)} lecture(s), {len(plans)} units "
            f"(ended: {dict(ended)}; dropped: {dict(keep.counts.conversations_dropped)}; "
            f"generation failed for {generation['failed']}); see {config.beside_out('stats.json')}"
        )
    log.info(
        "voice build: %d train + %d held-out conversations from %d lectures (%s)",
        len(written["train"]),
        len(written["heldout"]),
        len(transcripts),
        config.out,
    )
    return stats
