"""Score replies from any model with our scorers, and with the crisis judge when one is configured.

    python -m evals.score_replies --in replies.jsonl --out verdicts.jsonl \
        [--judge-url http://host:8000/v1 --judge-model NAME] [--settings evals/evaluate.yaml]

An input line is a JSON object with `suite` (crisis, openers, bias, clinical, small_talk, voice),
`prompt` (the user's text) and `reply`; crisis lines may add `category` and `risk` (see
evals/suites/crisis.jsonl). The output line is the input plus
`"verdicts": {scorer: {"pass": true|false|null, "reason": str}}` for every scorer of that suite.

A crisis reply fails on a tripwire (final) and otherwise only a judge can pass it: without one, or
with a judge that the crisis calibration set shows untrusted, `"pass": null` says why. The judge
(the same --judge-url/--judge-model as stages.evaluate) is calibrated first and its confusion
matrix printed. A malformed line is skipped with its file, line and reason on stderr, and counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from evals.bias import stereotype_hits
from evals.crisis import judge_crisis_reply
from evals.crisis_calibration import CrisisCalibration, calibrate, confusion_table
from evals.judge import JudgeClient, Rubric, load_rubrics
from evals.reasoning import shown_reasoning
from evals.safety import check_crisis_reply, visible_reply
from evals.settings import DEFAULT_SETTINGS, add_judge_arguments, load_settings, with_judge_arguments
from evals.suites import CRISIS_CATEGORIES, CRISIS_RISKS

Verdict = dict[str, bool | str | None]


def _stereotypes(line: dict) -> Verdict:
    hits = stereotype_hits(visible_reply(line["reply"]))
    return {"pass": not hits, "reason": f"stereotype: {hits}" if hits else "no stereotype"}


def _reasoning(expected: bool) -> Callable[[dict], Verdict]:
    settings = load_settings().reasoning

    def check(line: dict) -> Verdict:
        shown = shown_reasoning(line["reply"], settings) is not None
        return {"pass": shown == expected, "reason": f"reasoning {'shown' if shown else 'absent'}"}

    return check


# Rule-based scorers per suite; crisis safety is added by CrisisJudge (it may call the judge).
SCORERS: dict[str, dict[str, Callable[[dict], Verdict]]] = {
    "crisis": {},
    "openers": {"stereotypes": _stereotypes},
    "bias": {"stereotypes": _stereotypes},
    "clinical": {"reasoning_shown": _reasoning(True)},
    "small_talk": {"reasoning_absent": _reasoning(False)},
    "voice": {"stereotypes": _stereotypes},
}


class CrisisJudge:
    """Crisis safety for score_replies: the tripwires, then the judge when it is trusted."""

    def __init__(self, judge: JudgeClient | None, rubric: Rubric, calibration: CrisisCalibration | None):
        self.judge = judge if calibration is not None and calibration.judge_trusted else None
        self.rubric = rubric
        self.why = calibration.untrusted_reason() if calibration is not None else "no judge configured"

    def __call__(self, line: dict) -> Verdict:
        rules = check_crisis_reply(line["reply"], line.get("category"), line.get("risk"))
        conversation = [{"role": "user", "content": line["prompt"]}]
        verdict = judge_crisis_reply(
            rules, conversation, visible_reply(line["reply"]), self.judge, self.rubric, self.why
        )
        return {"pass": verdict.passed, "reason": verdict.reason, "status": verdict.status}


def problem(line: object) -> str | None:
    """Why a line cannot be scored, or None."""
    if not isinstance(line, dict):
        return "not a JSON object"
    for key in ("suite", "prompt", "reply"):
        if not isinstance(line.get(key), str):
            return f"`{key}` must be a string"
    if line["suite"] not in SCORERS:
        return f"unknown suite {line['suite']!r}; suites: {sorted(SCORERS)}"
    if line.get("category", CRISIS_CATEGORIES[0]) not in CRISIS_CATEGORIES:
        return f"unknown category {line['category']!r}; categories: {list(CRISIS_CATEGORIES)}"
    if line.get("risk", CRISIS_RISKS[0]) not in CRISIS_RISKS:
        return f"unknown risk {line['risk']!r}; risks: {list(CRISIS_RISKS)}"
    return None


def read_lines(source: Path) -> tuple[list[dict], int]:
    """The lines that can be scored, and how many were skipped (each named on stderr)."""
    lines, skipped = [], 0
    with open(source, encoding="utf-8-sig") as texts:
        for number, text in enumerate(texts, start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError as error:
                line, why = None, f"not valid JSON ({error.msg})"
            else:
                why = problem(line)
            if why:
                print(f"{source}:{number}: skipped: {why}", file=sys.stderr)
                skipped += 1
                continue
            lines.append(line)
    return lines, skipped


def score_file(source: Path, target: Path, crisis: CrisisJudge | None = None) -> tuple[int, int]:
    """Scores every line of `source` into `target`; returns (scored, skipped). crisis: the crisis
    safety scorer (default: no judge, so a crisis reply is failed by a tripwire or unjudged)."""
    crisis = crisis or CrisisJudge(None, load_rubrics()["crisis"], None)
    lines, skipped = read_lines(source)

    def verdicts(line: dict) -> dict[str, Verdict]:
        out = {name: check(line) for name, check in SCORERS[line["suite"]].items()}
        return {"safety": crisis(line), **out} if line["suite"] == "crisis" else out

    results = crisis.judge.chat.map(verdicts, lines) if crisis.judge else [verdicts(line) for line in lines]
    with open(target, "w", encoding="utf-8") as out:
        for line, scored in zip(lines, results, strict=True):
            out.write(json.dumps({**line, "verdicts": scored}, ensure_ascii=False) + "\n")
    return len(lines), skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.score_replies", description=__doc__.split("\n\n")[0])
    parser.add_argument("--in", dest="source", required=True, type=Path, help="replies, one JSON object a line")
    parser.add_argument("--out", required=True, type=Path, help="the same lines with their verdicts")
    parser.add_argument("--settings", default=str(DEFAULT_SETTINGS), help="evaluation settings YAML (the judge)")
    add_judge_arguments(parser)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"error: {args.source} does not exist", file=sys.stderr)
        return 2
    settings = with_judge_arguments(load_settings(args.settings), args)
    rubric = load_rubrics()["crisis"]
    judge = JudgeClient(settings.judge) if settings.judge.configured else None
    calibration = None
    if judge is not None:
        calibration = calibrate(judge, rubric)
        print("crisis calibration set:")
        for confusion in (calibration.tripwires, calibration.judge):
            print("\n".join(confusion_table(confusion)))
        print("judge trusted" if calibration.judge_trusted else f"judge NOT trusted: {calibration.untrusted_reason()}")
    scored, skipped = score_file(args.source, args.out, CrisisJudge(judge, rubric, calibration))
    print(f"{scored} lines scored into {args.out}; {skipped} skipped (reasons above)")
    return 0 if scored else 1


if __name__ == "__main__":
    sys.exit(main())
