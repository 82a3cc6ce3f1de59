"""Judge a stage's checkpoint against the previous stage, stage 1 and the base model, and gate the pipeline.

    python -m stages.evaluate --config stages/stage1.yaml \
        --checkpoint therapeutic_moe_stage1/checkpoint-final --baseline base --out reports/stage1 \
        [--data.data_root DIR ...]

The stage YAML(s) are read as stages.fit reads them, dotted overrides included (stages.fit.parse_stage_config).

Read top to bottom: settings, stage config, model folders and data sources are checked before any
model loads. Then every model in turn (the checkpoint, --baseline, stage 1 found through the
baseline's run.init_from chain, the base model and, with --plain-lora, a plain LoRA of the mixture's
budget) is loaded once as an inspect_ai model
(evals.provider) and measured: held-out loss on this stage's test split AND on every earlier stage's
test split (the same batches for every model; forgetting), expert use for a mixture, and the prompt
suites run as inspect tasks (evals.tasks, `epochs` samples per prompt) whose logs land in
<out>/logs/<model>/. The gate then reads the logs (evals.log_metrics), and the report folder is
written. --checkpoint and --baseline each take a mixture checkpoint-final/, an exported PEFT adapter
or merged model folder, or `base`.

    python -m stages.evaluate --reviews reports/stage2 [--settings FILE]

re-runs the gate on an existing report folder with its blind reviews (stages.review writes
<report>/reviews.jsonl); no model loads. A full evaluation counts the reviews in --out the same way
(evals.human_review.apply_human_review).

Exit code: 0 proceed, 3 retrain, 4 incomplete (evals/gate.py); 1 error, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml
from inspect_ai import eval as inspect_eval
from inspect_ai.model import get_model
from jsonargparse import ArgumentError
from torch.utils.data import DataLoader

from datamodules.prepare import DataSettings, Prepared, prepare
from evals.compare import compare_models
from evals.crisis_calibration import calibrate
from evals.embeddings import default_embedder
from evals.gate import decide
from evals.heldout import heldout_figures, loss_ratio, loss_ratios_per_source
from evals.human_review import apply_human_review
from evals.judge import JudgeClient, load_rubrics
from evals.export_gap import export_gap, gap_conversations, gate_line, write_export_gap
from evals.loading import BASE, MIXTURE, LoadedModel, load_model, model_base, model_kind
from evals.log_metrics import collect, metrics_from_logs
from evals.plain_lora import PLAIN_LORA, plain_lora_summary
from evals.preference import preferences
from evals.provider import PROVIDER
from evals.report import Evaluation, ModelResult, write_report
from evals.review_pairs import ReviewFileError
from evals.score import calibration
from evals.settings import DEFAULT_SETTINGS, EvalSettings, add_judge_arguments, load_settings, with_judge_arguments
from evals.suites import load_suites
from evals.tasks import suite_tasks
from evals.voice import VoiceClassifier, other_speakers, train_voice_classifier
from moe.adapter_io import read_adapter_config
from moe.losses import routing_counts_per_domain
from moe.router import record_routing
from stages.fit import parse_stage_config

log = logging.getLogger("stages.evaluate")
# Held-out conversations each export choice answers (greedy) beside the mixture in the export gap.
GAP_REPLIES = 3


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The evaluation's options, and the rest: dotted stage overrides, e.g. --data.data_root DIR."""
    parser = argparse.ArgumentParser(
        prog="python -m stages.evaluate",
        description=__doc__.split("\n\n")[0],
        epilog="Any stage setting can be overridden with a dotted flag, as for stages.fit, e.g. --data.data_root DIR.",
    )
    parser.add_argument(
        "--config",
        action="append",
        help="the stage YAML(s) the checkpoint was trained with, layered as stages.fit layers them",
    )
    parser.add_argument(
        "--checkpoint", help="checkpoint-final/, PEFT adapter, merged model or base"
    )
    parser.add_argument("--baseline", help="what it is compared with: base, or another checkpoint/export")
    parser.add_argument(
        "--out", type=Path, help="report folder (report.md, report.json, PNGs)"
    )
    parser.add_argument("--settings", default=str(DEFAULT_SETTINGS), help="evaluation settings YAML")
    parser.add_argument("--stage", type=int, help="whose gate applies (default: the config's data.stage)")
    parser.add_argument("--heldout-limit", type=int, help="evaluate at most this many test conversations")
    parser.add_argument(
        "--first-stage",
        help="stage 1's checkpoint (regression and forgetting reference); default: found through the "
        "baseline's config.yaml run.init_from chain",
    )
    parser.add_argument(
        "--no-base", action="store_true", help="do not evaluate the base model beside the checkpoint"
    )
    parser.add_argument(
        "--plain-lora",
        help="a plain LoRA of the mixture's budget trained on the same data and steps (lightning_app.pipeline "
        "--baseline-lora): its held-out loss and replies beside the checkpoint's, shown, not gated",
    )
    add_judge_arguments(parser)
    parser.add_argument("--no-export-gap", action="store_true",
                        help="do not measure the fixed-gate export choices beside a mixture checkpoint")
    parser.add_argument(
        "--reviews", type=Path, help="re-run the gate on this report folder with its reviews.jsonl (no model loads)"
    )
    args, overrides = parser.parse_known_args(argv)
    if not args.reviews and not (args.config and args.checkpoint and args.out):
        parser.error("--config, --checkpoint and --out are required (or --reviews REPORT to re-gate a report)")
    return args, overrides


