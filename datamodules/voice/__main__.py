"""`python -m datamodules.voice build --transcripts DIR --out PATH --speaker NAME [--config voice.yaml]`.

Flags and YAML keys are the fields of `BuildConfig` (nested: `--openai.model`, `openai: {model: ...}`).
"""

from __future__ import annotations

import json
import logging
import sys

from jsonargparse import ActionConfigFile, ArgumentParser

from datamodules.voice.build import VoiceBuildError, build
from datamodules.voice.config import BuildConfig
from datamodules.voice.generators import GeneratorError
from datamodules.voice.journal import JournalMismatch


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m datamodules.voice", description=__doc__)
    build_parser = ArgumentParser(description=BuildConfig.__doc__)
    build_parser.add_argument(
        "--config", action=ActionConfigFile, help="a YAML with any of the settings below"
    )
    build_parser.add_class_arguments(BuildConfig, None)
    parser.add_subcommands().add_subcommand("build", build_parser, help="transcripts -> conversations")
    return parser


def parse_config(argv: list[str] | None = None) -> BuildConfig:
    parser = make_parser()
    settings = vars(parser.instantiate(parser.parse_args(argv)).build).copy()
    settings.pop("config", None)
    return BuildConfig(**settings)


def main(argv: list[str] | None = None) -> dict:
    """Exit status 1 with the reason when the build writes no training conversation or cannot run."""
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
