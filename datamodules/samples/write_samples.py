"""Writes the bundled stage-1 and stage-2 samples (except counsel-chat, neuro_qa and the three CoT
`*_downloaded.json` files) from the hand-written parts in dialogue_parts.py and reasoning_parts.py.

Each file keeps, first, the few hand-written records that the reader tests pin (malformed lines,
empty replies, filtered quality scores, ...) exactly as they are, then adds the composed records in
the source's real layout: enough varied conversations for a 135M chat model to learn from in the CPU
demo. Deterministic (a fixed seed); run from the repository root:

    python -m datamodules.samples.write_samples && python -m datamodules.samples.build_parquet

A test checks that the committed files are what this writes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from pathlib import Path

from datamodules.samples.dialogue_parts import CLOSINGS, NORMALISING, OPENINGS, TOPICS
from datamodules.samples.reasoning_parts import (
    CONDITIONS,
    CULTURAL,
    DURATIONS,
    PEOPLE,
    PHILOSOPHICAL,
    STRESSORS,
)

SAMPLES = Path(__file__).parent
SEED = 20260601
PSYCH8K_INSTRUCTION = (
    "If you are a counsellor, please answer the questions based on the description of the patient."
)
# How many leading records of each file are the hand-written quirks the tests pin.
KEPT = {
    "mental_health_counseling_conversations/combined_dataset.json": 6,
    "Psych8k/Alexander_Street_shareGPT_2.0.json": 3,
    "therapist-sft-format/train.csv": 3,
    "datasets-wendy/priority_1_FINAL.jsonl": 3,
    "datasets-wendy/priority_2_FINAL.jsonl": 2,
    "datasets-wendy/priority_3_FINAL.jsonl": 2,
    "CoT_Reasoning_Clinical_Diagnosis_Mental_Health/CoT_Reasoning_Clinical_Diagnosis_Mental_Health.json": 3,
    "CoT_Temporal_Reasoning_Dataset/CoT_Temporal_Reasoning_Dataset.json": 2,
    "CoT_Philosophical_Understanding/CoT_Philosophical_Understanding.json": 2,
    "CoT-Reasoning_Cultural_Nuances/CoT-Reasoning_Cultural_Nuances_Dataset.json": 2,
}


def join(*parts: str | None) -> str:
    return " ".join(p for p in parts if p)


def counsellor_answer(rng: random.Random, topic: dict, variant: int) -> str:
    """A counsel-chat style answer: several sentences, a reflection, one or two suggestions, a question."""
    first = rng.choice(OPENINGS) if rng.random() < 0.5 else None
    reflection = topic["reflections"][variant % 3]
    normal = rng.choice(NORMALISING) if rng.random() < 0.4 else None
    picks = rng.sample(topic["suggestions"], 2 if rng.random() < 0.5 else 1)
    question = topic["questions"][(variant + 1) % 3]
    closing = rng.choice(CLOSINGS) if rng.random() < 0.5 else None
    body = join(first, reflection, normal)
    return f"{body}\n\n{join(*picks)} {question}" + (f"\n\n{closing}" if closing else "")


def amod_rows(rng: random.Random) -> list[str]:
    """Two different counsellors' answers to each of two openers per topic (as Amod has several)."""
    rows = []
    for topic in TOPICS.values():
        for opener in topic["openers"][:2]:
            for variant in rng.sample(range(3), 2):
                context = opener if rng.random() < 0.6 else f"{opener} {rng.choice(topic['details'])}"
                rows.append(json.dumps({"Context": context, "Response": counsellor_answer(rng, topic, variant)}))
    return rows


def psych8k_rows(rng: random.Random) -> list[dict]:
    rows = []
    for topic in TOPICS.values():
        for detail in rng.sample(topic["details"], 2):
            variant = rng.randrange(3)
            output = join(
                topic["reflections"][variant],
                rng.choice(topic["suggestions"]) if rng.random() < 0.5 else None,
                topic["questions"][rng.randrange(3)],
            )
            rows.append(
                {"instruction": PSYCH8K_INSTRUCTION, "input": f"{topic['openers'][2]} {detail}", "output": output}
            )
    return rows


def multi_turn(rng: random.Random, topic: dict, opener: str, turns: int) -> list[tuple[str, str]]:
    """client/counsellor turns: opener, reflection + question, follow-up, its reply, [detail, advice]."""
    k = rng.randrange(2)
    v = rng.randrange(3)
    pairs = [
        (opener, join(rng.choice(OPENINGS) if rng.random() < 0.4 else None, topic["reflections"][v],
                      topic["questions"][(v + 2) % 3])),
        (topic["follow_ups"][k], topic["second_replies"][k]),
    ]
    if turns > 4:
        pairs.append((rng.choice(topic["details"]),
                      join(rng.choice(NORMALISING), rng.choice(topic["suggestions"]))))
    return [turn for pair in pairs for turn in pair]


