"""`.lightning/jobs.yaml`: where job data and checkpoints live and what each stage runs on."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

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
    # hf_home (HF_HOME) and data (the tokenized-data cache): null puts them on scratch.
    caches: dict[str, str | None] = field(default_factory=dict)

    def cache_dirs(self) -> dict[str, str]:
        """Where a job keeps its caches: never its home, whose contents become job artifacts."""
        unknown = sorted(set(self.caches) - {"hf_home", "data"})
        if unknown:
            raise ValueError(f"caches: unknown key(s) {unknown}; known: ['data', 'hf_home']")
        defaults = {"hf_home": f"{self.scratch}/hf_home", "data": f"{self.scratch}/data_cache"}
        return {key: self.caches.get(key) or default for key, default in defaults.items()}

    def for_stage(self, stage: str) -> JobSettings:
        """The stage's own entry, else the `job` defaults (demo and custom configs)."""
        return self.stages.get(stage, self.job)


def _check_keys(cls: type, values: dict, where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")


def _build(cls: type, values: dict, where: str):
    _check_keys(cls, values, where)
    return cls(**values)


def load_jobs_config(path: Path = JOBS_YAML) -> JobsConfig:
    """Parse and check jobs.yaml; a stage entry only overrides the keys it names."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    where = str(path)
    if "storage" not in raw:
        raise ValueError(f"{where}: `storage: {{data: ..., checkpoints: ...}}` is required")
    job = _build(JobSettings, raw.pop("job", None) or {}, f"{where} job")
    stages = {
        name: _merge(job, entry or {}, f"{where} stages.{name}")
        for name, entry in (raw.pop("stages", None) or {}).items()
    }
    storage = _build(Storage, raw.pop("storage"), f"{where} storage")
    config = _build(JobsConfig, raw | {"storage": storage, "job": job, "stages": stages}, where)
    secret_defaults = sorted(set(config.pass_env) & set(config.environment))
    if secret_defaults:
        raise ValueError(f"{where}: {secret_defaults} are both pass_env and environment; keep secrets in pass_env only")
    return config


def _merge(base: JobSettings, overrides: dict, where: str) -> JobSettings:
    _check_keys(JobSettings, overrides, where)
    return replace(base, **overrides)
