"""`.lightning/jobs.yaml`: where job data and checkpoints live and what each stage runs on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from datamodules.typed_settings import build

JOBS_YAML = Path(__file__).resolve().parent.parent / ".lightning" / "jobs.yaml"
STRATEGIES = JOBS_YAML.parent / "strategies"


@dataclass(frozen=True)
class JobSettings:
    """One stage's job. `hours`: training time per job (the fit's own stop); `setup_hours`: allowed
    before training starts (pulling checkpoints, the base model's download, tokenisation). The hard
    limit (lightning_app.fit_job) is their sum plus the publish margin; the platform's `max_runtime`
    only reserves some machines."""

    machine: str = "H100"
    hours: float = 12.0
    setup_hours: float = 1.0
    max_run_attempts: int = 3
    # for machines with more than one GPU: .lightning/strategies/<strategy>.yaml (ddp or fsdp)
    strategy: str = "ddp"

    def __post_init__(self) -> None:
        if not (STRATEGIES / f"{self.strategy}.yaml").is_file():
            known = sorted(p.stem for p in STRATEGIES.glob("*.yaml"))
            raise ValueError(f"strategy {self.strategy!r}: no {STRATEGIES}/{self.strategy}.yaml; known: {known}")
        if self.hours <= 0 or self.setup_hours < 0:
            raise ValueError(f"hours must be > 0 and setup_hours >= 0, got {self.hours} and {self.setup_hours}")
        if self.max_run_attempts < 1:
            raise ValueError(f"max_run_attempts must be >= 1, got {self.max_run_attempts}")


@dataclass(frozen=True)
class Storage:
    """Paths on storage every job sees (a teamspace S3 connection or dataset)."""

    data: str
    checkpoints: str


@dataclass(frozen=True)
class Caches:
    """hf_home: the Hugging Face home (HF_HOME); null puts it on scratch. data: the folder on storage
    that keeps the tokenized-data cache across jobs (lightning_app.data_cache: a job copies its
    stage's entries to scratch, prepares there and publishes what it built); null: scratch only, so
    every job tokenizes its stage again."""

    hf_home: str | None = None
    data: str | None = None


@dataclass(frozen=True)
class JobsConfig:
    storage: Storage
    scratch: str = "/tmp/therapeutic-moe"
    teamspace: str | None = None
    studio: str | None = None
    workdir: str | None = None
    # evaluation jobs (lightning_app.pipeline): one machine of this kind, whatever the fit runs on
    eval_machine: str = "H100"
    pass_env: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    job: JobSettings = field(default_factory=JobSettings)
    stages: dict[str, JobSettings] = field(default_factory=dict)
    caches: Caches = field(default_factory=Caches)

    def __post_init__(self) -> None:
        secret_defaults = sorted(set(self.pass_env) & set(self.environment))
        if secret_defaults:
            raise ValueError(f"{secret_defaults} are both pass_env and environment; keep secrets in pass_env only")

    def cache_dirs(self) -> dict[str, str]:
        """Where a job uses its caches: never its home, whose contents become job artifacts. The data
        cache is always on scratch (prepare renames into it; see Caches.data for its stored copy)."""
        return {"hf_home": self.caches.hf_home or f"{self.scratch}/hf_home", "data": f"{self.scratch}/data_cache"}

    def for_stage(self, stage: str) -> JobSettings:
        """The stage's own entry, else the `job` defaults (demo and custom configs)."""
        return self.stages.get(stage, self.job)


def load_jobs_config(path: Path = JOBS_YAML) -> JobsConfig:
    """Parse and check jobs.yaml (jsonargparse, datamodules.typed_settings); a stage entry only
    overrides the keys of `job` it names."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if isinstance(raw, Mapping) and isinstance(raw.get("stages"), Mapping):
        job = raw.get("job") or {}
        raw = {**raw, "stages": {name: _inherit(job, entry) for name, entry in raw["stages"].items()}}
    return build(JobsConfig, raw, str(path))


def _inherit(job: object, entry: object) -> object:
    """A stage's entry over the `job` defaults (what is not a mapping is left for the check to name)."""
    entry = {} if entry is None else entry
    return {**job, **entry} if isinstance(job, Mapping) and isinstance(entry, Mapping) else entry
