"""Judge a stage's checkpoint against its baseline and gate the pipeline.

    python -m stages.evaluate --config stages/stage1.yaml \
        --checkpoint therapeutic_moe_stage1/checkpoint-final --baseline base --out reports/stage1 \
        [--data.data_root DIR ...]

The stage YAML(s) are read as stages.fit reads them, dotted overrides included (stages.fit.parse_stage_config).

Read top to bottom: settings, stage config, model folders and data sources are checked before any
model loads; then for the checkpoint and the baseline in turn: held-out loss per source and domain on
the same test batches (with expert use for a mixture), and replies to the prompt suites; then the
scorers, the judge's calibration on held-out human replies, the gate, and the report folder.
--checkpoint and --baseline each take a mixture checkpoint-final/, an exported PEFT adapter or merged
model folder, or `base`; an export with --baseline set to its mixture puts the two side by side.

Exit code: 0 proceed, 3 retrain, 4 incomplete (evals/gate.py); 1 error, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
from jsonargparse import ArgumentError
from torch.utils.data import DataLoader

from datamodules.datamodule import StageDataModule
from datamodules.packing import Collate, RowDataset
from datamodules.template import with_system_prompt
from evals.gate import decide
from evals.generate import generate_replies
from evals.heldout import heldout_figures, loss_ratio
from evals.judge import JudgeClient, load_rubrics
from evals.loading import MIXTURE, LoadedModel, load_model, model_base, model_kind
from evals.report import Evaluation, ModelResult, write_report
from evals.score import calibration, score_model
from evals.settings import DEFAULT_SETTINGS, EvalSettings, load_settings
from evals.suites import load_suites
from evals.voice import VoiceClassifier, train_voice_classifier
from moe.losses import routing_counts_per_domain
from moe.router import record_routing
from stages.fit import parse_stage_config

log = logging.getLogger("stages.evaluate")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The evaluation's options, and the rest: dotted stage overrides, e.g. --data.data_root DIR."""
    parser = argparse.ArgumentParser(
        prog="python -m stages.evaluate",
        description=__doc__.split("\n\n")[0],
        epilog="Any stage setting can be overridden with a dotted flag, as for stages.fit, e.g. --data.data_root DIR.",
    )
    parser.add_argument(
        "--config",
        required=True,
        action="append",
        help="the stage YAML(s) the checkpoint was trained with, layered as stages.fit layers them",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint-final/, PEFT adapter, merged model or base"
    )
    parser.add_argument("--baseline", help="what it is compared with: base, or another checkpoint/export")
    parser.add_argument(
        "--out", required=True, type=Path, help="report folder (report.md, report.json, PNGs)"
    )
    parser.add_argument("--settings", default=str(DEFAULT_SETTINGS), help="evaluation settings YAML")
    parser.add_argument("--stage", type=int, help="whose gate applies (default: the config's data.stage)")
    parser.add_argument("--heldout-limit", type=int, help="evaluate at most this many test conversations")
    parser.add_argument(
        "--judge-url", help="override judge.base_url (OpenAI-compatible, e.g. http://host:8000/v1)"
    )
    parser.add_argument("--judge-model", help="override judge.model")
    return parser.parse_known_args(argv)


def heldout_loader(data: StageDataModule, limit: int | None) -> tuple[DataLoader, list[str], list[str]]:
    """The test split, one conversation per row (so each row's loss has one source and domain)."""
    test = data.examples["test"]
    if limit is not None:
        test = test.select(range(min(limit, len(test))))
    rows = RowDataset(
        test.select_columns(["input_ids", "labels", "domain_id"]),
        [[i] for i in range(len(test))],
        data.max_seq_length,
        data.tokenizer.pad_token_id,
        packed=False,
    )
    collate = Collate(data.tokenizer.pad_token_id, packed=False)
    loader = DataLoader(rows, batch_size=data.micro_batch_size, collate_fn=collate)
    return loader, list(test["source"]), list(test["domain"])


def measure(
    loaded: LoadedModel,
    label: str,
    loader: DataLoader,
    sources: list[str],
    domains: list[str],
    conversations: dict[str, list[dict[str, str]]],
    settings: EvalSettings,
) -> ModelResult:
    """Held-out figures (with expert use for a mixture) and replies to every probe."""
    after_forward, sums = None, []
    mixture = loaded.kind == MIXTURE
    with record_routing(loaded.model) if mixture else nullcontext() as routing:
        if mixture:
            config = loaded.model.moe_config

            def after_forward(batch: dict[str, torch.Tensor]) -> None:
                counts = routing_counts_per_domain(
                    routing.take(), batch["domain_ids"], batch["token_mask"], config
                )
                sums.append([c.cpu() for c in counts])

        heldout = heldout_figures(loaded.model, loader, sources, domains, after_forward) if sources else None
    expert_use = None
    if sums:
        choices, gates, tokens = (sum(parts) for parts in zip(*sums, strict=True))
        config = loaded.model.moe_config
        expert_use = {
            "domains": list(config.expert_domains),
            "experts": [f"{i}:{name}" for i, name in enumerate(config.expert_domains)],
            "share": (choices / (config.top_k * tokens.clamp(min=1)).unsqueeze(-1)).tolist(),
            "observed_gates": (gates / tokens.clamp(min=1).unsqueeze(-1)).tolist(),
        }
    texts = generate_replies(
        loaded.model, loaded.tokenizer, list(conversations.values()), settings.generation
    )
    return ModelResult(
        label,
        loaded.source,
        loaded.kind,
        {},
        dict(zip(conversations, texts, strict=True)),
        heldout,
        expert_use,
    )


