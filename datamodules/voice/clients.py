"""Who writes the client side of a conversation: offline templates or a generator.

Both write from a persona (who the person is, where it shows up) and the topic of the unit's seed
passage; later turns follow from the previous reply (a term it used that the client picks up), and
neither ever sees the reply a turn will get. The offline writer asks the speaker's own question
when the seed passage has one, else a question about its key term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from datamodules.voice.clean import normalize_word, normalized_words
from datamodules.voice.generators import Generator, Unavailable
from datamodules.voice.prompts import follow_up_prompt, opening_prompt
from datamodules.voice.punctuate import MARKERS, looks_like_question, recase, split_sentences
from datamodules.voice.retrieve import GENERIC, PassageIndex

# (who the person is, where it shows up, someone it reminds them of)
PERSONAS = (
    ("a nurse in my forties", "at work", "my mum"),
    ("a dad of two young kids", "with my kids", "my father"),
    ("a college student", "with my roommates", "my older brother"),
    ("recently divorced", "since the divorce", "my ex-husband"),
    ("a primary school teacher", "in my classroom", "my grandmother"),
    ("a retired engineer", "with my wife", "my dad"),
    ("twenty-three and still living at home", "with my parents", "my stepdad"),
    ("a pastor", "in my church", "my mother"),
    ("a single mum", "with my ex", "my own mum"),
    ("a manager at a busy company", "with my team", "my old boss"),
    ("in recovery from addiction", "in my meetings", "my father"),
    ("newly married", "with my husband", "my mother"),
    ("the oldest of five kids", "with my siblings", "my mum"),
    ("a veteran", "at home", "my drill sergeant"),
    ("a software developer", "in meetings", "my dad"),
    ("a stay-at-home mum", "with my mother-in-law", "my mother"),
    ("a nursing student", "on placement", "my aunt"),
    ("a widower", "since my wife died", "my father"),
    ("a musician", "on stage", "my first teacher"),
    ("an adoptee in my thirties", "in my relationships", "my adoptive mum"),
    ("a firefighter", "after a bad shift", "my father"),
    ("a university lecturer", "with my students", "my mother"),
    ("seventeen and in my last year of school", "with my friends", "my mum"),
    ("a grandmother of four", "with my grown-up children", "my own mother"),
    ("a police officer", "on the job", "my stepfather"),
    ("a carer for my elderly dad", "when he's angry", "my dad"),
    ("a chef", "in the kitchen", "my old head chef"),
    ("a refugee who came here as a child", "at work", "my uncle"),
    ("a gay man in my fifties", "with my partner", "my father"),
    ("a farmer", "when things go wrong on the farm", "my dad"),
    ("a new mum", "with my baby", "my mother"),
    ("a lawyer", "in court", "my older sister"),
)
# A key term is quoted ("the 'inner critic' part"): read as the client's own words for it, any
# noun phrase fits the sentence.
OPENINGS = (
    'I\'m {who}, and "{topic}" keeps showing up {where}. {question}',
    "{question}",
    "Can I ask you something? {question}",
    'I\'m {who}. I\'ve been reading about "{topic}" and I think it describes me. {question}',
    "Something happened {where} this week and it left me shaken. {question}",
    'I don\'t really know how to say this, but "{topic}" feels like it runs my life. {question}',
    'My counsellor mentioned "{topic}" and I didn\'t really get it. {question}',
    "I'm {who}. {question} I really want to understand this.",
)
TOPIC_QUESTIONS = (
    'What is "{topic}", really, and why does it have such a hold on me?',
    'How do I deal with "{topic}"?',
    'Why does "{topic}" affect me so much?',
    'Why does "{topic}" happen to me in the first place?',
    'Can "{topic}" actually change when you\'re an adult?',
)
FOLLOW_UPS = (
    'You said "{term}". What does that look like day to day?',
    'That makes sense. But what do I actually do about the "{term}" part?',
    'When you said "{term}", I thought of {person}. Why does it still affect me so much?',
    'Okay, that hits home, especially "{term}". Can that really change as an adult?',
    'I never thought of it that way. Why does "{term}" happen in the first place?',
    'But what if "{term}" is all I\'ve ever known?',
    'Can you say more about "{term}"? I think that\'s the part I\'m stuck on.',
)
# Offline: a share of conversations end with one of these, so the data shows the safe answer to a
# disclosure (datamodules/voice/risk.py must recognise every one: a test checks it).
DISCLOSURES = (
    "Honestly, some nights I think everyone would be better off without me.",
    "I've started hurting myself again when it gets like this.",
    "Sometimes I think about ending my life when it gets this bad.",
    "He still hits me when he's drunk, and I'm scared to go home tonight.",
)


@dataclass(frozen=True)
class Plan:
    """One conversation to write: its seed passage, persona, length and (offline) disclosure turn."""

    key: str
    lecture_id: str
    seed: int  # row of the seed passage in the index
    turns: int
    variant: int  # picks persona, phrasing and safe-reply wording, stable per unit
    disclose_at: int | None = None


class ClientWriter(Protocol):
    def opening(self, plan: Plan) -> str | None: ...

    def follow_up(self, plan: Plan, exchanges: list[tuple[str, str]]) -> str | None: ...


def client_question(sentence: str) -> str:
    """The speaker's question as a client would ask it: leading "so"/"and"/"now" dropped."""
    words = sentence.split()
    while len(words) > 1 and normalize_word(words[0]) in MARKERS:
        words = words[1:]
    return recase(" ".join(words).lstrip(",; "), {})


