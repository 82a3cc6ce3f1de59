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
class JudgeEndpoint:
    """An OpenAI-compatible judge (a model other than the generator's is best): risk verdicts beside
    the rules, faithfulness of written replies by claims, and the curation scores. Unset: rules and
    the lexical tripwire alone, and no curation."""

    base_url: str = ""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0
    temperature: float = 0.0
    max_tokens: int = 400
    guided_json: bool = False  # ask for the rubric's JSON schema (vLLM and OpenAI decode to it)

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)


@dataclass
class LocalSettings:
    """A local causal LM: a model folder, `tiny` (the built-in random-weight test model) or `smollm2`
    (SmolLM2-135M-Instruct from its PyPI wheel, as every other command accepts)."""

    model: str = ""
    max_new_tokens: int = 120
    temperature: float = 0.8
    top_p: float = 0.95
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
        mode: who writes the client turns and how many: backtranslation (a generator, one exchange
            per conversation), multiturn (a generator, `passages_per_conversation` exchanges),
            offline (persona templates and the speaker's own questions, no model; 1 to
            `passages_per_conversation` exchanges). Every conversation starts from one passage (its
            topic); every reply is retrieved for the client turn it answers.
        generator: who writes the client side; `none` only with mode offline.
        domain: the expert-domain label on every conversation.
        min_words: a passage (retrieval unit and conversation seed) has at least this many words...
        max_words: ...and at most this many.
        reply_min_words: a reply (the trimmed span) has at least this many words...
        reply_max_words: ...and at most this many (unless one sentence is longer).
        reply: verbatim (the span itself) or rewrite (the generator writes the reply from the
            conversation so far, the passage and his style card; with a judge, dropped when it claims
            what the passage does not hold; `min_faithful_words` and `min_faithful_ngrams` are only a
            lexical tripwire).
        risk: a client turn that discloses risk gets a safe reply pointing to help and ends the
            conversation (respond), or the conversation ends before it (drop).
        risk_example_share: offline: share of conversations whose last client turn is a disclosure,
            so the data shows the safe reply.
        min_answer_score: a client turn whose best passage scores below this TF-IDF cosine ends
            the conversation instead of getting an unrelated passage.
        passages_per_conversation: the most exchanges per conversation (2-5 -> up to 4-10 turns).
        dedup_threshold: MinHash Jaccard above which two passages are near-duplicates.
        min_question_words: offline: shorter speaker questions ("Right?") are not asked.
        grounding_threshold: a verbatim reply must match its transcript span at least this much.
        min_faithful_words: rewrite tripwire: share of the reply's content words found in its passage.
        min_faithful_ngrams: rewrite tripwire: share of the reply's word 3-grams found in its passage.
        max_span_uses: a lecture sentence is in the verbatim replies of at most this many conversations.
        curate_min_score: with a judge, an exchange is kept when each of its four curation scores
            (client realistic, reply answers it, sounds like him, safe; anchored 1-5) is at least this.
        min_client_words: shortest client message kept.
        max_client_words: longest client message kept.
        heldout_fraction: share of lectures held out whole for the voice evaluation.
        heldout_lectures: explicit held-out lecture ids (overrides heldout_fraction).
        punctuation_model: local token-classification punctuation model folder; rules when unset.
        max_rule_punctuated_share: the stats warn when more of the lectures than this share went
            through rule punctuation (caption text without marks and no punctuation_model).
        proper_nouns: names capitalised in the speaker's text (the speaker's name always is).
        journal: append-only journal for resuming; default `<out stem>_journal.jsonl` beside out.
        batch_size: finished conversations per journal write (the worker pool itself runs across
            the whole build, `openai.concurrency` requests at a time).
        openai: settings of the OpenAI-compatible backend.
        local: settings of the local transformers backend.
        judge: an OpenAI-compatible judge (risk verdicts, faithfulness by claims, curation); unset: none.
    """

    transcripts: Path
    out: Path
    speaker: str
    mode: Literal["backtranslation", "multiturn", "offline"] = "offline"
    generator: Literal["openai", "local", "none"] = "none"
    domain: str = DEFAULT_DOMAIN
    min_words: int = 150
    max_words: int = 400
    reply_min_words: int = 40
    reply_max_words: int = 150
    reply: Literal["verbatim", "rewrite"] = "verbatim"
    risk: Literal["respond", "drop"] = "respond"
    risk_example_share: float = 0.03
    min_answer_score: float = 0.05
    passages_per_conversation: int = 3
    dedup_threshold: float = 0.8
    min_question_words: int = 4
    grounding_threshold: float = 0.9
    min_faithful_words: float = 0.5
    min_faithful_ngrams: float = 0.1
    max_span_uses: int = 2
    curate_min_score: int = 4
    min_client_words: int = 3
    max_client_words: int = 150
    heldout_fraction: float = 0.1
    heldout_lectures: list[str] = field(default_factory=list)
    punctuation_model: Path | None = None
    max_rule_punctuated_share: float = 0.2
    proper_nouns: list[str] = field(default_factory=list)
    journal: Path | None = None
    batch_size: int = 32
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    judge: JudgeEndpoint = field(default_factory=JudgeEndpoint)

    def __post_init__(self) -> None:
        self.transcripts, self.out = Path(self.transcripts), Path(self.out)
        self.punctuation_model = Path(self.punctuation_model) if self.punctuation_model else None
        self.journal = Path(self.journal) if self.journal else None
        if isinstance(self.openai, dict):  # from a plain YAML/JSON mapping in Python callers
            self.openai = OpenAISettings(**self.openai)
        if isinstance(self.local, dict):
            self.local = LocalSettings(**self.local)
        if isinstance(self.judge, dict):
            self.judge = JudgeEndpoint(**self.judge)
        problems = []
        if not self.speaker.strip():
            problems.append("speaker is empty: set --speaker NAME")
        if not self.domain.strip():
            problems.append("domain is empty")
        if not 0 < self.min_words <= self.max_words:
            problems.append(f"need 0 < min_words <= max_words, got {self.min_words} and {self.max_words}")
        if not 0 < self.reply_min_words <= self.reply_max_words:
            problems.append(
                "need 0 < reply_min_words <= reply_max_words, "
                f"got {self.reply_min_words} and {self.reply_max_words}"
            )
        if self.reply == "rewrite" and self.generator == "none":
            problems.append("reply rewrite needs a generator: --generator openai or local")
        if not 0 <= self.risk_example_share < 1 or not 0 <= self.min_answer_score < 1:
            problems.append("risk_example_share and min_answer_score are fractions [0, 1)")
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
        if self.generator == "openai" and self.uses_generator and not self.openai.model:
            problems.append("generator openai needs --openai.model")
        if self.generator == "local" and self.uses_generator and not self.local.model:
            problems.append("generator local needs --local.model (a model folder, `tiny` or `smollm2`)")
        if self.out.suffix != ".json":
            problems.append(f"out must be a .json file, got {self.out}")
        if self.max_span_uses < 1 or not 1 <= self.curate_min_score <= 5:
            problems.append("max_span_uses must be >= 1 and curate_min_score 1-5")
        if problems:
            raise ValueError("voice build settings: " + "; ".join(problems))

    @property
    def uses_generator(self) -> bool:
        """Offline client turns need no model; generated ones and rewritten replies do."""
        return self.mode != "offline" or self.reply == "rewrite"

    def beside_out(self, suffix: str) -> Path:
        return self.out.with_name(f"{self.out.stem}_{suffix}")

    @property
    def journal_path(self) -> Path:
        return self.journal or self.beside_out("journal.jsonl")
