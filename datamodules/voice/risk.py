"""Client turns that disclose risk, and the safe reply the data gives them instead of a lecture.

A conversation where someone says they want to die and the reply explains attachment styles would
teach the model to talk past a disclosure. So every client turn (written by a generator or by the
offline templates) is checked here first; a disclosing turn is either answered with a safe,
responsive reply that points to help and ends the conversation (`risk: respond`), or the
conversation is cut before it (`risk: drop`). Both are counted in the build's stats.

The rules match first-person disclosures (thinking of suicide, self-harm, being hurt or in danger
now, wanting to hurt someone); talking about these topics in general ("my mum's suicide attempt
when I was small") is left alone. Rules are a floor, not a clinical review: a classifier or a
judge is the stronger check.
"""

from __future__ import annotations

import re

_I = r"\b(?:i|i'm|i am|i've|i have|i'd|i keep|i still|i just|i really|i sometimes|i often)\b"
RISK_PATTERNS: dict[str, list[re.Pattern]] = {
    "suicide": [
        re.compile(p, re.IGNORECASE)
        for p in (
            _I
            + r"[^.?!]{0,40}\b(?:kill(?:ing)? myself|end(?:ing)? (?:my life|it all)|take my (?:own )?life)\b",
            _I + r"[^.?!]{0,30}\b(?:want|wanted|wanting|wish) (?:to die|i (?:was|were) dead|i wasn't here)\b",
            r"\b(?:better off without me|no (?:reason|point) (?:in )?(?:to )?(?:living|live|going on))\b",
            r"\b(?:suicidal|thoughts? of suicide|thinking (?:about|of) suicide)\b",
            r"\bdon't want to (?:be here|live|wake up) anymore\b",
        )
    ],
    "self_harm": [
        re.compile(p, re.IGNORECASE)
        for p in (
            _I + r"[^.?!]{0,30}\b(?:hurt(?:ing)?|cut(?:ting)?|burn(?:ing)?|harm(?:ing)?) myself\b",
            r"\bself[- ]harm(?:ing)? (?:again|every|when|to cope)\b",
        )
    ],
    "harm_to_others": [
        re.compile(p, re.IGNORECASE)
        for p in (
            _I + r"[^.?!]{0,30}\b(?:want|going|about) to (?:hurt|kill) (?:him|her|them|someone|my)\b",
            _I
            + r"[^.?!]{0,20}\b(?:afraid|scared) (?:that )?i(?:'ll| will| might) hurt"
            r" (?:him|her|them|someone|my)\b",
        )
    ],
    "in_danger": [
        re.compile(p, re.IGNORECASE)
        for p in (
            r"\b(?:he|she|they|my (?:husband|wife|partner|boyfriend|girlfriend|dad|father|mum|mom|mother))"
            r" (?:still )?(?:hits|beats|chokes|hurts) me\b",
            _I + r"[^.?!]{0,30}\b(?:not safe|scared to go) (?:at )?home\b",
            r"\b(?:threatened to kill me|going to kill me)\b",
        )
    ],
}

HELP = (
    "If you might act on this or you're in danger right now, please call your local emergency number. "
    "In the US you can call or text 988, the Suicide and Crisis Lifeline; in the UK and Ireland, "
    "Samaritans are on 116 123; anywhere else, findahelpline.com lists a free, confidential line near you."
)
SAFE_REPLIES: dict[str, list[str]] = {
    "suicide": [
        "I'm really glad you told me that, and I want to stop right here, because what you just said "
        "matters more than anything we've been talking about. When the pain gets so heavy that not being "
        "here feels like the only way out, that is the pain talking, and you don't have to carry it alone. "
        + HELP
        + " Is there someone you trust who could be with you tonight?",
        "Thank you for trusting me with that. I don't want to move past it. Thoughts of not wanting to live "
        "are a sign of how much you're hurting, not a sign that you're broken or too much. "
        + HELP
        + " Would you be willing to reach out to one of them, or to someone close to you, right now?",
    ],
    "self_harm": [
        "Thank you for telling me; I know that isn't easy to say out loud. Hurting yourself is often a way "
        "of surviving pain that has nowhere else to go, and you deserve support with that pain, not shame. "
        + HELP
        + " A doctor or a counsellor can also help you find safer ways through those moments.",
        "I'm glad you said that, and I'm not going to lecture you about it. When hurting yourself is how "
        "you get through, it tells me how much you are carrying. Please don't carry it alone. "
        + HELP,
    ],
    "harm_to_others": [
        "I'm glad you said that out loud instead of keeping it inside. Feeling that much anger can be "
        "frightening, and the most important thing right now is that nobody gets hurt, including you. "
        "Please put some distance between you and that person, and talk to someone today: your doctor, "
        "a counsellor, or a crisis line. " + HELP,
    ],
    "in_danger": [
        "What you're describing is not okay, and it is not your fault. Your safety comes first, before "
        "anything else we could talk about. If you're in danger right now, call your local emergency "
        "number. In the US the National Domestic Violence Hotline is 1-800-799-7233; in the UK, the "
        "National Domestic Abuse Helpline is 0808 2000 247; findahelpline.com lists others. They can help "
        "you make a plan to stay safe.",
    ],
}


def risk_kind(text: str) -> str | None:
    """The kind of risk a client turn discloses (suicide, self_harm, harm_to_others, in_danger), or None."""
    for kind, patterns in RISK_PATTERNS.items():
        if any(pattern.search(text) for pattern in patterns):
            return kind
    return None


def safe_reply(kind: str, choice: int) -> str:
    """A safe reply for this kind of disclosure; `choice` picks among the variants (stable per unit)."""
    replies = SAFE_REPLIES[kind]
    return replies[choice % len(replies)]
