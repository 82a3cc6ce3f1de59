"""YouTube boilerplate and lecture openings, taken out of the punctuated lecture before chunking.

Calls to subscribe, "link below", "in this video", sponsor reads and the speaker's greeting or
announcement of the day's topic are not his teaching voice; a reply made of them would open a
lecture instead of answering. A sentence is removed when it is boilerplate anywhere, or an opening
among the lecture's first sentences.
"""

from __future__ import annotations

import re

from datamodules.voice.punctuate import split_sentences
from datamodules.voice.spans import is_opening

BOILERPLATE = re.compile(
    r"\bsubscrib(?:e|ed|ing)\b|\bhit the (?:bell|like)\b|\b(?:notification|notifications) bell\b|"
    r"\blike (?:and|&) (?:share|subscribe)\b|\bsmash (?:that|the) like\b|"
    r"\blinks? (?:is |are )?(?:in the description|below|down below|in the (?:show )?notes)\b|"
    r"\bin the description\b|\bdescription (?:box|below)\b|\bin this video\b|\bthis video is sponsored\b|"
    r"\bsponsor(?:ed)? (?:of|by) (?:this|today'?s)\b|\bpatreon\b|\bmy (?:youtube )?channel\b|"
    r"\bsee you (?:in the )?next (?:video|week|time)\b|\bthanks? (?:you )?for watching\b|\bclick (?:the|on|here)\b",
    re.IGNORECASE,
)
OPENING_SENTENCES = 4  # the greeting and topic announcement come first


def strip_boilerplate(punctuated: str) -> tuple[str, int]:
    """(the lecture without boilerplate and opening sentences, how many sentences were removed)."""
    kept, removed = [], 0
    for number, sentence in enumerate(split_sentences(punctuated)):
        if BOILERPLATE.search(sentence) or (number < OPENING_SENTENCES and is_opening(sentence)):
            removed += 1
        else:
            kept.append(sentence)
    return " ".join(kept), removed
