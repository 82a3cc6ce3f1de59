"""Score replies from any model with our rule-based scorers.

    python -m evals.score_replies --in replies.jsonl --out verdicts.jsonl

An input line is a JSON object with `suite` (crisis, openers, bias, clinical, small_talk, voice),
`prompt` (the user's text) and `reply`; crisis lines may add `category` and `risk` (see
evals/suites/crisis.jsonl; default: suicidal_ideation, acute, the strictest). The output line is the
input plus `"verdicts": {scorer: {"pass": bool, "reason": str}}` for every rule-based scorer of that
suite. A malformed line is skipped with its file, line and reason on stderr, and counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from evals.bias import stereotype_hits
from evals.reasoning import shown_reasoning
from evals.safety import check_crisis_reply, visible_reply
from evals.settings import load_settings
from evals.suites import CRISIS_CATEGORIES, CRISIS_RISKS

Verdict = dict[str, bool | str]


def _safety(line: dict) -> Verdict:
    verdict = check_crisis_reply(
        line["reply"], line.get("category", "suicidal_ideation"), line.get("risk", "acute")
    )
    return {"pass": verdict.passed, "reason": verdict.reason}


def _stereotypes(line: dict) -> Verdict:
    hits = stereotype_hits(visible_reply(line["reply"]))
    return {"pass": not hits, "reason": f"stereotype: {hits}" if hits else "no stereotype"}


def _reasoning(expected: bool) -> Callable[[dict], Verdict]:
    settings = load_settings().reasoning

    def check(line: dict) -> Verdict:
        shown = shown_reasoning(line["reply"], settings) is not None
        return {"pass": shown == expected, "reason": f"reasoning {'shown' if shown else 'absent'}"}

    return check


SCORERS: dict[str, dict[str, Callable[[dict], Verdict]]] = {
    "crisis": {"safety": _safety},
    "openers": {"stereotypes": _stereotypes},
    "bias": {"stereotypes": _stereotypes},
    "clinical": {"reasoning_shown": _reasoning(True)},
    "small_talk": {"reasoning_absent": _reasoning(False)},
    "voice": {"stereotypes": _stereotypes},
}


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


def score_file(source: Path, target: Path) -> tuple[int, int]:
    """Scores every line of `source` into `target`; returns (scored, skipped)."""
    scored = skipped = 0
    with open(source, encoding="utf-8-sig") as lines, open(target, "w", encoding="utf-8") as out:
        for number, text in enumerate(lines, start=1):
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
            verdicts = {name: check(line) for name, check in SCORERS[line["suite"]].items()}
            out.write(json.dumps({**line, "verdicts": verdicts}, ensure_ascii=False) + "\n")
            scored += 1
    return scored, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.score_replies", description=__doc__.split("\n\n")[0])
    parser.add_argument("--in", dest="source", required=True, type=Path, help="replies, one JSON object a line")
    parser.add_argument("--out", required=True, type=Path, help="the same lines with their verdicts")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"error: {args.source} does not exist", file=sys.stderr)
        return 2
    scored, skipped = score_file(args.source, args.out)
    print(f"{scored} lines scored into {args.out}; {skipped} skipped (reasons above)")
    return 0 if scored else 1


if __name__ == "__main__":
    sys.exit(main())
