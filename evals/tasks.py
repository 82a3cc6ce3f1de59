"""The prompt suites as inspect_ai tasks: one Task per suite, `epochs` samples per prompt.

    inspect eval evals/tasks.py@crisis --model therapeutic/<checkpoint-final|export|merged|base> \
        -M base_model=<hub id, folder or tiny> [-T epochs=5] [-T limit=20]
    inspect view

`stages.evaluate` builds the same tasks with `suite_tasks` (adding the judge and the voice classifier,
which are objects, not command-line values), runs them for every model and gates on the logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from inspect_ai import Epochs, Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser, GenerateConfig
from inspect_ai.scorer import Scorer
from inspect_ai.solver import generate

from evals.coherence import self_written_turns
from evals.crisis_calibration import CrisisCalibration, calibrate
from evals.judge import JudgeClient, Rubric, load_rubrics
from evals.scorers import (
    bias_rules,
    fact_recall,
    crisis_safety,
    empathy_proxy,
    reasoning_visible,
    rubric_scorer,
    voice_classifier,
)
from evals.settings import DEFAULT_SETTINGS, EvalSettings, load_settings
from evals.suites import Probe, load_suites
from evals.voice import VoiceClassifier

# Which suites' replies each judge rubric rates.
RUBRIC_SUITES: dict[str, tuple[str, ...]] = {
    "empathy": ("openers", "bias_probes"),
    "counselbench": ("openers", "bias_probes", "crisis"),
    "boundaries": ("openers", "clinical", "crisis"),
    "coherence": ("long_conversations",),
    "clinical_reasoning": ("clinical",),
    "awareness": ("bias_probes",),
    "tone": ("voice_probes",),
}
_ROLES = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}


def sample(probe: Probe, system_prompt: str | None) -> Sample:
    messages = list(probe.messages)
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return Sample(
        input=[_ROLES[m["role"]](content=m["content"]) for m in messages],
        id=probe.id,
        metadata={"suite": probe.suite, "probe_id": probe.id, "last_user": probe.last_user, **probe.fields},
    )


def generate_config(settings: EvalSettings) -> GenerateConfig:
    g = settings.generation
    return GenerateConfig(temperature=g.temperature, max_tokens=g.max_new_tokens, seed=g.seed)


def suite_scorers(
    suite: str,
    settings: EvalSettings,
    judge: JudgeClient | None,
    rubrics: Mapping[str, Rubric],
    voice: VoiceClassifier | None,
    crisis: CrisisCalibration | None = None,
) -> list[Scorer]:
    """crisis: the judge's crisis calibration; only a judge it trusts decides crisis replies."""
    scorers: list[Scorer] = []
    if suite == "crisis":
        trusted = judge if crisis is not None and crisis.judge_trusted else None
        why = crisis.untrusted_reason() if crisis is not None else "no judge configured"
        scorers.append(crisis_safety(trusted, rubrics["crisis"], why))
    elif suite == "long_conversations":
        scorers.append(fact_recall())
    elif suite in ("clinical", "small_talk"):
        scorers.append(reasoning_visible(settings.reasoning, expected=suite == "clinical"))
    elif suite == "bias_probes":
        scorers.append(bias_rules())
    elif suite == "voice_probes" and voice is not None:
        scorers.append(voice_classifier(voice))
    if suite in RUBRIC_SUITES["empathy"] and judge is None:
        scorers.append(empathy_proxy())
    if judge is not None:
        scorers += [rubric_scorer(judge, rubrics[name]) for name, suites in RUBRIC_SUITES.items() if suite in suites]
    return scorers


def suite_tasks(
    settings: EvalSettings,
    system_prompt: str | None = None,
    judge: JudgeClient | None = None,
    voice: VoiceClassifier | None = None,
    suites: Mapping[str, list[Probe]] | None = None,
    crisis: CrisisCalibration | None = None,
) -> list[Task]:
    """One Task per suite. A suite nobody scores (e.g. voice without a classifier and judge) is still
    generated, unscored: its replies are read in the report and compared with the reference's, and
    its metrics are reported unmeasured. crisis: the judge's crisis calibration; with a judge and none
    given, the judge is calibrated here first."""
    rubrics = load_rubrics()
    suites = suites if suites is not None else load_suites(limit=settings.suite_limit)
    if judge is not None and crisis is None and "crisis" in suites:
        crisis = calibrate(judge, rubrics["crisis"])
    tasks = []
    for name, probes in suites.items():
        scorers = suite_scorers(name, settings, judge, rubrics, voice, crisis)
        if not probes:
            continue
        tasks.append(
            Task(
                name=name,
                dataset=MemoryDataset([sample(p, system_prompt) for p in probes], name=name),
                # Long conversations: the model writes its own earlier turns (evals.coherence).
                solver=self_written_turns() if name == "long_conversations" else generate(),
                scorer=scorers or None,
                epochs=Epochs(settings.epochs),
                config=generate_config(settings),
                metadata={"suite": name, "suite_limit": settings.suite_limit},
            )
        )
    return tasks


def _one(suite: str, epochs: int | None, limit: int | None, settings: str) -> Task:
    loaded = load_settings(settings)
    if epochs is not None:
        loaded = replace(loaded, epochs=epochs)
    if limit is not None:
        loaded = replace(loaded, suite_limit=limit)
    (only,) = suite_tasks(loaded, suites={suite: load_suites(limit=loaded.suite_limit)[suite]})
    return only


@task
def crisis(epochs: int | None = None, limit: int | None = None, settings: str = str(DEFAULT_SETTINGS)) -> Task:
    return _one("crisis", epochs, limit, settings)


@task
def openers(epochs: int | None = None, limit: int | None = None, settings: str = str(DEFAULT_SETTINGS)) -> Task:
    return _one("openers", epochs, limit, settings)


@task
def bias(epochs: int | None = None, limit: int | None = None, settings: str = str(DEFAULT_SETTINGS)) -> Task:
    return _one("bias_probes", epochs, limit, settings)


@task
def clinical(epochs: int | None = None, limit: int | None = None, settings: str = str(DEFAULT_SETTINGS)) -> Task:
    return _one("clinical", epochs, limit, settings)


@task
def small_talk(epochs: int | None = None, limit: int | None = None, settings: str = str(DEFAULT_SETTINGS)) -> Task:
    return _one("small_talk", epochs, limit, settings)


@task
def long_conversations(
    epochs: int | None = None, limit: int | None = None, settings: str = str(DEFAULT_SETTINGS)
) -> Task:
    return _one("long_conversations", epochs, limit, settings)
