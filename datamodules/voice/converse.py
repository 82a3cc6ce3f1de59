"""One conversation, turn by turn: a client turn, the passage that answers it, the reply.

Each client turn is checked for a risk disclosure first (rules, plus the judge when configured:
datamodules/voice/judged.py): it is then answered with a safe reply that points to help and the
conversation ends, or the conversation ends before it (`risk: drop`). Otherwise the turn is answered
from the passage of the lecture that matches it best and that this conversation has not used yet:
a verbatim span that stands alone and that at most `max_span_uses` conversations share, or
(`reply: rewrite`) the generator's reply written from the conversation so far, that passage and the
speaker's style card, which may acknowledge the person before it explains in his words. With a
judge, a rewrite's claims are checked against the passage, and every exchange gets the curation
scores; both verdicts are journalled with the exchange. A turn no passage answers well enough
(cosine below `min_answer_score`) ends the conversation rather than getting an unrelated lecture.

The result is a journal record: every exchange with the word span it came from, and why the
conversation stopped. `None` means a request failed after its retries: nothing is journalled and
the unit is written again on the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datamodules.voice.clients import ClientWriter, Plan
from datamodules.voice.generators import Generator, ItemRefused, Unavailable
from datamodules.voice.judged import VoiceJudge, detect
from datamodules.voice.prompts import rewrite_prompt, tidy_client
from datamodules.voice.retrieve import PassageIndex
from datamodules.voice.risk import safe_reply
from datamodules.voice.spans import SpanLedger


@dataclass(frozen=True)
class TurnSettings:
    speaker: str
    reply: str  # verbatim | rewrite
    risk: str  # respond | drop
    reply_min_words: int
    reply_max_words: int
    min_answer_score: float
    style_card: str = ""


def converse(
    plan: Plan,
    client: ClientWriter,
    index: PassageIndex,
    settings: TurnSettings,
    rewriter: Generator | None = None,
    judge: VoiceJudge | None = None,
    ledger: SpanLedger | None = None,
) -> dict[str, Any] | None:
    exchanges: list[dict[str, Any]] = []
    used: set[int] = set()
    status, risk = "complete", None
    try:
        for turn in range(plan.turns):
            history = [(e["client"], e["reply"]) for e in exchanges]
            written = client.opening(plan) if turn == 0 else client.follow_up(plan, history)
            if written is None:
                status = "no_follow_up"
                break
            message = tidy_client(written)
            history = [
                m
                for e in exchanges
                for m in ({"role": "user", "content": e["client"]}, {"role": "assistant", "content": e["reply"]})
            ] + [{"role": "user", "content": message}]
            verdict = detect(message, judge)
            if verdict.detected:
                risk = verdict.kind
                if settings.risk == "respond":
                    reply = safe_reply(risk, plan.variant)
                    exchange = {"client": message, "reply": reply, "kind": "safe", "risk": risk}
                    exchanges.append(curated(exchange, judge, "", settings.style_card, history))
                status = f"risk_{settings.risk}"
                break
            found = index.reply(
                message,
                plan.lecture_id,
                used,
                settings.reply_min_words,
                settings.reply_max_words,
                ledger if rewriter is None else None,
            )
            if found is None or found.score < settings.min_answer_score:
                status = "unanswered"
                break
            exchange = {
                "client": message,
                "reply": found.text,
                "kind": "verbatim",
                "span": [found.start, found.end],
                "score": round(found.score, 4),
            }
            passage = index.passages[found.row].text
            if rewriter is not None:
                prompt = rewrite_prompt(settings.speaker, history, passage, settings.style_card)
                rewritten = rewriter.complete(prompt)
                if rewritten is None:
                    raise Unavailable
                exchange.update(reply=" ".join(rewritten.split()), kind="rewrite")
                exchange["span"] = [index.passages[found.row].start, index.passages[found.row].end]
                if judge is not None:
                    checked = judge.faithful(passage, history, exchange["reply"])
                    if checked is not None:
                        exchange["faithful"] = {"unsupported": checked.scores["unsupported"], "reason": checked.reason}
            elif ledger is not None and not ledger.take(
                plan.lecture_id, index.sentence_starts(plan.lecture_id, found.start, found.end)
            ):
                status = "unanswered"  # another conversation took its last use meanwhile
                break
            used.add(found.row)
            exchanges.append(curated(exchange, judge, passage, settings.style_card, history))
    except Unavailable:
        return None  # a request failed after its retries: the next run writes this unit again
    except ItemRefused:
        status = "refused"  # counted; the exchanges before the refusal are still usable
    return {
        "key": plan.key,
        "lecture_id": plan.lecture_id,
        "exchanges": exchanges,
        "status": status,
        "risk": risk,
    }


def curated(
    exchange: dict[str, Any], judge: VoiceJudge | None, passage: str, style_card: str, history: list[dict]
) -> dict[str, Any]:
    """The exchange with the judge's anchored 1-5 scores and reason, when there is a judge."""
    if judge is not None:
        verdict = judge.exchange(passage, style_card, history, exchange["reply"])
        if verdict is not None:
            exchange["curation"] = {"scores": verdict.scores, "reason": verdict.reason}
    return exchange
