"""What the launcher and the pipeline read from a stage's config (stages.fit.parse_stage_config).

The data module alone is cheap to build (it only checks its sources), and it is what says which
files a stage reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jsonargparse import Namespace

from datamodules.prepare import DataSettings
from moe.config import MoELoRAConfig
from stages.fit import StageCLI, parse_stage_config

REPO_ROOT = Path(__file__).resolve().parent.parent
# A stage's plain-LoRA baseline run is the stage's folder name with this suffix.
PLAIN_LORA_SUFFIX = "_plain_lora"


def write_stage(cli: StageCLI, path: str | Path) -> Path:
    """The (possibly edited) resolved config of stages.fit.parse_stage_cli as a stage YAML that
    `stages.fit --config` reads back to the same values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cli.parser.dump(cli.config))
    return path


def data_settings(config: Namespace) -> DataSettings:
    """The stage's data settings (checks every source exists; reads nothing yet)."""
    return DataSettings(**config.data.as_dict())


@dataclass(frozen=True)
class StagePlan:
    """What the launcher and the pipeline need to know about a stage."""

    name: str
    stage: int
    output_root: str
    init_from: str | None
    data_root: str

    @property
    def stage_dir(self) -> Path:
        return Path(self.output_root) / self.name


def stage_plan(config: Namespace) -> StagePlan:
    return StagePlan(config.run.name, config.data.stage, config.run.output_root, config.run.init_from, config.data.data_root)


def read_stage(configs: list[str], overrides: Sequence[str] = ()) -> StagePlan:
    return stage_plan(parse_stage_config(configs, overrides))


def stage_files(data: DataSettings) -> dict[str, list[str]]:
    """Each source's files relative to the data root: what the stage's job must find on storage.

    A source with its own `root` inside this repository travels with the checkout; one elsewhere
    cannot reach a job through the data upload.
    """
    data_root = Path(data.data_root).expanduser().resolve()
    files: dict[str, list[str]] = {}
    for source, paths in data.files.items():
        for path in (p.resolve() for p in paths):
            if path.is_relative_to(data_root):
                files.setdefault(source, []).append(str(path.relative_to(data_root)))
            elif not path.is_relative_to(REPO_ROOT):
                raise ValueError(
                    f"source {source!r} reads {path}, outside data_root {data_root}: a job sees only "
                    "data_root's upload; move it under data_root (and drop its `root`/absolute `path`)"
                )
    return files


def plain_lora_overrides(config: Namespace) -> list[str]:
    """stages.fit overrides that train the stage's plain-LoRA baseline: the same configs, data, steps
    and learning schedule, the mixture replaced by MoELoRAConfig.plain_lora() (one expert of the same
    trainable budget, every domain on it, no router losses), its own run folder NAME_plain_lora and,
    for a later stage, the previous stage's plain LoRA as its start (the mixture's chain, suffixed)."""
    mixture = MoELoRAConfig(**config.model.moe.as_dict())
    plain = mixture.plain_lora().to_dict()
    changed = {k: v for k, v in plain.items() if v != mixture.to_dict()[k]}
    args = [f"--model.moe.{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in changed.items()]
    args.append(f"--run.name={config.run.name}{PLAIN_LORA_SUFFIX}")
    if config.run.init_from is not None:
        first, *rest = Path(config.run.init_from).parts
        args.append(f"--run.init_from={Path(first + PLAIN_LORA_SUFFIX, *rest)}")
    return args
