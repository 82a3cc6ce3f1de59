"""One conversation, turn by turn: a client turn, the passage that answers it, the reply.

Each client turn is checked for a risk disclosure first (datamodules/voice/risk.py): it is then
answered with a safe reply that points to help and the conversation ends, or the conversation ends
before it (`risk: drop`). Otherwise the turn is answered from the passage of the lecture that
matches it best and that this conversation has not used yet: a verbatim span trimmed to
conversational length, or (`reply: rewrite`) the generator's reply written from that span. A turn
no passage answers well enough (cosine below `min_answer_score`) ends the conversation rather than
getting an unrelated lecture.

The result is a journal record: every exchange with the word span it came from, and why the
conversation stopped. `None` means a request failed after its retries: nothing is journalled and
the unit is written again on the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datamodules.voice.clients import ClientWriter, Plan
from datamodules.voice.generators import Generator, ItemRefused, Unavailable
from datamodules.voice.prompts import rewrite_prompt, tidy_client
from datamodules.voice.retrieve import PassageIndex
from datamodules.voice.risk import risk_kind, safe_reply


@dataclass(frozen=True)
class TurnSettings:
    speaker: str
    reply: str  # verbatim | rewrite
    risk: str  # respond | drop
    reply_min_words: int
    reply_max_words: int
    min_answer_score: float


def converse(
    plan: Plan,
    client: ClientWriter,
    index: PassageIndex,
    settings: TurnSettings,
    rewriter: Generator | None = None,
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
            risk = risk_kind(message)
            if risk:
                if settings.risk == "respond":
                    reply = safe_reply(risk, plan.variant)
                    exchanges.append({"client": message, "reply": reply, "kind": "safe", "risk": risk})
                status = f"risk_{settings.risk}"
                break
            found = index.reply(
                message, plan.lecture_id, used, settings.reply_min_words, settings.reply_max_words
            )
            if found is None or found.score < settings.min_answer_score:
                status = "unanswered"
                break
            reply, kind = found.text, "verbatim"
            if rewriter is not None:
                rewritten = rewriter.complete(rewrite_prompt(settings.speaker, message, found.text))
                if rewritten is None:
                    raise Unavailable
                reply, kind = " ".join(rewritten.split()), "rewrite"
            used.add(found.row)
            exchanges.append(
                {
                    "client": message,
                    "reply": reply,
                    "kind": kind,
                    "span": [found.start, found.end],
                    "score": round(found.score, 4),
                }
            )
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
