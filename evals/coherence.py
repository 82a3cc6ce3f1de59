"""Long conversations the model writes itself: the scripted client turns are fed one at a time and
the model's own replies are kept, so by the last turn it answers a conversation of its own making,
not one a scripted counsellor wrote for it. Scored two ways: the facts planted in the client's first
turns that the last reply recalls (`fact_recall`, rules), and, with a judge, the last reply's
consistency with the whole conversation, its own earlier turns included (`coherence_judge`).
"""

from __future__ import annotations

import re

from inspect_ai.solver import Generate, Solver, TaskState, solver

from evals.suites import Probe


def _mentions(reply: str, answer: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(answer.casefold())}(?!\w)", reply.casefold()) is not None


def recall(probe: Probe, reply: str) -> float:
    """Share of the probe's planted facts that the reply names (any of each fact's answers)."""
    facts = probe.fields["planted"]
    return sum(any(_mentions(reply, a) for a in fact["answers"]) for fact in facts) / len(facts)


@solver
def self_written_turns() -> Solver:
    """Replays the sample's user turns in order, generating every assistant turn in place of the
    scripted ones (a system message at the start is kept); the last generation is the output."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        scripted = list(state.messages)
        state.messages = [m for m in scripted[:1] if m.role == "system"]
        for message in scripted[len(state.messages) :]:
            if message.role == "user":
                state.messages.append(message)
                state = await generate(state)
        return state

    return solve
