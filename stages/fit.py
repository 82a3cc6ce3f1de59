"""Train one stage: `python -m stages.fit --config stages/stage1.yaml [--trainer.max_steps 10 ...]`.

Read top to bottom: the stage YAML (over stages/common.yaml) is parsed; before anything heavy, the
run decides whether it resumes this stage (its `last.ckpt`, which takes precedence) or starts from
the previous stage's checkpoint-final (refused here, before the base model loads, when it is missing
or was built for another base model or expert layout); then the Trainer fits with the checkpoint,
early-stopping, time-limit and RNG callbacks; a finished stage writes `checkpoint-final/`.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException
from jsonargparse import Namespace

from datamodules.datamodule import StageDataModule
from datamodules.sources import SourceError
from datamodules.template import TemplateError
from moe.adapter_io import CONFIG_NAME, check_adapter_compatible
from moe.config import MoELoRAConfig
from moe.lightning_module import CheckpointMismatchError, MoELoRAModule, NonFiniteLossError
from stages.callbacks import BestCheckpoint, JobTimeLimitReached, LastCheckpoint, RngState, last_checkpoint
from stages.checkpoint_io import AtomicCheckpointIO
from stages.final import redacted_config, write_final

log = logging.getLogger(__name__)

COMMON_CONFIG = Path(__file__).parent / "common.yaml"
WANDB_ID_FILE = "wandb_run_id"  # in the checkpoint folder: pulled and published with the checkpoints

# Exit codes a job wrapper reads: retrying a config error or a non-finite loss repeats it; a
# preempted run (SIGTERM) is resumed by a retry.
EXIT_CONFIG = 2
EXIT_NONFINITE = 3
EXIT_PREEMPTED = 143  # 128 + SIGTERM, as a shell reports a process ended by it
PERMANENT_FAILURES = (EXIT_CONFIG, EXIT_NONFINITE)


class StageExit(SystemExit):
    """Ends the fit with `code` and a message for the user (printed to stderr by `main`)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass
class RunConfig:
    """Where a stage writes, what it starts from, and how it survives interruptions.

    output_root: every stage folder lives here (on Lightning AI: persistent storage, e.g.
    /teamspace/studios/this_studio or an s3 connection, so the next job finds the checkpoints).
    name: this stage's folder under output_root. init_from: the previous stage's adapter folder
    (relative to output_root), e.g. therapeutic_moe_stage1/checkpoint-final. val_every_n_steps:
    validation interval in optimizer steps (None: keep the trainer's own val_check_interval /
    check_val_every_n_epoch). job_time_limit_minutes: this job's training time (counted from the
    start of training: the base model's load and data preparation come first); past it the run saves and
    exits 0 so that the next job resumes (the 12 h stage cap is trainer.max_time, counted across jobs).
    """

    output_root: str = "."
    name: str = "therapeutic_moe_stage1"
    init_from: str | None = None
    checkpoint_every_minutes: float = 30.0
    val_every_n_steps: int | None = None
    early_stopping_patience: int = 3
    job_time_limit_minutes: float | None = None

    @property
    def stage_dir(self) -> Path:
        return Path(self.output_root) / self.name

    @property
    def checkpoint_dir(self) -> Path:
        return self.stage_dir / "checkpoints"

    @property
    def final_dir(self) -> Path:
        return self.stage_dir / "checkpoint-final"

    def previous_stage(self) -> Path | None:
        return None if self.init_from is None else Path(self.output_root) / self.init_from


def data_domains(expert_domains: list[str], domain_experts: dict[str, str] | None) -> list[str]:
    """The domain labels the data module may assign (MoELoRAConfig.domains, from the parsed fields)."""
    return list(domain_experts) if domain_experts is not None else list(expert_domains)


