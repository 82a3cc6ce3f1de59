"""Every setting of a voice build, in one place: the CLI flags and the YAML keys come from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

MODES = ("backtranslation", "multiturn", "offline")
# Complex-trauma psychoeducation: how trauma shapes shame, attachment and coping, and how people
# recover. It is about mental-health conditions for the people living with them, so the
# mental_health expert; set `domain` for another speaker.
DEFAULT_DOMAIN = "mental_health"


@dataclass
class OpenAISettings:
    """Any OpenAI-compatible /chat/completions server (OpenAI, vLLM, llama.cpp, Ollama)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"  # the name of the variable; the key itself is never a setting
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0
    temperature: float = 0.8
    max_tokens: int = 200


@dataclass
class LocalSettings:
    """A local causal LM: a model folder, or `tiny` (the built-in random-weight test model)."""

    model: str = ""
    max_new_tokens: int = 120
    temperature: float = 0.8
    top_p: float = 0.95
    batch_size: int = 8
    device: str = "auto"  # auto: cuda when available, else cpu
    seed: int = 0


@dataclass
class BuildConfig:
    """A voice build: transcripts -> grounded synthetic conversations for stage 3.

    Args:
        transcripts: folder searched recursively for .txt, .vtt, .srt and .json transcripts.
        out: the conversations file (JSON array); held-out set, stats, style profile, journal and
            the saved config are written beside it as `<stem>_heldout.json` and so on.
        speaker: the lecturer's name (prompts, style profile, capitalised in his text).
        mode: backtranslation (client message per passage), multiturn (several passages of one
            lecture become one conversation), offline (the speaker's own questions, no model).
        generator: who writes the client side; `none` only with mode offline.
        domain: the expert-domain label on every conversation.
        min_words: a passage (assistant turn) has at least this many words...
        max_words: ...and at most this many.
        passages_per_conversation: multiturn: assistant turns per conversation (2-5 -> 4-10 turns).
        dedup_threshold: MinHash Jaccard above which two passages are near-duplicates.
        min_question_words: offline: shorter speaker questions ("Right?") are not used.
        grounding_threshold: an assistant turn must match its transcript span at least this much.
        min_client_words: shortest client message kept.
        max_client_words: longest client message kept.
        heldout_fraction: share of lectures held out whole for the voice evaluation.
        heldout_lectures: explicit held-out lecture ids (overrides heldout_fraction).
        punctuation_model: local token-classification punctuation model folder; rules when unset.
        proper_nouns: names capitalised in the speaker's text (the speaker's name always is).
        journal: append-only journal for resuming; default `<out stem>_journal.jsonl` beside out.
        batch_size: units generated per round (one journal write each).
        openai: settings of the OpenAI-compatible backend.
        local: settings of the local transformers backend.
    """

    transcripts: Path
    out: Path
    speaker: str
    mode: Literal["backtranslation", "multiturn", "offline"] = "offline"
    generator: Literal["openai", "local", "none"] = "none"
    domain: str = DEFAULT_DOMAIN
    min_words: int = 150
    max_words: int = 400
    passages_per_conversation: int = 3
    dedup_threshold: float = 0.8
    min_question_words: int = 4
    grounding_threshold: float = 0.9
    min_client_words: int = 3
    max_client_words: int = 150
    heldout_fraction: float = 0.1
    heldout_lectures: list[str] = field(default_factory=list)
    punctuation_model: Path | None = None
    proper_nouns: list[str] = field(default_factory=list)
    journal: Path | None = None
    batch_size: int = 32
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    local: LocalSettings = field(default_factory=LocalSettings)

    def __post_init__(self) -> None:
        self.transcripts, self.out = Path(self.transcripts), Path(self.out)
        self.punctuation_model = Path(self.punctuation_model) if self.punctuation_model else None
        self.journal = Path(self.journal) if self.journal else None
        if isinstance(self.openai, dict):  # from a plain YAML/JSON mapping in Python callers
            self.openai = OpenAISettings(**self.openai)
        if isinstance(self.local, dict):
            self.local = LocalSettings(**self.local)
        problems = []
        if not self.speaker.strip():
            problems.append("speaker is empty: set --speaker NAME")
        if not self.domain.strip():
            problems.append("domain is empty")
        if not 0 < self.min_words <= self.max_words:
            problems.append(f"need 0 < min_words <= max_words, got {self.min_words} and {self.max_words}")
        if not 2 <= self.passages_per_conversation <= 5:
            problems.append("passages_per_conversation must be 2-5 (4-10 turns)")
        if not 0 < self.dedup_threshold <= 1 or not 0 <= self.grounding_threshold <= 1:
            problems.append("dedup_threshold and grounding_threshold are fractions (0-1]")
        if not 0 <= self.heldout_fraction < 1:
            problems.append("heldout_fraction must be in [0, 1)")
        if self.mode != "offline" and self.generator == "none":
            problems.append(
                f"mode {self.mode} needs a generator: --generator openai or local "
                "(or --mode offline, which needs none)"
            )
        if self.generator == "openai" and self.mode != "offline" and not self.openai.model:
            problems.append("generator openai needs --openai.model")
        if self.generator == "local" and self.mode != "offline" and not self.local.model:
            problems.append("generator local needs --local.model (a model folder or `tiny`)")
        if self.out.suffix != ".json":
            problems.append(f"out must be a .json file, got {self.out}")
        if problems:
            raise ValueError("voice build settings: " + "; ".join(problems))

    def beside_out(self, suffix: str) -> Path:
        return self.out.with_name(f"{self.out.stem}_{suffix}")

    @property
    def journal_path(self) -> Path:
        return self.journal or self.beside_out("journal.jsonl")
