"""A stage YAML read the way `python -m stages.fit` reads it, without building anything heavy.

The same LightningCLI class, common.yaml defaults, links and validation as the fit; classes are not
instantiated (no model loads). The data module alone is cheap to build (it only checks its sources),
and it is what says which files a stage reads.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from jsonargparse import Namespace

from datamodules.datamodule import StageDataModule
from moe.lightning_module import MoELoRAModule
from stages.fit import COMMON_CONFIG, StageCLI

REPO_ROOT = Path(__file__).resolve().parent.parent


class _ParseOnly(StageCLI):
    """StageCLI that stops after parsing: its resume/chaining decisions read the stage folder, which
    belongs to the run, not to whoever inspects the config."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


Configs = str | Path | list[str] | tuple[str, ...]


def _config_args(configs: Configs) -> list[str]:
    """`--config` once per file, in order (a stage YAML, then layers such as stages/demo.yaml)."""
    files = [configs] if isinstance(configs, (str, Path)) else list(configs)
    return [arg for path in files for arg in ("--config", str(path))]


def stage_cli(configs: Configs, overrides: list[str] | tuple[str, ...] = ()) -> _ParseOnly:
    """The parsed CLI: `.config` is the resolved config, `.parser` dumps it back to YAML."""
    with warnings.catch_warnings():  # our own argv is not the stage's: LightningCLI warns about both
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return _ParseOnly(
            MoELoRAModule,
            StageDataModule,
            run=False,
            auto_configure_optimizers=False,
            save_config_callback=None,
            parser_kwargs={"default_config_files": [str(COMMON_CONFIG)]},
            args=[*_config_args(configs), *overrides],
        )


def parse_stage(configs: Configs, overrides: list[str] | tuple[str, ...] = ()) -> Namespace:
    """The stage's resolved config (common.yaml, each config in order, then dotted `overrides`)."""
    return stage_cli(configs, overrides).config


def write_stage(cli: _ParseOnly, path: str | Path) -> Path:
    """The (possibly edited) resolved config as a stage YAML that `stages.fit --config` reads back
    to the same values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cli.parser.dump(cli.config))
    return path


def data_module(config: Namespace) -> StageDataModule:
    """The stage's StageDataModule (checks every source exists; reads nothing yet)."""
    return StageDataModule(**config.data.as_dict())


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


def read_stage(configs: Configs, overrides: list[str] | tuple[str, ...] = ()) -> StagePlan:
    return stage_plan(parse_stage(configs, overrides))


def stage_files(data: StageDataModule) -> dict[str, list[str]]:
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


def main(argv: list[str] | None = None) -> int:
    """`python -m lightning_app.stage_config --config C --out FILE [--data.data_root DIR ...]`: the
    resolved config with overrides as one YAML, for commands that take no overrides."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lightning_app.stage_config", description="write a resolved stage YAML")
    parser.add_argument("--config", required=True, action="append", help="stage YAML; repeat to layer")
    parser.add_argument("--out", required=True, type=Path)
    args, overrides = parser.parse_known_args(argv)
    print(write_stage(stage_cli(args.config, overrides), args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