def heldout_loader(data: Prepared, limit: int | None) -> tuple[DataLoader, list[str], list[str]]:
    """The test split, one conversation per row (so each row's loss has one source and domain)."""
    rows = data.rows("test", packed=False, limit=limit)
    test = data.examples["test"].select(range(len(rows)))
    loader = DataLoader(rows, batch_size=data.settings.micro_batch_size, collate_fn=data.collate(packed=False))
    return loader, list(test["source"]), list(test["domain"])


Splits = dict[int, tuple[DataLoader, list[str], list[str]]]


def expert_use_of(loaded: LoadedModel, loader: DataLoader, sources: list[str], domains: list[str]) -> tuple[dict, dict | None]:
    """Held-out figures of one split and, for a mixture, the share of each domain's tokens per expert."""
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

        heldout = heldout_figures(loaded.model, loader, sources, domains, after_forward)
    if not sums:
        return heldout, None
    choices, gates, tokens = (sum(parts) for parts in zip(*sums, strict=True))
    config = loaded.model.moe_config
    return heldout, {
        "domains": config.domains,
        "experts": [f"{i}:{name}" for i, name in enumerate(config.expert_domains)],
        "share": (choices / (config.top_k * tokens.clamp(min=1)).unsqueeze(-1)).tolist(),
        "observed_gates": (gates / tokens.clamp(min=1).unsqueeze(-1)).tolist(),
    }


