"""`python -m datamodules.voice build --transcripts DIR --out PATH --speaker NAME [--config voice.yaml]`
and `python -m datamodules.voice risk --in FILE.jsonl [--out FILE.jsonl] [--judge.model ...]`.

Flags and YAML keys are the fields of `BuildConfig` (nested: `--openai.model`, `openai: {model: ...}`).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from datamodules.voice.build import VoiceBuildError, build
from datamodules.voice.config import BuildConfig, JudgeEndpoint
from datamodules.voice.generators import GeneratorError
from datamodules.voice.journal import JournalMismatch
from datamodules.voice.judged import VoiceJudge
from datamodules.voice.screen import ScreenInputError, screen


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m datamodules.voice", description=__doc__)
    build_parser = ArgumentParser(description=BuildConfig.__doc__)
    build_parser.add_argument(
        "--config", action=ActionConfigFile, help="a YAML with any of the settings below"
    )
    build_parser.add_class_arguments(BuildConfig, None)
    risk_parser = ArgumentParser(description="one {\"text\"} a line -> the same lines with \"risk\" added")
    risk_parser.add_argument("--in", dest="input", type=Path, required=True, help="JSONL, one {\"text\"} a line")
    risk_parser.add_argument("--out", type=Path | None, default=None, help="JSONL written here (default stdout)")
    risk_parser.add_class_arguments(JudgeEndpoint, "judge")
    commands = parser.add_subcommands()
    commands.add_subcommand("build", build_parser, help="transcripts -> conversations")
    commands.add_subcommand("risk", risk_parser, help="the builder's risk detector on messages")
    return parser


def parse_config(argv: list[str] | None = None) -> BuildConfig:
    parser = make_parser()
    settings = vars(parser.instantiate(parser.parse_args(argv)).build).copy()
    settings.pop("config", None)
    return BuildConfig(**settings)


def run_risk(argv: list[str]) -> dict:
    parser = make_parser()
    settings = parser.instantiate(parser.parse_args(argv)).risk
    judge = VoiceJudge(settings.judge) if settings.judge.configured else None
    try:
        counts = screen(settings.input, settings.out, judge)
    except (ScreenInputError, FileNotFoundError) as error:
        print(f"voice risk failed: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    summary = {"counts": dict(counts), "judge": dict(judge.counts) if judge else None}
    print(json.dumps(summary), file=sys.stderr)
    return summary


def main(argv: list[str] | None = None) -> dict:
    """Exit status 1 with the reason when the build writes no training conversation or cannot run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["risk"]:
        return run_risk(argv)
    try:
        stats = build(parse_config(argv))
    except (VoiceBuildError, GeneratorError, JournalMismatch, FileNotFoundError) as error:
        print(f"voice build failed: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps({k: stats[k] for k in ("lectures", "passages", "risk", "filters", "conversations")}))
    return stats


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(sys.argv[1:])