def voice_classifier(
    data: StageDataModule, baseline: ModelResult | None, settings: EvalSettings
) -> VoiceClassifier | None:
    """Educator passages: held-out assistant turns of the educator sources, grouped by lecture."""
    educator, others = [], []
    for split in ("val", "test"):
        for conversation in data.split_conversations(split):
            target = educator if conversation.source in settings.voice.educator_sources else others
            target += [
                (m["content"], conversation.group) for m in conversation.messages if m["role"] == "assistant"
            ]
    if baseline is not None:
        others += [(text, f"baseline:{probe}") for probe, text in baseline.replies.items()]
    try:
        return train_voice_classifier(educator, others, settings.voice, seed=settings.generation.seed)
    except ValueError as error:
        log.warning("voice classifier not trained: %s", error)
        return None


def human_replies(data: StageDataModule, count: int) -> list[tuple[tuple[dict[str, str], ...], str]]:
    """Up to `count` held-out human replies with their context, spread evenly over the test split."""
    size = len(data.examples["test"])
    n = min(count, size)
    indices = sorted({round(i * (size - 1) / max(1, n - 1)) for i in range(n)})
    return [
        (c.messages[:-1], c.messages[-1]["content"])
        for c in data.split_conversations("test", indices)
        if c.messages[-1]["role"] == "assistant"
    ]


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings(args.settings)
    if args.judge_url or args.judge_model:
        judge = replace(
            settings.judge,
            base_url=args.judge_url or settings.judge.base_url,
            model=args.judge_model or settings.judge.model,
        )
        settings = replace(settings, judge=judge)
    try:
        config = parse_stage_config(args.config, overrides)
    except ArgumentError as error:  # a bad stage setting or override is a bad argument
        print(f"error: {error}", file=sys.stderr)
        return 2
    stage = args.stage or config.data.stage
    gate = settings.gate.for_stage(stage)
    base_model = config.model.base_model
    # Everything cheap first: a wrong folder or base model stops here, before any model loads.
    models = {"checkpoint": args.checkpoint, **({"baseline": args.baseline} if args.baseline else {})}
    for label, source in models.items():
        kind = model_kind(source)
        built_on = model_base(source, base_model)
        if kind != "merged" and built_on != base_model:
            raise SystemExit(
                f"error: --{label} {source} was built on {built_on!r}; the stage uses {base_model!r}"
            )
    data = StageDataModule(**config.data.as_dict())
    suites = load_suites()
    rubrics = load_rubrics()
    judge = JudgeClient(settings.judge) if settings.judge.configured else None
    notes = (
        [] if judge else ["no judge configured: judge metrics are unmeasured and empathy is a lexical proxy"]
    )

    base_options = {
        "dtype": getattr(torch, config.model.dtype) if config.model.dtype else None,
        "load_in_4bit": config.model.load_in_4bit,
        "attn_implementation": config.model.attn_implementation,
    }
    data.setup("test")
    loader, sources, domains = heldout_loader(data, args.heldout_limit)
    system_prompt = data.template.system_prompt
    conversations = {
        p.id: with_system_prompt(p.messages, system_prompt) for suite in suites.values() for p in suite
    }
    results: dict[str, ModelResult] = {}
    for label, source in models.items():
        loaded = load_model(source, base_model, **base_options)
        log.info("%s: %s (%s)", label, source, loaded.kind)
        results[label] = measure(loaded, label, loader, sources, domains, conversations, settings)
        del loaded
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    checkpoint, baseline = results["checkpoint"], results.get("baseline")

    # The voice classifier needs the educator's passages: only a stage whose gate reads voice_share has them.
    needs_voice = "voice_share" in (*gate.thresholds, *gate.no_regression)
    voice = voice_classifier(data, baseline, settings) if needs_voice else None
    for result in results.values():
        card = score_model(suites, result.replies, settings, judge, rubrics, voice)
        result.metrics, result.details = card.metrics, card.details
    human = human_replies(data, settings.judge.calibration_replies)
    ratio = loss_ratio(checkpoint.heldout, baseline.heldout if baseline else None)
    decision = decide(stage, checkpoint.metrics, baseline.metrics if baseline else None, settings.gate, ratio)
    prompts = {p.id: (p.suite, p.last_user) for suite in suites.values() for p in suite}
    evaluation = Evaluation(
        stage,
        decision,
        gate,
        checkpoint,
        baseline,
        prompts,
        calibration=calibration(human, judge, rubrics),
        samples_per_suite=settings.samples_per_suite,
        notes=notes,
    )
    path = write_report(evaluation, args.out)
    print(f"stage {stage}: {decision.decision} (exit {decision.exit_code}); report: {path}")
    for reason in decision.reasons:
        print(f"  - {reason}")
    return decision.exit_code


if __name__ == "__main__":
    sys.exit(main())