def measure(
    label: str,
    source: str,
    base_model: str,
    base_options: dict,
    stage: int,
    splits: Splits,
    tasks_for_model: list,
    settings: EvalSettings,
    out: Path,
    judged: bool,
    voice_scored: bool,
) -> ModelResult:
    """One model: loaded once as an inspect model; held-out loss on every split, then the suites."""
    model_args = {"base_model": base_model, "batch_size": settings.generation.batch_size,
                  "min_p": settings.generation.min_p, "repetition_penalty": settings.generation.repetition_penalty}
    model_args.update({k: v for k, v in base_options.items() if v is not None})
    started = time.perf_counter()
    model = get_model(f"{PROVIDER}/{source}", memoize=False, **model_args)
    loaded: LoadedModel = model.api.loaded
    log.info("%s: %s (%s)", label, source, loaded.kind)
    heldout, expert_use, earlier = None, None, {}
    for split_stage, (loader, sources, domains) in splits.items():
        if not sources:
            continue
        figures, use = expert_use_of(loaded, loader, sources, domains)
        if split_stage == stage:
            heldout, expert_use = figures, use
        else:
            earlier[split_stage] = figures
    loss_s = time.perf_counter() - started
    logs = inspect_eval(
        tasks_for_model,
        model=model,
        log_dir=str(out / "logs" / label),
        display="none",
        log_level="info",  # inspect sets the root logger to this level: keep our INFO lines
        max_tasks=len(tasks_for_model),
        max_connections=settings.generation.batch_size,
        max_samples=settings.generation.batch_size,
    )
    failed = [f"{entry.eval.task}: {entry.error.message if entry.error else entry.status}" for entry in logs if entry.status != "success"]
    if failed:
        log.warning("%s: inspect tasks did not finish: %s", label, failed)
    # The gate reads the logs from disk, as `inspect view` does.
    collected = collect([entry.location for entry in logs])
    seconds = time.perf_counter() - started
    log.info("%s: measured in %.0f s (load and held-out loss %.0f s, suites %.0f s)", label, seconds, loss_s, seconds - loss_s)
    result = ModelResult(
        label,
        source,
        loaded.kind,
        metrics_from_logs(collected, judged, voice_scored),
        collected.replies,
        dict(collected.samples),
        heldout,
        expert_use,
        details={"explanations": collected.explanations, "logs": collected.logs, "seconds": round(seconds, 1)},
        heldout_earlier=earlier,
    )
    del model, loaded
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def voice_classifier(
    data: Prepared, earlier: list[Prepared], settings: EvalSettings
) -> VoiceClassifier | None:
    """The educator's held-out passages against other speakers: every other source's held-out
    assistant turns, this stage's and the earlier stages', and other speakers' text on his topics
    (never a model's replies)."""
    educator, others = [], []
    for module in (data, *earlier):
        for split in ("val", "test"):
            for conversation in module.conversations(split):
                target = educator if conversation.source in settings.voice.educator_sources else others
                target += [
                    (m["content"], f"{conversation.source}:{conversation.group}")
                    for m in conversation.messages
                    if m["role"] == "assistant"
                ]
    if educator:
        others += other_speakers()  # the same topics in other voices: the classifier cannot key on topic
    try:
        classifier = train_voice_classifier(educator, others, settings.voice, seed=settings.generation.seed)
    except ValueError as error:
        log.warning("voice classifier not trained: %s", error)
        return None
    if classifier.heldout_accuracy < settings.voice.min_classifier_accuracy:
        log.warning(
            "voice classifier: held-out balanced accuracy %.2f < %.2f, it cannot tell the educator apart; "
            "voice_share is not measured",
            classifier.heldout_accuracy,
            settings.voice.min_classifier_accuracy,
        )
        return None
    return classifier


def human_replies(data: Prepared, count: int) -> list[tuple[tuple[dict[str, str], ...], str]]:
    """Up to `count` held-out human replies with their context, spread evenly over the test split."""
    size = len(data.examples["test"])
    n = min(count, size)
    indices = sorted({round(i * (size - 1) / max(1, n - 1)) for i in range(n)})
    return [
        (c.messages[:-1], c.messages[-1]["content"])
        for c in data.conversations("test", indices)
        if c.messages[-1]["role"] == "assistant"
    ]


def measure_export_gap(source: str, base_model: str, base_options: dict, heldout: tuple, data: Prepared) -> dict:
    """The mixture and each fixed-gate export choice on this stage's test batches (evals.export_gap)."""
    dtype = base_options.get("dtype")
    loaded = load_model(source, base_model, dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype,
                        load_in_4bit=bool(base_options.get("load_in_4bit")),
                        attn_implementation=base_options.get("attn_implementation"))
    conversations = gap_conversations(data.conversations("test"), GAP_REPLIES)
    gap = export_gap(loaded.model, loaded.tokenizer, read_adapter_config(source), heldout, conversations)
    log.info("export gap: ship %s", gap["ship"])
    del loaded
    gc.collect()
    return gap