class StageCLI(LightningCLI):
    """LightningCLI plus the stage's run settings, resume/chaining decisions and callbacks."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunConfig, "run")
        # LightningCLI(run=False) has no ckpt_path. "last": this stage's last.ckpt when it
        # exists, else a fresh start; null: always fresh; or a path.
        parser.add_argument("--ckpt_path", type=str | None, default="last", help="checkpoint to resume")
        parser.link_arguments("model.base_model", "data.base_model")
        # The data's domain labels: the experts' names, or moe.domain_experts' domains when set.
        parser.link_arguments(
            ("model.moe.expert_domains", "model.moe.domain_experts"), "data.expert_domains", compute_fn=data_domains
        )

    def before_instantiate_classes(self) -> None:
        c = self.config
        self.run = run = RunConfig(**c.run)  # the one RunConfig of this fit
        self.resume_path = resolve_resume(c.ckpt_path, run)
        if self.resume_path is not None:
            c.model.init_adapter = None
            log.warning("resuming %s from %s", run.name, self.resume_path)
        elif run.init_from is not None:
            c.model.init_adapter = str(check_previous_stage(run.previous_stage(), c.model))
        if run.val_every_n_steps is not None:
            # Integer val_check_interval counts micro-batches, and across epochs only without
            # check_val_every_n_epoch.
            c.trainer.val_check_interval = run.val_every_n_steps * c.trainer.accumulate_grad_batches
            c.trainer.check_val_every_n_epoch = None
        c.trainer.default_root_dir = str(run.stage_dir)
        configure_loggers(c.trainer.logger, run, resuming=self.resume_path is not None)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        self.run_callbacks = stage_callbacks(self.run)
        # run=False: no subcommand, so the trainer's settings sit at the top of the config
        yaml_callbacks = self.config_init.trainer.get("callbacks") or []
        plugins = self.config_init.trainer.get("plugins") or []
        # The run's callbacks first: Lightning keeps the order among Checkpoint callbacks, so a mirror
        # given in the YAML (lightning_app.checkpoints.MirrorCheckpoints) publishes after the saves.
        return super().instantiate_trainer(
            callbacks=[*self.run_callbacks.values(), *yaml_callbacks],
            plugins=[*(plugins if isinstance(plugins, list) else [plugins]), AtomicCheckpointIO()],
            **kwargs,
        )


class _ParseOnly(StageCLI):
    """StageCLI that stops after parsing: its resume/chaining decisions read the stage folder, which
    belongs to the run, not to whoever reads the config."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def parse_stage_cli(configs: str | Path | Sequence[str | Path], overrides: Sequence[str] = ()) -> StageCLI:
    """The stage read exactly as `python -m stages.fit` reads it, nothing built: `.config` is the
    resolved config, `.parser` dumps it back to YAML.

    stages/common.yaml, then each config in order, then dotted overrides (`--data.data_root DIR`),
    with the fit's links and validation; no class is instantiated (no model loads). A bad setting
    raises jsonargparse's ArgumentError (an exception the caller reports; the fit's parser exits).
    """
    files = [configs] if isinstance(configs, (str, Path)) else list(configs)
    for path in files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--config {path} does not exist")
    with warnings.catch_warnings():  # the caller's argv is not the stage's: LightningCLI warns about both
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return _ParseOnly(
            MoELoRAModule,
            StageDataModule,
            run=False,
            auto_configure_optimizers=False,
            save_config_callback=None,
            parser_kwargs={"default_config_files": [str(COMMON_CONFIG)], "exit_on_error": False, "allow_abbrev": False},
            args=[*(arg for path in files for arg in ("--config", str(path))), *overrides],
        )


def parse_stage_config(configs: str | Path | Sequence[str | Path], overrides: Sequence[str] = ()) -> Namespace:
    """The stage's resolved config (see parse_stage_cli)."""
    return parse_stage_cli(configs, overrides).config


def resolve_resume(ckpt_path: str | None, run: RunConfig) -> Path | None:
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        last = last_checkpoint(run.checkpoint_dir)
        return last if last.is_file() else None
    path = Path(ckpt_path)
    if not path.is_file():
        raise StageExit(EXIT_CONFIG, f"error: --ckpt_path {path} does not exist")
    return path


def check_previous_stage(folder: Path, model: Any) -> Path:
    """The previous stage's adapter must exist and fit this stage's base model and expert layout."""
    if not (folder / CONFIG_NAME).is_file():
        raise StageExit(
            EXIT_CONFIG,
            f"error: run.init_from: no finished previous stage at {folder} ({CONFIG_NAME} missing). Run the "
            "previous stage to the end first (it writes checkpoint-final/), or fix run.init_from / "
            "run.output_root."
        )
    try:
        check_adapter_compatible(folder, MoELoRAConfig(**dict(model.moe)), model.base_model)
    except ValueError as error:
        raise StageExit(EXIT_CONFIG, f"error: run.init_from: {error}") from None
    return folder


