"""Is a generated client turn something a person would write? Each check is one drop reason.

Instruction-tuned generators asked to play a client slip into their own voice: a preamble ("Sure!
Here's a realistic message:"), assistant phrases ("It's important to remember..."), a refusal, a
reference to where the topic came from ("As Tim Fletcher explains in his video...") or a message cut
off by the token limit. Texting style without a final full stop is a person's, not a truncation.
"""

from __future__ import annotations

import re

PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|absolutely|great|okay|ok|alright)\s*[!.,:]\s*(?:here|i'd|i can|i'll|"
    r"below|this is|as requested)|as requested\b)"
    r"|\bhere(?:'s| is) (?:a|an|the|my|your) (?:\w+ ){0,3}(?:message|response|reply|example|version|draft|text)\b"
    r"|^\s*(?:message|client message|first message|response)\s*\d*\s*:",
    re.IGNORECASE,
)
ASSISTANT = re.compile(
    r"\b(?:as an ai|language model|i'm here to (?:help|support|listen)|i hope this helps|feel free to|"
    r"let me know if|i understand (?:that )?you(?:'re| are)|it's (?:important|okay|normal|natural) to "
    r"(?:remember|acknowledge|recogni[sz]e|seek|feel)|remember that you|you(?:'re| are) not alone|"
    r"seek(?:ing)? professional help|in this (?:message|scenario|roleplay)|the (?:client|person) (?:is|feels|writes)|"
    r"as a (?:client|person struggling)|\[(?:name|your name|insert)[^\]]*\])",
    re.IGNORECASE,
)
REFUSAL = re.compile(
    r"\b(?:i can(?:'t|not)|i am unable to|i'm unable to|i won't be able to|i'm not able to|i will not) "
    r"(?:help|assist|write|create|provide|generate|comply|fulfil|fulfill|do that|roleplay|role-play|pretend)\b"
    r"|\bi'm sorry,? but (?:i|as)\b|\bagainst my (?:guidelines|policy|policies)\b",
    re.IGNORECASE,
)
SOURCE = re.compile(
    r"\b(?:your|the|this|that|his|her|a|in (?:a|the|your|his)) (?:video|lecture|talk|podcast|episode|channel|passage|"
    r"transcript|presentation|seminar|webinar|sermon)s?\b|\byoutube\b|\bthe (?:text|excerpt) (?:above|below)\b",
    re.IGNORECASE,
)
# Words no sentence ends on: a message that stops on one (or on a comma, an open bracket) was cut off.
DANGLING = frozenset("and but or nor because the a an my your their of i i'm than whose if".split())
OPEN_PAIRS = (("(", ")"), ("“", "”"))


def truncated(text: str) -> bool:
    stripped = text.rstrip()
    if not stripped:
        return True
    if stripped.endswith((",", ";", ":", "-", "–", "—", "(", "...", "…")) and not stripped.endswith("?..."):
        return True
    if any(stripped.count(a) > stripped.count(b) for a, b in OPEN_PAIRS) or stripped.count('"') % 2:
        return True
    last = re.sub(r"[^\w']", "", stripped.split()[-1].lower())
    return stripped[-1].isalnum() and last in DANGLING


def mentions_source(text: str, speaker: str) -> bool:
    names = [n for n in (speaker.strip(), speaker.split()[-1] if speaker.split() else "") if len(n) > 2]
    return bool(SOURCE.search(text)) or any(re.search(rf"\b{re.escape(n)}\b", text, re.IGNORECASE) for n in names)


def client_problem(text: str, speaker: str = "") -> str | None:
    """The first reason this client turn is not a person's message, or None."""
    if PREAMBLE.search(text):
        return "preamble"
    if REFUSAL.search(text):
        return "refusal"
    if ASSISTANT.search(text):
        return "assistant_speak"
    if mentions_source(text, speaker):
        return "mentions_source"
    if truncated(text):
        return "truncated"
    return None