def first_stage_of(source: str) -> str | None:
    """Stage 1's checkpoint: follow run.init_from through each checkpoint-final's config.yaml."""
    current, seen = Path(source), set()
    while current.is_dir() and current not in seen:
        seen.add(current)
        config = current / "config.yaml"
        if not config.is_file():
            return None
        run = (yaml.safe_load(config.read_text()) or {}).get("run") or {}
        if run.get("init_from") is None:
            return str(current)
        current = Path(run.get("output_root") or ".") / run["init_from"]
    return None


def regate_with_reviews(report: Path, settings: EvalSettings) -> int:
    """The report's gate again, with the human review; prints as a full evaluation does."""
    path = report / "report.json"
    if not path.is_file():
        print(f"error: {path} does not exist: evaluate first (python -m stages.evaluate --out {report})", file=sys.stderr)
        return 2
    stage = json.loads(path.read_text(encoding="utf-8"))["stage"]
    try:
        decision = apply_human_review(report, settings.review_gate(stage))
    except ReviewFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"stage {stage} with the blind review: {decision.decision} (exit {decision.exit_code}); report: {path}")
    for reason in decision.reasons:
        print(f"  - {reason}")
    return decision.exit_code


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = with_judge_arguments(load_settings(args.settings), args)
    if args.reviews:
        return regate_with_reviews(args.reviews, settings)
    try:
        config = parse_stage_config(args.config, overrides)
    except ArgumentError as error:  # a bad stage setting or override is a bad argument
        print(f"error: {error}", file=sys.stderr)
        return 2
    stage = args.stage or config.data.stage
    gate = settings.gate.for_stage(stage)
    base_model = config.model.base_model
    notes: list[str] = []
    # Who is measured: the checkpoint, the previous stage, stage 1 and the base model, each once.
    models = {"checkpoint": args.checkpoint}
    if args.baseline:
        models["previous stage" if args.baseline != BASE else "base"] = args.baseline
    first = args.first_stage or (first_stage_of(args.baseline) if args.baseline and args.baseline != BASE else None)
    if stage >= 3 and first is not None and first not in models.values():
        models["stage 1"] = first
    if not args.no_base and BASE not in models.values():
        models["base"] = BASE
    if args.plain_lora:
        models[PLAIN_LORA] = args.plain_lora
    # Everything cheap first: a wrong folder or base model stops here, before any model loads.
    for label, source in models.items():
        kind = model_kind(source)
        built_on = model_base(source, base_model)
        if kind != "merged" and built_on != base_model:
            raise SystemExit(f"error: {label} {source} was built on {built_on!r}; the stage uses {base_model!r}")
    data_settings = config.data.as_dict()
    # Checked now (every source exists), prepared below: the earlier stages' test splits, then this one's.
    stage_data = [DataSettings(**{**data_settings, "stage": k}) for k in (*range(1, stage), config.data.stage)]
    judge = None
    if settings.judge.configured:
        judge = JudgeClient(settings.judge, under_test=[*models.values(), base_model])
        notes.append(f"judge: {judge.model_id}")
    else:
        notes.append("no judge configured: judge metrics are unmeasured and empathy is a lexical proxy")
    suites = load_suites(limit=settings.suite_limit)
    if settings.suite_limit is not None:
        sizes = ", ".join(f"{name} {len(probes)}" for name, probes in suites.items())
        notes.append(f"a fixed subset: the first {settings.suite_limit} prompts of each suite ({sizes})")
    notes.append(f"{settings.epochs} sample(s) per prompt; temperature {settings.generation.temperature}")

    base_options = {
        "dtype": config.model.dtype,
        "load_in_4bit": config.model.load_in_4bit or None,
        "attn_implementation": config.model.attn_implementation,
    }
    splits: Splits = {}
    *earlier, data = [prepare(s) for s in stage_data]
    for prepared in (*earlier, data):
        splits[prepared.settings.stage] = heldout_loader(prepared, args.heldout_limit)
    needs_voice = "voice_share" in (*settings.gate.thresholds(stage), *gate.no_regression)
    voice = voice_classifier(data, earlier, settings) if needs_voice else None
    if voice is not None:
        notes.append(
            f"voice classifier: held-out balanced accuracy {voice.heldout_accuracy:.2f} on unseen lectures "
            f"and speakers ({voice.n_train} train / {voice.n_test} test passages)"
        )
    # The crisis judge counts only after it tells the labelled crisis replies apart.
    crisis = calibrate(judge, load_rubrics()["crisis"])
    if judge is not None and not crisis.judge_trusted:
        notes.append(crisis.untrusted_reason())
    tasks = suite_tasks(settings, data.settings.template.system_prompt, judge, voice, suites, crisis)
    results = [
        measure(label, source, base_model, base_options, stage, splits, tasks, settings, args.out,
                judge is not None, voice is not None)
        for label, source in models.items()
    ]
    gap = None
    if model_kind(args.checkpoint) == MIXTURE and not args.no_export_gap:
        gap = measure_export_gap(args.checkpoint, base_model, base_options, splits[stage], data)
        notes.append(gate_line(gap))
    by_label = {r.label: r for r in results}
    checkpoint = by_label["checkpoint"]
    previous = by_label.get("previous stage") or by_label.get("base" if args.baseline == BASE else "")
    # At stage 2 the previous stage is stage 1.
    stage1 = by_label.get("stage 1") or (previous if stage == 2 and args.baseline != BASE else None)
    references = {r.label: r.metrics for r in (previous, stage1) if r is not None}
    forgetting: dict[str, float | None] = {}
    for k in range(1, stage):
        for reference in {id(r): r for r in (previous, stage1) if r is not None}.values():
            per_source = loss_ratios_per_source(checkpoint.heldout_earlier.get(k), reference.heldout_earlier.get(k))
            for name, source_ratio in per_source.items():
                forgetting[f"stage {k}'s test split, source {name}, vs the {reference.label}"] = source_ratio
            if not per_source:
                forgetting[f"stage {k}'s test split vs the {reference.label}"] = None
    human = human_replies(data, settings.judge.calibration_replies)
    ratio = loss_ratio(checkpoint.heldout, previous.heldout if previous else None)
    probes = {p.id: p for suite in suites.values() for p in suite}
    # The replies are compared with the previous stage's; at stage 1 with the base model's.
    gated = previous.label if previous is not None else "base" if stage == 1 and "base" in by_label else None
    # The judge reads each prompt's whole conversation; relevance compares the reply with its last message.
    judged = (
        preferences(judge, {r.label: r.replies for r in results}, {i: p.messages for i, p in probes.items()},
                    settings.generation.seed)
        if judge else None
    )
    replies = compare_models(
        {r.label: r.samples for r in results}, {i: p.last_user for i, p in probes.items()}, gated,
        settings.replies, default_embedder(), judged,
    )
    decision = decide(stage, checkpoint.metrics, references, settings.gate, ratio, forgetting,
                      replies.check(gate.replies_must_improve))
    evaluation = Evaluation(
        stage,
        decision,
        gate,
        results,
        {i: (p.suite, p.last_user) for i, p in probes.items()},
        thresholds=settings.gate.thresholds(stage),
        calibration=calibration(human, judge, load_rubrics()),
        notes=notes,
        forgetting=forgetting,
        judge_model=judge.model_id if judge else None,
        replies=replies,
        crisis_calibration=crisis,
    )
    path = write_report(evaluation, args.out)
    if gap is not None:
        write_export_gap(gap, args.out)
    decision = apply_human_review(args.out, settings.review_gate(stage))
    print(f"stage {stage}: {decision.decision} (exit {decision.exit_code}); report: {path}")
    for reason in decision.reasons:
        print(f"  - {reason}")
    if gap is not None:
        print(f"  {gate_line(gap)}")
    weighed = plain_lora_summary(results, replies)
    if weighed is not None:
        print(f"  {weighed['summary']}")
    return decision.exit_code


if __name__ == "__main__":
    sys.exit(main())