def speaker_question(text: str, min_words: int) -> str | None:
    """The first real question the speaker asks in `text` (a wh-word or verb-first sentence ending
    in "?", not reported speech, about something: "Can we talk about it?" is not), as the client
    would ask it."""
    for sentence in split_sentences(text):
        words = sentence.split()
        about = [w for w in normalized_words(sentence) if w not in ENGLISH_STOP_WORDS | GENERIC]
        if sentence.endswith("?") and len(words) >= min_words and looks_like_question(words) and about:
            return client_question(sentence)
    return None


class TemplateClient:
    """No model: personas, openings and follow-ups from the tables above, chosen per unit."""

    def __init__(self, index: PassageIndex, min_question_words: int, profile: dict):
        self.index = index
        self.min_question_words = min_question_words
        self.profile = profile

    def topics(self, plan: Plan) -> list[str]:
        return self.profile["lectures_detail"].get(plan.lecture_id, {}).get("topics", [])

    def opening(self, plan: Plan) -> str | None:
        if plan.disclose_at == 0:
            return DISCLOSURES[plan.variant % len(DISCLOSURES)]
        who, where, _ = PERSONAS[plan.variant % len(PERSONAS)]
        text = self.index.passages[plan.seed].text
        terms = self.index.key_terms(text, 1, prefer=self.topics(plan))
        question = speaker_question(text, self.min_question_words)
        if not terms and not question:
            return None  # nothing to ask about
        topic = terms[0] if terms else "this"
        question = question or TOPIC_QUESTIONS[plan.variant % len(TOPIC_QUESTIONS)].format(topic=topic)
        if not terms:
            return question
        template = OPENINGS[(plan.variant // len(PERSONAS)) % len(OPENINGS)]
        message = template.format(who=who, where=where, topic=topic, question=question)
        return message[:1].upper() + message[1:]

    def follow_up(self, plan: Plan, exchanges: list[tuple[str, str]]) -> str | None:
        turn = len(exchanges)
        if plan.disclose_at == turn:
            return DISCLOSURES[plan.variant % len(DISCLOSURES)]
        asked = {w for client, _ in exchanges for w in self.index.analyzer(client)}
        reply = exchanges[-1][1]
        # a term of the last reply that the rest of the lecture also talks about, so it can answer
        elsewhere = [
            self.index.lowered[row]
            for row in self.index.rows_of[plan.lecture_id]
            if reply not in self.index.passages[row].text
        ]
        terms = [
            term
            for term in self.index.key_terms(reply, 8, avoid=asked, prefer=self.topics(plan))
            if any(term in text for text in elsewhere)
        ]
        if not terms:
            return None
        _, _, person = PERSONAS[plan.variant % len(PERSONAS)]
        template = FOLLOW_UPS[(plan.variant + turn) % len(FOLLOW_UPS)]
        return template.format(term=terms[0], person=person)


class GeneratorClient:
    """A generator writes each client turn from the persona, the topic and the conversation so far."""

    def __init__(self, generator: Generator, index: PassageIndex, speaker: str, profile: dict):
        self.generator = generator
        self.index = index
        self.speaker = speaker
        self.profile = profile

    def persona(self, plan: Plan) -> str:
        who, where, _ = PERSONAS[plan.variant % len(PERSONAS)]
        return f"{who}; it shows up most {where}"

    def opening(self, plan: Plan) -> str:
        detail = self.profile["lectures_detail"].get(plan.lecture_id, {})
        prompt = opening_prompt(
            self.speaker,
            self.persona(plan),
            plan.variant,
            self.index.passages[plan.seed].text,
            detail.get("title"),
            detail.get("topics", []),
        )
        return self.written(prompt)

    def follow_up(self, plan: Plan, exchanges: list[tuple[str, str]]) -> str:
        return self.written(
            follow_up_prompt(self.speaker, self.persona(plan), plan.variant + len(exchanges), exchanges)
        )

    def written(self, prompt: list[dict[str, str]]) -> str:
        text = self.generator.complete(prompt)
        if text is None:
            raise Unavailable
        return text
