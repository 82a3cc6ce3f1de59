"""The voice build's judge: risk verdicts beside the rules, faithfulness of written replies by
claims, and the curation scores of every exchange.

It is the evaluation's judge (evals/judge.py: the shared client, `judge_messages`,
`parse_judgement`) with the voice rubrics of datamodules/voice/rubrics.yaml. The lecture passage and
the style card travel as system messages of the conversation being judged. A judge answer that
fails or is malformed is counted and gives None: the caller falls back to its rules and never
keeps an exchange on a verdict it did not get. Conversation text goes only to the configured
endpoint and is never logged.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from datamodules.voice.config import JudgeEndpoint
from datamodules.voice.risk import KINDS, Risk, local_risk
from evals.judge import (
    JudgeClient,
    JudgeError,
    MalformedJudgement,
    judge_messages,
    load_rubrics,
    parse_judgement,
)
from evals.settings import JudgeSettings

RUBRICS = load_rubrics(Path(__file__).parent / "rubrics.yaml")
EXCHANGE_FIELDS = tuple(RUBRICS["exchange"].fields)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Verdict:
    scores: dict[str, int]
    reason: str


def rationale(text: str) -> str:
    """The rationale of a judge answer that parse_judgement accepted (it holds one)."""
    start = text.find("{")
    answer, _ = json.JSONDecoder().raw_decode(text[start:].replace("```", ""))
    return " ".join(str(answer["rationale"]).split())


class VoiceJudge:
    def __init__(self, endpoint: JudgeEndpoint, generator_model: str = ""):
        settings = JudgeSettings(
            base_url=endpoint.base_url,
            model=endpoint.model,
            api_key_env=endpoint.api_key_env,
            temperature=endpoint.temperature,
            max_tokens=endpoint.max_tokens,
            timeout_s=endpoint.timeout_s,
            max_retries=endpoint.max_retries,
            backoff_s=endpoint.backoff_s,
            concurrency=endpoint.concurrency,
            calibration_replies=0,
            guided_json=endpoint.guided_json,
        )
        # the generator must not grade its own writing
        self.client = JudgeClient(settings, under_test=[generator_model] if generator_model else [])
        self.counts: Counter = Counter()
        self.lock = threading.Lock()

    def identity(self) -> dict:
        return {"model": self.client.settings.model, "temperature": self.client.settings.temperature}

    def verdict(self, rubric_name: str, conversation: Messages, rated: str) -> Verdict | None:
        rubric = RUBRICS[rubric_name]
        try:
            answer = self.client.complete(judge_messages(rubric, conversation, rated), rubric)
            scores = parse_judgement(answer, rubric)
        except JudgeError:
            self.count(f"{rubric_name}_failed")
            return None
        except MalformedJudgement:
            self.count(f"{rubric_name}_malformed")
            return None
        self.count(f"{rubric_name}_judged")
        return Verdict(scores, rationale(answer))

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def risk(self, text: str) -> Risk | None:
        """The judge's risk verdict on one client message, or None when it gave none."""
        verdict = self.verdict("disclosure", [], text)
        if verdict is None:
            return None
        kind_number = verdict.scores["kind"]
        detected = bool(verdict.scores["discloses"])
        kind = KINDS[kind_number - 1] if detected and kind_number else ("suicide" if detected else None)
        return Risk(detected, kind, f"judge: {verdict.reason}")

    def faithful(self, passage: str, history: Messages, reply: str) -> Verdict | None:
        """`unsupported` 1 when the reply claims what the passage does not hold."""
        context = [{"role": "system", "content": f"Passage from his lecture:\n{passage}"}, *history]
        return self.verdict("faithful", context, reply)

    def exchange(self, passage: str, style_card: str, history: Messages, reply: str) -> Verdict | None:
        """Anchored 1-5 scores of the last client message and the reply (EXCHANGE_FIELDS)."""
        context = [
            {"role": "system", "content": f"Passage from his lecture:\n{passage}"},
            {"role": "system", "content": f"His style card:\n{style_card}"},
            *history,
        ]
        return self.verdict("exchange", context, reply)


def detect(text: str, judge: VoiceJudge | None) -> Risk:
    """Rules and classifier first (a floor the judge cannot lower); the judge adds what they missed."""
    by_rules = local_risk(text)
    if by_rules.detected or judge is None:
        return by_rules
    by_judge = judge.risk(text)
    if by_judge is None:
        return Risk(False, None, f"{by_rules.reason}; the judge gave no verdict")
    return by_judge