def therapist_sft_rows(rng: random.Random) -> list[str]:
    """The real file's layout: one lowercase line per conversation, `human: ... gpt: ...`."""
    rows = []
    for topic in TOPICS.values():
        turns = multi_turn(rng, topic, topic["openers"][3], rng.choice([4, 6]))
        rows.append(" ".join(f"{'human' if i % 2 == 0 else 'gpt'}: {t.lower()}" for i, t in enumerate(turns)))
    return rows


def priority_rows(rng: random.Random) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {1: [], 2: [], 3: []}
    counters = {1: 3, 2: 2, 3: 2}
    for i, topic in enumerate(TOPICS.values()):
        priority = 1 + i % 3
        counters[priority] += 1
        turns = multi_turn(rng, topic, topic["openers"][4], 6 if rng.random() < 0.6 else 4)
        conversation = [
            {"role": "client" if j % 2 == 0 else "therapist", "content": text} for j, text in enumerate(turns)
        ]
        # A few fall below the pipeline's 0.75 quality filter, as in the real files.
        score = round(rng.uniform(0.7, 0.98), 2)
        out[priority].append(json.dumps({
            "conversation": conversation,
            "source": "wendy_curated",
            "priority": priority,
            "conversation_id": f"p{priority}-{counters[priority]:04d}",
            "metadata": {"quality_score": score, "turn_count": len(conversation)},
        }))
    return out


def clinical_records(rng: random.Random) -> list[dict]:
    """Vignettes checked against each condition's count and duration rule; the answer follows the rule."""
    records = []
    n = 3
    for condition in CONDITIONS:
        for _ in range(4):
            person, they, their = rng.choice(PEOPLE)
            days, wording = rng.choice(DURATIONS)
            count = rng.randint(max(1, condition["min"] - 2), min(len(condition["symptoms"]), condition["min"] + 2))
            symptoms = rng.sample(condition["symptoms"], count)
            stressor = rng.choice(STRESSORS).replace("her ", f"{their} ")
            listed = ", ".join(symptoms[:-1]) + (f" and {symptoms[-1]}" if len(symptoms) > 1 else symptoms[0])
            question = (
                f"{person} reports {listed} for {wording}, {stressor}. "
                f"Does this meet criteria for {condition['name']}?"
            )
            enough = count >= condition["min"]
            long_enough = days >= condition["days"]
            if condition["name"] == "adjustment disorder":
                long_enough = "no clear trigger" not in stressor
            steps = [
                f"The criteria for {condition['name']} require {condition['rule']}.",
                f"The vignette lists {count} relevant symptom{'s' if count != 1 else ''} ({listed}), "
                f"{'which reaches' if enough else 'which is short of'} the minimum of {condition['min']}.",
            ]
            if condition["name"] == "adjustment disorder":
                steps.append("There is an identifiable stressor." if long_enough
                             else "No identifiable stressor is described, and one is required.")
            else:
                steps.append(f"The duration is {wording} ({days} days) against the required {condition['days']} days, "
                             f"so the duration criterion is {'met' if long_enough else 'not met'}.")
            steps.append(f"Differentials to consider: {condition['differential']}.")
            if enough and long_enough:
                answer = (f"It may meet criteria for {condition['name']}: the symptom count and duration fit, "
                          f"but a clinician should confirm impairment and rule out {condition['differential']}.")
            else:
                missing = " and ".join(
                    part for part, ok in (("enough symptoms", enough), ("the required duration", long_enough)) if not ok
                )
                answer = (f"Not yet: the picture lacks {missing} for {condition['name']}. "
                          f"{they.capitalize()} still deserve{'' if they == 'they' else 's'} support and a follow-up "
                          f"assessment, because symptoms can develop further.")
            records.append({
                "id": f"0-{n}",
                "question": question,
                "answer": answer,
                "metadata": {"difficulty": rng.randint(2, 4), "topic": condition["topic"], "reasoning": " ".join(steps)},
            })
            n += 1
    return records


