"""Prompts for the client side. The generator never sees a request to write the speaker's reply:
it writes what a client says so that the speaker's real words answer it."""

from __future__ import annotations

PROMPT_VERSION = 1

SYSTEM = (
    "You write realistic messages from a person talking to {speaker}, an educator on complex trauma "
    "and recovery. The person is living with the effects of their own history (shame, "
    "people-pleasing, anxiety, relationships). Write only the person's message: first person, "
    "plain words, 1 to 3 sentences, no greeting, no names, no quotation marks. Never mention a "
    "lecture, a passage, a video or {speaker}'s words."
)


def context_line(title: str | None, topics: list[str]) -> str:
    parts = []
    if title:
        parts.append(f"Talk: {title}.")
    if topics:
        parts.append("Topics: " + ", ".join(topics[:6]) + ".")
    return " ".join(parts)


def opening_prompt(speaker: str, passage: str, title: str | None, topics: list[str]) -> list[dict[str, str]]:
    """Instruction backtranslation: the message that this passage answers."""
    user = (
        f'{context_line(title, topics)}\n\nHere is what {speaker} says in reply:\n"""\n{passage}\n"""\n\n'
        "Write the person's message that this reply answers: what they are going through and what "
        "they ask, so that the reply above is a natural answer to it."
    )
    return [
        {"role": "system", "content": SYSTEM.format(speaker=speaker)},
        {"role": "user", "content": user.strip()},
    ]


def follow_up_prompt(
    speaker: str, previous: str, passage: str, title: str | None, topics: list[str]
) -> list[dict[str, str]]:
    """Multi-turn: the person's reply to what the speaker just said, leading to what he says next."""
    user = (
        f'{context_line(title, topics)}\n\n{speaker} has just said:\n"""\n{previous}\n"""\n\n'
        f'Next, {speaker} will say:\n"""\n{passage}\n"""\n\n'
        "Write the person's reply to what was just said: react to it in their own words and ask or "
        "share what leads naturally to what comes next."
    )
    return [
        {"role": "system", "content": SYSTEM.format(speaker=speaker)},
        {"role": "user", "content": user.strip()},
    ]


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] in "\"'“" and text[-1] in "\"'”":
        return text[1:-1].strip()
    return text


def tidy_client(text: str) -> str:
    """The first paragraph, without a role label or wrapping quotes a model may add."""
    text = unquote(text.strip().split("\n\n")[0].strip())
    for label in ("client:", "person:", "user:", "message:"):
        if text.lower().startswith(label):
            text = text[len(label) :].strip()
    return " ".join(unquote(text).split())