def configure_loggers(loggers: Any, run: RunConfig, resuming: bool) -> None:
    """Loggers write under the stage folder; W&B runs offline unless WANDB_API_KEY (or an explicit
    WANDB_MODE, e.g. disabled in tests) says otherwise, and every job of one stage training logs
    to one W&B run (see wandb_run_id)."""
    for logger in logger_specs(loggers):
        args = logger.init_args
        if "save_dir" in args and args.save_dir in (None, ".", ""):
            args.save_dir = str(run.stage_dir)
        if not logger.class_path.endswith("WandbLogger"):
            continue
        args.name = args.name or run.name
        if not args.get("id"):
            args.id = wandb_run_id(run, resuming)
            args.resume = "allow"  # passed on to wandb.init: continue the run when it exists
        if not (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")):
            args.offline = True


def logger_specs(loggers: Any) -> list[Any]:
    """trainer.logger as a list of class_path/init_args specs (the YAML gives one, a list or none)."""
    return loggers if isinstance(loggers, list) else [loggers] if loggers else []


def keep_wandb_run_id(loggers: Any, run: RunConfig) -> None:
    """The first process keeps the W&B run id it chose (wandb_run_id) in the checkpoint folder, when
    the run starts: never while a config is parsed."""
    if not launched_rank_zero():
        return
    for logger in logger_specs(loggers):
        if logger.class_path.endswith("WandbLogger") and logger.init_args.get("id"):
            path = run.checkpoint_dir / WANDB_ID_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{logger.init_args.id}\n")


def launched_rank_zero() -> bool:
    """Whether this process is the job's first (the one every launcher starts first): the config is
    parsed in each process before the Trainer knows ranks, so read the launchers' variables."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def wandb_run_id(run: RunConfig, resuming: bool) -> str:
    """The W&B run id of this stage training: read from the checkpoint folder when resuming (it is
    pulled and published with the checkpoints, so the next job finds it), else a new one, which
    keep_wandb_run_id writes there when the run starts.

    Only the first process chooses it; Lightning starts the other ranks after the first one started
    its run, so they read its id (the id the logged run has). A rank started on its own (another
    machine) that finds no file gets an id of its own: W&B logs from rank 0 only."""
    path = run.checkpoint_dir / WANDB_ID_FILE
    if (resuming or not launched_rank_zero()) and path.is_file():
        return path.read_text().strip()
    return f"{run.name}-{os.urandom(4).hex()}"


def stage_callbacks(run: RunConfig) -> dict[str, Any]:
    # "best" before "last": at a validation end the best checkpoint is written first, so the `last`
    # written right after records the new best path.
    limit = run.job_time_limit_minutes
    return {
        "best": BestCheckpoint(
            dirpath=run.checkpoint_dir,
            filename="best-{step}-{val_loss:.4f}",
            monitor="val_loss",
            mode="min",
            save_top_k=1,
        ),
        "last": LastCheckpoint(run.checkpoint_dir, run.checkpoint_every_minutes * 60, None if limit is None else limit * 60),
        "early_stopping": EarlyStopping(monitor="val_loss", mode="min", patience=run.early_stopping_patience),
        "rng": RngState(),
        "lr": LearningRateMonitor(logging_interval="step"),
    }


def main(args: list[str] | None = None) -> None:
    """Train the stage; exits 0 when finished or stopped at the job time limit, EXIT_PREEMPTED after
    a SIGTERM save, EXIT_CONFIG or EXIT_NONFINITE for failures a retry would repeat."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        _fit(args)
    except StageExit as stop:
        print(stop.message, file=sys.stderr)
        raise


def _fit(args: list[str] | None) -> None:
    try:
        cli = StageCLI(
            MoELoRAModule,
            StageDataModule,
            run=False,
            auto_configure_optimizers=False,  # the module's configure_optimizers is the one schedule
            save_config_callback=None,  # the resolved config is written below, without secrets
            # allow_abbrev off: `--trainer.max_step 10` must be an error, not max_steps
            parser_kwargs={"default_config_files": [str(COMMON_CONFIG)], "allow_abbrev": False},
            args=args,
        )
    except (SourceError, ValueError) as error:  # a bad setting: only parsing and cheap checks have run
        raise StageExit(EXIT_CONFIG, f"error: {error}") from None
    run = cli.run
    run.stage_dir.mkdir(parents=True, exist_ok=True)
    (run.stage_dir / "config.yaml").write_text(redacted_config(cli.parser, cli.config))
    keep_wandb_run_id(cli.config.trainer.logger, run)
    trainer, callbacks = cli.trainer, cli.run_callbacks
    last = last_checkpoint(run.checkpoint_dir)
    try:
        trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.resume_path)
    except (SourceError, TemplateError) as error:  # data setup runs before the base model loads
        raise StageExit(EXIT_CONFIG, f"error: {error}") from None
    except CheckpointMismatchError as error:
        raise StageExit(EXIT_CONFIG, f"error: {cli.resume_path}: {error}") from None
    except NonFiniteLossError as error:
        if last.is_file():
            kept = (
                f"the last good checkpoint is {last}. Check the data, or resume from it with a lower rate "
                f"(applied on resume): the same command plus --model.lr {cli.config.model.lr / 10:g}"
            )
        else:
            kept = "no checkpoint was written yet. Check the data or lower model.lr, then run the same command"
        raise StageExit(EXIT_NONFINITE, f"error: {error}; {kept}.") from None
    except SIGTERMException:
        raise StageExit(EXIT_PREEMPTED, f"stopped by SIGTERM at step {trainer.global_step}: saved {last}; run the same command to resume") from None
    except JobTimeLimitReached:
        return
    write_final(trainer, cli.model, cli.datamodule, callbacks["best"], run.final_dir, cli.parser, cli.config)


if __name__ == "__main__":
    main()