def temporal_records(rng: random.Random) -> list[dict]:
    """Date and schedule questions from counselling practice, computed with datetime."""
    records = []
    base = dt.date(2025, 1, 6)
    weekdays = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    for n in range(2, 32):
        kind = n % 5
        start = base + dt.timedelta(days=rng.randrange(0, 330))
        s = f"{start:%B} {start.day}"
        if kind == 0:
            weeks = rng.choice([6, 8, 10, 12, 16])
            end = start + dt.timedelta(weeks=weeks)
            q = f"A client starts a {weeks}-week group programme on {s}. On what date is the last week's session, if sessions fall on the same weekday?"
            last = end - dt.timedelta(weeks=1)
            a = f"On {last:%B} {last.day}, the {weeks}th weekly session."
            r = (f"The first session is week 1 on {s}, so the last is week {weeks}, {weeks - 1} weeks later: "
                 f"{(weeks - 1) * 7} days after {s}, which is {last:%B} {last.day}.")
        elif kind == 1:
            days = rng.choice([10, 14, 21, 28])
            step = rng.choice([2, 3])
            q = (f"A doctor reduces a medication dose every {step} days over a {days}-day taper starting {s}. "
                 f"How many dose reductions happen after the starting dose?")
            count = (days - 1) // step
            a = f"{count} reductions."
            r = (f"The first reduction is on day {step + 1} and they repeat every {step} days while still inside "
                 f"the {days} days: days {', '.join(str(1 + step * i) for i in range(1, count + 1))}. That is {count}.")
        elif kind == 2:
            back = rng.randint(2, 6)
            event = rng.randrange(7)
            q = f"A client says her panic attacks began {back} days before an interview on a {weekdays[event]}. On which day did they begin?"
            day = weekdays[(event - back) % 7]
            a = f"On a {day}."
            r = f"Counting back {back} days from {weekdays[event]}: " + ", ".join(
                weekdays[(event - i) % 7] for i in range(1, back + 1)) + f". So it was a {day}."
        elif kind == 3:
            months = rng.choice([3, 6])
            gap = rng.randrange(40, 220)
            later = start + dt.timedelta(days=gap)
            q = (f"Symptoms started on {s} and the assessment is on {later:%B} {later.day}. "
                 f"Have the symptoms lasted the {months} months a diagnosis requires?")
            enough = gap >= months * 30
            a = ("Yes, by the assessment they have lasted long enough." if enough
                 else f"No, only about {gap // 30} months have passed; the duration criterion is not yet met.")
            r = (f"From {s} to {later:%B} {later.day} is {gap} days. {months} months is about {months * 30} days. "
                 f"{gap} is {'at least' if enough else 'less than'} {months * 30}.")
        else:
            every = rng.choice([2, 3, 4])
            count = rng.randint(4, 8)
            last = start + dt.timedelta(weeks=every * (count - 1))
            q = (f"Therapy sessions happen every {every} weeks starting {s}. What is the date of session {count}?")
            a = f"{last:%B} {last.day}."
            r = (f"Session {count} comes {count - 1} intervals after the first: {count - 1} x {every} = "
                 f"{every * (count - 1)} weeks, or {7 * every * (count - 1)} days after {s}, which is {last:%B} {last.day}.")
        records.append({"id": f"6-{n}", "question": q, "answer": a,
                        "metadata": {"difficulty": 1 + kind % 4, "topic": "dates, scheduling", "reasoning": r}})
    return records


def written_records(prefix: str, start: int, items: list[tuple[str, str, str, str]]) -> list[dict]:
    return [
        {"id": f"{prefix}-{start + i}", "question": q, "answer": a,
         "metadata": {"difficulty": 2 + i % 3, "topic": topic, "reasoning": r}}
        for i, (q, a, r, topic) in enumerate(items)
    ]


def kept_lines(rel: str) -> list[str]:
    return (SAMPLES / rel).read_text(encoding="utf-8").splitlines()[: KEPT[rel]]


def kept_records(rel: str) -> list:
    return json.loads((SAMPLES / rel).read_text(encoding="utf-8"))[: KEPT[rel]]


def target(out: Path, rel: str) -> Path:
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_json(out: Path, rel: str, records: list) -> None:
    target(out, rel).write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_lines(out: Path, rel: str, lines: list[str]) -> None:
    target(out, rel).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_therapist_sft(out_root: Path, rng: random.Random) -> None:
    rel = "therapist-sft-format/train.csv"
    with open(SAMPLES / rel, newline="", encoding="utf-8") as f:
        kept = [row["text"] for row in csv.DictReader(f)][: KEPT[rel]]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # the real file has Windows line ends
    writer.writerow(["text"])
    writer.writerows([text] for text in [*kept, *therapist_sft_rows(rng)])
    target(out_root, rel).write_text(out.getvalue(), encoding="utf-8", newline="")


def main(out: Path = SAMPLES) -> None:
    """Write every file of KEPT under `out` (the samples folder itself by default)."""
    rng = random.Random(SEED)
    amod = "mental_health_counseling_conversations/combined_dataset.json"
    write_lines(out, amod, kept_lines(amod) + amod_rows(rng))
    psych8k = "Psych8k/Alexander_Street_shareGPT_2.0.json"
    write_json(out, psych8k, kept_records(psych8k) + psych8k_rows(rng))
    write_therapist_sft(out, rng)
    for priority, rows in priority_rows(rng).items():
        rel = f"datasets-wendy/priority_{priority}_FINAL.jsonl"
        write_lines(out, rel, kept_lines(rel) + rows)
    clinical = "CoT_Reasoning_Clinical_Diagnosis_Mental_Health/CoT_Reasoning_Clinical_Diagnosis_Mental_Health.json"
    write_json(out, clinical, kept_records(clinical) + clinical_records(rng))
    temporal = "CoT_Temporal_Reasoning_Dataset/CoT_Temporal_Reasoning_Dataset.json"
    write_json(out, temporal, kept_records(temporal) + temporal_records(rng))
    philosophical = "CoT_Philosophical_Understanding/CoT_Philosophical_Understanding.json"
    write_json(out, philosophical, kept_records(philosophical) + written_records("5", 2, PHILOSOPHICAL))
    cultural = "CoT-Reasoning_Cultural_Nuances/CoT-Reasoning_Cultural_Nuances_Dataset.json"
    write_json(out, cultural, kept_records(cultural) + written_records("4", 2, CULTURAL))


if __name__ == "__main__":
    main()
