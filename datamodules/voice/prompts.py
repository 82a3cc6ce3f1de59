"""Prompts for the generator. The client-writer sees a persona, the topic and the conversation so
far, never the reply it will get: the reply is retrieved afterwards for what the client wrote. With
`reply: rewrite` the generator also writes the speaker's reply from the retrieved span alone."""

from __future__ import annotations

PROMPT_VERSION = 3  # 3: replies from the conversation, the passage and the style card; more styles

SYSTEM = (
    "You write realistic messages from one person talking to {speaker}, an educator on complex trauma "
    "and recovery. You are {persona}. You live with the effects of your own history (shame, "
    "people-pleasing, anxiety, relationships). Write only the person's message: first person, "
    "plain words, 1 to 3 sentences, no greeting, no names, no quotation marks, no preamble (never "
    "\"Sure\" or \"Here's a message\"), nothing an assistant would say. Never mention a lecture, "
    "a passage, a video or {speaker}. {style}"
)
# How the person writes: one per conversation turn, so the data holds the ways people really type.
STYLES = (
    "Open with what happened to you recently.",
    "Ask a direct question.",
    "Start with how you feel right now.",
    "Sound sceptical: you doubt that understanding your past will change anything, and say so.",
    "Be brief: one short sentence, under 15 words.",
    "Describe a situation with someone close to you.",
    "Write like a text message: all lower case, little punctuation, an abbreviation or two (idk, tbh).",
    "Type fast and make one or two small spelling mistakes, as people do on a phone.",
    "Ramble a little: two or three run-on sentences, the way people write when upset.",
    "Be guarded: say only part of what is going on, and ask cautiously.",
)


def context_line(title: str | None, topics: list[str]) -> str:
    parts = []
    if title:
        parts.append(f"Talk: {title}.")
    if topics:
        parts.append("Topics: " + ", ".join(topics[:6]) + ".")
    return " ".join(parts)


def system(speaker: str, persona: str, style: int) -> dict[str, str]:
    content = SYSTEM.format(speaker=speaker, persona=persona, style=STYLES[style % len(STYLES)])
    return {"role": "system", "content": content}


def opening_prompt(
    speaker: str, persona: str, style: int, passage: str, title: str | None, topics: list[str]
) -> list[dict[str, str]]:
    """The first message: about what this passage is about, in the person's own life and words."""
    user = (
        f"{context_line(title, topics)}\n\nWhat you struggle with is what this is about "
        f'(do not quote it):\n"""\n{passage}\n"""\n\n'
        "Write your first message to him: what is going on in your life and what you want to ask."
    )
    return [system(speaker, persona, style), {"role": "user", "content": user.strip()}]


def follow_up_prompt(
    speaker: str, persona: str, style: int, exchanges: list[tuple[str, str]]
) -> list[dict[str, str]]:
    """A later message: reacts to what he just said and asks what follows from it."""
    lines = [f"You: {client}\n{speaker}: {reply}" for client, reply in exchanges]
    user = (
        "Your conversation so far:\n" + "\n\n".join(lines) + "\n\nWrite your next message: react to "
        "what he just said in your own words (what rings true, what you doubt, what it brings up) "
        "and ask something that follows from it."
    )
    return [system(speaker, persona, style), {"role": "user", "content": user}]


def rewrite_prompt(
    speaker: str, history: list[dict[str, str]], passage: str, style_card: str
) -> list[dict[str, str]]:
    """The speaker's reply to the person's last message, from the conversation so far, the passage
    of his lecture that answers it and his style card: it may acknowledge the person briefly, then
    explains in his words, with nothing the passage does not hold."""
    lines = [f"{'Person' if m['role'] == 'user' else speaker}: {m['content']}" for m in history]
    return [
        {
            "role": "system",
            "content": (
                f"You are {speaker}, an educator on complex trauma and recovery, answering one person in "
                "a conversation. Reply to their last message. You may first acknowledge what they said "
                "in a sentence or two, speaking to them directly. Then explain, answering what they asked, "
                "only from the passage of your talk below: keep your own phrases, analogies and examples, "
                "and add no fact, advice, example or story that the passage does not contain. 60 to 150 "
                "words, plain spoken English, no lists, no headings, no quotation marks around the reply, "
                "never mention a talk, video or passage.\n\nYour style:\n" + style_card
            ),
        },
        {
            "role": "user",
            "content": (
                f'From your talk:\n"""\n{passage}\n"""\n\nThe conversation so far:\n'
                + "\n\n".join(lines)
                + f"\n\nWrite {speaker}'s reply only."
            ),
        },
    ]


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] in "\"'“" and text[-1] in "\"'”":
        return text[1:-1].strip()
    return text


def tidy_client(text: str) -> str:
    """The first paragraph, without a role label or wrapping quotes a model may add."""
    text = unquote(text.strip().split("\n\n")[0].strip())
    for label in ("client:", "person:", "user:", "message:", "you:"):
        if text.lower().startswith(label):
            text = text[len(label) :].strip()
    return " ".join(unquote(text).split())
