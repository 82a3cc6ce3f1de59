"""Data preparation as its own step: `prepare(settings) -> Prepared`, no Lightning.

Read top to bottom in `prepare`: read -> clean (inside the readers) -> dedup -> split by group ->
weights -> replay -> encode (chat template, labels, windows; datasets.map over num_proc processes)
-> plan rows -> save. Reading (a process per source) and the near-dedup signatures also use up to
num_proc processes; every step gives the same output for any number of processes. The result is cached on disk under a key of what can change a token: the
source files' fingerprints, the registry entries, the tokenizer, the template, every setting that
changes the tokens, and the code `prepare` runs (the modules this module imports, transitively,
from this repository: never the voice builder, the samples or the API clients), so an unchanged
second run only memory-maps it. `Prepared` is what training, evaluation, inspect and the
benchmarks read: the examples, the packing plans, the report and the tokenizer.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import datasets
from transformers import PreTrainedTokenizerBase

from datamodules.conversation import Conversation
from datamodules.packing import RowDataset, plan_rows
from datamodules.registry import DEFAULT_DATA_ROOT, SourceSpec, load_registry, stage_sources
from datamodules.replay import ReplayPlan, choose_replay, replay_pool
from datamodules.sources import ReadOptions, SourceError, check_sources
from datamodules.splits import SPLITS, SplitSettings, read_and_split
from datamodules.template import (
    TOO_LONG,
    TRUNCATED,
    WINDOW,
    TemplateOptions,
    check_template,
    control_strings,
    encode_batch,
)
from moe.base_model import load_tokenizer
from moe.batch import IGNORE_INDEX, Collate

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = "~/.cache/therapeutic-moe/data"
REPO_ROOT = Path(__file__).resolve().parents[1]


def code_fingerprint(entry: str = __name__, root: Path | None = None) -> dict[str, str]:
    """sha256 of every repository module `entry` imports, itself included, transitively, keyed by
    its path relative to `root`: the code whose change can change a token. Found from the import
    statements (ast), so a module only reachable through a function-level import counts too, and a
    package's __init__.py counts wherever one of its modules does."""
    root = root if root is not None else REPO_ROOT
    seen: dict[str, Path] = {}
    pending = [entry]
    while pending:
        name = pending.pop()
        for path in _module_files(name, root):
            key = path.relative_to(root).as_posix()
            if key in seen:
                continue
            seen[key] = path
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
                if isinstance(node, ast.Import):
                    pending += [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                        base = f"{parent}.{base}" if base else parent
                    pending.append(base)
                    pending += [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import module`
    return {key: hashlib.sha256(seen[key].read_bytes()).hexdigest() for key in sorted(seen)}


def _module_files(name: str, root: Path) -> list[Path]:
    """The repository files a dotted module name loads: each package's __init__.py on the way, then
    the module itself; nothing for a module outside `root` (the standard library, site-packages)."""
    parts = name.split(".")
    if not parts[0] or not (root / parts[0]).is_dir() and not (root / f"{parts[0]}.py").is_file():
        return []
    files = []
    for depth in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:depth])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
            break
        elif not base.is_dir():
            break
    return files


def machine_cores() -> int:
    """CPU cores this process may use (the affinity mask where there is one, as in containers)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class DataSettings:
    """The data settings of one stage (the stage YAML's `data:` section), checked on creation:
    every source path and schema exists before any model loads.

    Args:
        stage: which registry stage's enabled sources to read (1 dialogue, 2 reasoning, 3 voice).
        base_model: tokenizer to use (linked from `model.base_model`): Hub id, folder or `tiny`.
        expert_domains: the domain labels the model knows (linked from the model's MoE config:
            MoELoRAConfig.domains, the experts' names unless `domain_experts` maps the domains); a
            token's domain id is its example's index in this list.
        data_root: where the registry's relative paths live.
        sources: registry overrides and additions, `{name: {field: value}}` (e.g. `enabled: false`).
        registry_path: another registry file instead of datamodules/registry.yaml.
        max_seq_length: row length in tokens; longer conversations become windows, are cut or are
            dropped (`overflow`).
        micro_batch_size: rows per batch.
        packing: rows of exactly max_seq_length holding several examples; False: one padded
            example per row, with attention_mask.
        val_fraction, test_fraction: held-out shares, chosen by a stable hash of each group.
        system_prompt: added to conversations that have no system turn; null adds none.
        assistant_turns: `all` trains every assistant turn, `last` only the final one.
        overflow: `window` (default) makes windows that each end on an assistant turn and train the
            turns no earlier window trained, with the earlier context that fits; `truncate` cuts
            after the last assistant turn that fits; `drop` skips the conversation. Labelled tokens
            no example trains are reported per source (`tokens_lost`).
        cot_layout: stage-2 reasoning layout, `think` or `reasoning_response`.
        dedup: remove exact and near-duplicate conversations across sources before splitting.
        near_duplicate_threshold: MinHash Jaccard similarity of both prompts and replies that
            counts as a near duplicate; null checks exact duplicates only.
        cache_dir: where tokenized, packed data is kept between runs.
        num_proc: processes for reading (one per source), near-dedup signatures and tokenization
            (datasets.map); null: every core of the machine. The output is the same for any number.
        num_workers: DataLoader workers.
        seed: the train shuffle's seed (the epoch is added to it).
        template_check_examples: how many train conversations `check_template` decodes at setup
            (0 turns the self-check off).
        replay_share: share of the train split's tokens replayed from earlier stages' train splits
            (datamodules/replay.py; 0 turns replay off; never their val or test splits).
        replay_stages: which earlier stages to replay; null: all of them.
    """

    def __init__(
        self,
        stage: int,
        base_model: str,
        expert_domains: list[str],
        data_root: str = DEFAULT_DATA_ROOT,
        sources: dict[str, dict[str, Any]] | None = None,
        registry_path: str | None = None,
        max_seq_length: int = 2048,
        micro_batch_size: int = 1,
        packing: bool = True,
        val_fraction: float = 0.02,
        test_fraction: float = 0.02,
        system_prompt: str | None = None,
        assistant_turns: Literal["all", "last"] = "all",
        overflow: Literal["window", "truncate", "drop"] = "window",
        cot_layout: Literal["think", "reasoning_response"] = "think",
        dedup: bool = True,
        near_duplicate_threshold: float | None = 0.85,
        cache_dir: str = DEFAULT_CACHE_DIR,
        num_proc: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        template_check_examples: int = 4,
        replay_share: float = 0.0,
        replay_stages: list[int] | None = None,
    ) -> None:
        super().__init__()  # cooperative: StageDataModule puts LightningDataModule next in line
        if micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(f"val_fraction {val_fraction} + test_fraction {test_fraction} must stay below 1")
        self.stage = stage
        self.base_model = base_model
        self.expert_domains = list(expert_domains)
        self.data_root = data_root
        self.max_seq_length = max_seq_length
        self.micro_batch_size = micro_batch_size
        self.packing = packing
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.dedup = dedup
        self.near_duplicate_threshold = near_duplicate_threshold
        self.cache_dir = Path(cache_dir).expanduser()
        self.num_proc = num_proc if num_proc is not None else machine_cores()
        self.num_workers = num_workers
        self.seed = seed
        self.template_check_examples = template_check_examples
        self.template = TemplateOptions(max_seq_length, system_prompt, assistant_turns, overflow)
        self.read_options = ReadOptions(cot_layout=cot_layout, expert_domains=tuple(self.expert_domains))
        registry = load_registry(sources, registry_path)
        self.specs: dict[str, SourceSpec] = stage_sources(registry, stage)
        self.replay = ReplayPlan.for_stage(stage, replay_share, replay_stages)
        self.replay_specs = self.replay.sources(registry)
        self.files = self.check()
        self._tokenizer: PreTrainedTokenizerBase | None = None

    # -- cheap checks, before any model loads ---------------------------------------------------------
    def check(self) -> dict[str, list[Path]]:
        """Every source path and schema exists and is known; raises SourceError naming the fix."""
        if not self.specs:
            raise SourceError(
                f"stage {self.stage} has no enabled source in the registry; add one under `data: sources:`"
            )
        files = check_sources(self.specs, self.data_root, self.expert_domains)
        if self.replay_specs:  # replayed sources are checked as early: a missing one stops here too
            try:
                replayed = check_sources(self.replay_specs, self.data_root, self.expert_domains)
            except SourceError as error:
                raise SourceError(
                    f"{error}\n(replayed from stage(s) {list(self.replay.stages)} into stage {self.stage}; "
                    "`data.replay_share: 0` trains without replay)"
                ) from None
            files |= {f"replay:{name}": paths for name, paths in replayed.items()}
        return files

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.base_model)
        return self._tokenizer

    @property
    def split_settings(self) -> SplitSettings:
        """How this stage's sources, and the earlier stages' it replays, are read and split: with the
        active tokenizer's control strings, so replay rebuilds exactly the train split the earlier
        stage trained on (other cleaning would shift its splits and could replay its test split)."""
        return SplitSettings(
            self.data_root,
            replace(self.read_options, control_strings=control_strings(self.tokenizer)),
            self.val_fraction,
            self.test_fraction,
            self.dedup,
            self.near_duplicate_threshold,
        )

    # -- cache ------------------------------------------------------------------------------------------
    def cache_key(self) -> str:
        """Changes whenever the tokens would: source files, registry entries, tokenizer, template,
        settings, or the data code itself."""
        tokenizer = self.tokenizer
        parts = {
            "files": {
                name: [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
                for name, files in self.files.items()
            },
            "specs": {name: asdict(spec) for name, spec in self.specs.items()},
            "replay": [asdict(self.replay), {name: asdict(spec) for name, spec in self.replay_specs.items()}],
            "tokenizer": hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest(),
            "chat_template": tokenizer.chat_template,
            "special_tokens": tokenizer.special_tokens_map,
            "template": asdict(self.template),
            "read": asdict(self.read_options),
            "settings": [
                self.packing,
                self.val_fraction,
                self.test_fraction,
                self.dedup,
                self.near_duplicate_threshold,
                self.data_root,
            ],
            "code": code_fingerprint(),
        }
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        return f"stage{self.stage}-{digest[:16]}"

    @cached_property
    def cache_path(self) -> Path:
        """This run's cache folder (the key is computed once: hashing a large tokenizer takes a moment)."""
        return self.cache_dir / self.cache_key()

    def _with_replay(
        self, train: datasets.Dataset, domain_index: dict[str, int]
    ) -> tuple[datasets.Dataset, dict[str, Any]]:
        """The train split plus `replay_share` of its tokens from the earlier stages' train splits."""
        pool = replay_pool(self.replay_specs, self.split_settings)
        stage_tokens = sum(column(train, "length"))
        chosen, figures = choose_replay(pool, stage_tokens, self.replay.share, self.tokenizer, self.template)
        if abs(figures["share"] - self.replay.share) > 0.02:
            log.warning(
                "replay: %.1f%% of train tokens instead of %.1f%% (the earlier stages hold too little)",
                100 * figures["share"],
                100 * self.replay.share,
            )
        if not chosen:
            return train, figures
        conversations = _conversation_dataset(chosen, domain_index)
        replayed = conversations.map(
            _encode,
            batched=True,
            batch_size=256,
            remove_columns=conversations.column_names,  # one conversation -> several windows
            fn_kwargs={"tokenizer": self.tokenizer, "options": self.template},
            features=_EXAMPLE_FEATURES,
            desc="chat template (replay)",
        ).filter(lambda status: status != TOO_LONG, input_columns="status", desc="drop too long")
        return datasets.concatenate_datasets([train, replayed]), figures

    def _plan(self, examples: datasets.Dataset) -> list[list[int]]:
        """Rows of example indices: packed by best-fit decreasing, or one example per row."""
        if not self.packing:
            return [[i] for i in range(len(examples))]
        return plan_rows(column(examples, "length"), self.max_seq_length)

    def _figures(
        self, report: dict[str, dict], examples: datasets.DatasetDict, plans: dict[str, list[list[int]]]
    ) -> dict[str, Any]:
        tokens: dict[str, Counter] = defaultdict(Counter)
        for name in SPLITS:
            for source, length in zip(column(examples[name], "source"), column(examples[name], "length")):
                tokens[source][name] += length
        for source, figures in report.items():
            figures["tokens"] = sum(tokens[source].values())
            figures["tokens_per_split"] = {name: tokens[source][name] for name in SPLITS}
        splits = {}
        for name in SPLITS:
            lengths = column(examples[name], "length")
            rows = plans[name]
            slots = (
                len(rows) * self.max_seq_length
                if self.packing
                else sum(  # padding mode: each batch pads to its longest row (estimated in plan order)
                    max(lengths[i] for row in rows[b : b + self.micro_batch_size] for i in row)
                    * len(rows[b : b + self.micro_batch_size])
                    for b in range(0, len(rows), self.micro_batch_size)
                )
            )
            real = sum(lengths[i] for row in rows for i in row)
            splits[name] = {
                "examples": len(lengths),
                "rows": len(rows),
                "tokens": real,
                "trained_tokens": sum(column(examples[name], "trained")),
                "efficiency": real / slots if slots else 0.0,
            }
        domains = Counter({domain: 0 for domain in self.expert_domains})
        for domain, length in zip(column(examples["train"], "domain"), column(examples["train"], "length")):
            domains[domain] += length
        return {"sources": report, "splits": splits, "train_tokens_per_domain": dict(domains)}



def prepare(settings: DataSettings) -> Prepared:
    """The stage's prepared data: built into the cache when missing, then memory-mapped."""
    path = settings.cache_path
    if not (path / "report.json").is_file():
        build(settings, path)
    return Prepared.load(settings, path)


def build(settings: DataSettings, target: Path) -> None:
    """read -> clean -> dedup -> split -> weight -> encode -> replay -> plan -> save, written to a
    temporary folder and renamed, so a cache is never half-written. The report keeps each phase's
    wall-clock seconds (`seconds`), which benchmarks.data_throughput reads."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal started
        now = time.perf_counter()
        seconds[phase], started = round(now - started, 3), now

    result, splits = read_and_split(settings.specs, settings.split_settings, settings.num_proc)
    report = {name: _source_figures(r) for name, r in result.report.items()}
    lap("read_clean_dedup_split")
    domain_index = {d: i for i, d in enumerate(settings.expert_domains)}
    conversation_sets = datasets.DatasetDict(
        {name: _conversation_dataset(splits[name], domain_index) for name in SPLITS}
    )
    # One table per split: the conversation (for the template check and evaluation) beside its
    # tokens. Row assembly reads only the token columns (select_columns: no copy).
    examples = datasets.DatasetDict(
        {
            name: conversations.map(
                _encode,
                batched=True,
                batch_size=256,
                # a process per 256-conversation batch at most: starting workers costs more
                num_proc=min(settings.num_proc, -(-len(conversations) // 256)) if settings.num_proc > 1 else None,
                remove_columns=conversations.column_names,  # one conversation -> several windows
                fn_kwargs={"tokenizer": settings.tokenizer, "options": settings.template},
                features=_EXAMPLE_FEATURES,
                desc=f"chat template ({name})",
            )
            if len(conversations)
            # datasets skips map on an empty table, new columns and all
            else datasets.Dataset.from_dict(
                {k: [] for k in _EXAMPLE_FEATURES}, features=_EXAMPLE_FEATURES
            )
            for name, conversations in conversation_sets.items()
        }
    )
    for name in SPLITS:
        statuses = zip(
            column(examples[name], "source"),
            column(examples[name], "part"),
            column(examples[name], "status"),
            column(examples[name], "lost"),
        )
        for source, part, status, lost in statuses:
            figures = report[source]
            figures["tokens_lost"] += lost
            if status == TOO_LONG:
                figures["kept"] -= 1
                figures["skipped"][f"longer than max_seq_length {settings.max_seq_length}"] += 1
            elif status == TRUNCATED:
                figures["truncated"] += 1
            elif status == WINDOW:
                figures["windows"] += 1
                figures["windowed"] += part == 0
    examples = examples.filter(
        lambda status: status != TOO_LONG, input_columns="status", desc="drop too long"
    )
    lap("encode")
    replay_figures = None
    if settings.replay.share:
        examples["train"], replay_figures = settings._with_replay(examples["train"], domain_index)
        lap("replay")
    plans = {name: settings._plan(examples[name]) for name in SPLITS}
    figures = settings._figures(report, examples, plans)
    lap("plan")
    if replay_figures is not None:
        figures["replay"] = replay_figures
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        # An empty split needs one (empty) shard, or load_from_disk fails on it.
        shards = {name: 1 for name, split in examples.items() if len(split) == 0}
        examples.save_to_disk(staging / "examples", num_shards=shards or None)
        (staging / "plans.json").write_text(json.dumps(plans))
        lap("save")
        figures["seconds"] = seconds
        (staging / "report.json").write_text(json.dumps(figures, indent=1))
        try:
            os.replace(staging, target)
        except OSError:  # another process (a second node) built the same key first: keep its copy
            if not (target / "report.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class Prepared:
    """A stage's prepared data: examples per split (each conversation beside its tokens), the
    packing plans, the report (inspect's figures) and the tokenizer they were made with."""

    settings: DataSettings
    examples: datasets.DatasetDict
    plans: dict[str, list[list[int]]]
    report: dict[str, Any]

    @classmethod
    def load(cls, settings: DataSettings, path: Path) -> Prepared:
        prepared = cls(
            settings,
            datasets.load_from_disk(str(path / "examples")),
            json.loads((path / "plans.json").read_text()),
            json.loads((path / "report.json").read_text()),
        )
        if prepared.plans["train"] == []:
            raise SourceError(
                f"stage {settings.stage}: the train split is empty after reading, dedup and splitting"
            )
        return prepared

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.settings.tokenizer

    @property
    def tokenizer_id(self) -> str:
        return self.settings.base_model

    def check_template(self, n: int = 4) -> int:
        """Decode the labelled tokens of the first `n` train conversations and of the first one of
        every source, and compare them with the assistant texts (datamodules.template.check_template);
        raises TemplateError on a mismatch."""
        first_of_source = {}
        for index, source in enumerate(column(self.examples["train"], "source")):
            first_of_source.setdefault(source, index)
        indices = sorted(set(range(min(n, len(self.examples["train"])))) | set(first_of_source.values()))
        conversations = self.conversations("train", indices)
        return check_template(conversations, self.tokenizer, self.settings.template, len(conversations))

    def conversations(self, split: str, indices: list[int] | None = None) -> list[Conversation]:
        """The conversations of a split (or those at `indices`) as records; evaluation reads `test`."""
        data = self.examples[split]
        if indices is not None:
            data = data.select(indices)
        return [
            Conversation(
                tuple({"role": m["role"], "content": m["content"]} for m in row["messages"]),
                row["domain"],
                row["source"],
                row["group"],
                row["origin"],
            )
            for row in data
        ]

    def rows(self, split: str, packed: bool | None = None, limit: int | None = None) -> RowDataset:
        """The split's rows: as planned (packed or not, per the settings), or with `packed=False`
        one example per row whatever the settings (held-out loss per source reads those); `limit`
        keeps the first examples only (unpacked rows)."""
        packed = self.settings.packing if packed is None else packed
        tokens = self.examples[split].select_columns(["input_ids", "labels", "domain_id"])
        if packed == self.settings.packing and limit is None:
            plan = self.plans[split]
        elif packed:
            raise ValueError("packed rows follow the stage's packing plan; they take no limit")
        else:
            plan = [[i] for i in range(min(len(tokens), limit if limit is not None else len(tokens)))]
        return RowDataset(tokens, plan, self.settings.max_seq_length, self.tokenizer.pad_token_id, packed)

    def collate(self, packed: bool | None = None) -> Collate:
        return Collate(self.tokenizer.pad_token_id, self.settings.packing if packed is None else packed)

    def rows_per_epoch(self) -> int:
        """Train rows in one epoch (before they are split across devices): what the schedule counts."""
        return len(self.plans["train"])



# -- helpers that run inside datasets.map (module level: picklable for num_proc) ----------------------
_CONVERSATION_FEATURES = datasets.Features(
    {
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "domain": datasets.Value("string"),
        "domain_id": datasets.Value("int16"),
        "source": datasets.Value("string"),
        "group": datasets.Value("string"),
        "origin": datasets.Value("string"),
    }
)
_EXAMPLE_FEATURES = datasets.Features(
    {
        **_CONVERSATION_FEATURES,
        "input_ids": datasets.List(datasets.Value("int32")),
        "labels": datasets.List(datasets.Value("int32")),
        "status": datasets.Value("string"),
        "length": datasets.Value("int32"),
        "trained": datasets.Value("int32"),
        "lost": datasets.Value("int32"),
        "part": datasets.Value("int32"),  # the example's index among its conversation's windows
    }
)


def column(data: datasets.Dataset, name: str) -> list:
    """One column as a list, through Arrow (iterating `data[name]` formats row by row: 100x slower)."""
    return data.with_format("arrow")[name].to_pylist()


def _conversation_dataset(
    conversations: list[Conversation], domain_index: dict[str, int]
) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "messages": [list(c.messages) for c in conversations],
            "domain": [c.domain for c in conversations],
            "domain_id": [domain_index.get(c.domain, -1) for c in conversations],
            "source": [c.source for c in conversations],
            "group": [c.group for c in conversations],
            "origin": [c.origin for c in conversations],
        },
        features=_CONVERSATION_FEATURES,
    )


def _encode(
    batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, options: TemplateOptions
) -> dict[str, list]:
    """Conversations -> examples (a long conversation may give several windows, each its own row
    carrying the messages it holds and its conversation's domain, source, group and origin)."""
    out: dict[str, list] = {name: [] for name in _EXAMPLE_FEATURES}
    for index, pieces in enumerate(encode_batch(batch["messages"], tokenizer, options)):
        for part, e in enumerate(pieces):
            out["part"].append(part)
            for name in ("domain", "domain_id", "source", "group", "origin"):
                out[name].append(batch[name][index])
            out["messages"].append(list(e.messages))
            out["input_ids"].append(e.input_ids)
            out["labels"].append(e.labels)
            out["status"].append(e.status)
            out["length"].append(len(e.input_ids))
            out["trained"].append(len(e.labels) - e.labels.count(IGNORE_INDEX))
            out["lost"].append(e.lost)
    return out


def _source_figures(report: Any) -> dict[str, Any]:
    return {
        "read": report.read,
        "kept": report.kept,
        "skipped": Counter(report.skipped),
        "truncated": 0,
        "windowed": 0,
        "windows": 0,
        "tokens_lost": 0,
        "cleaned": Counter(report.cleaned),
        "examples": list(report.examples),
    }
