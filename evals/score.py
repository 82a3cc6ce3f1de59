"""Every scorer over one model's replies to the suites: the metrics the gate and the report read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from evals.bias import bias_metrics
from evals.coherence import coherence_metric
from evals.judge import JudgeClient, Rubric, RubricScores, score_replies
from evals.metrics import Metric, unmeasured
from evals.proxy import proxy_empathy, proxy_empathy_metric
from evals.reasoning import reasoning_metrics
from evals.safety import safety_metric
from evals.settings import EvalSettings
from evals.suites import Probe
from evals.voice import VoiceClassifier, voice_metric

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
# The rubric that gives each bias-probe reply its quality for parity.
BIAS_QUALITY = ("counselbench", "counsel_overall")


@dataclass
class ScoreCard:
    metrics: dict[str, Metric]
    details: dict[str, dict] = field(default_factory=dict)


def score_model(
    suites: Mapping[str, list[Probe]],
    replies: Mapping[str, str],
    settings: EvalSettings,
    judge: JudgeClient | None,
    rubrics: Mapping[str, Rubric],
    voice: VoiceClassifier | None,
) -> ScoreCard:
    """replies: probe id -> reply text, for every probe of every suite."""
    metrics: list[Metric] = []
    details: dict[str, dict] = {}

    safety, verdicts = safety_metric(suites["crisis"], replies)
    metrics.append(safety)
    details["safety"] = {
        k: {"passed": v.passed, "referral": v.referral, "method_hits": v.method_hits}
        for k, v in verdicts.items()
    }
    coherence, recall = coherence_metric(suites["long_conversations"], replies)
    metrics.append(coherence)
    details["coherence"] = recall
    metrics.extend(reasoning_metrics(suites["clinical"], suites["small_talk"], replies, settings.reasoning))

    judged: dict[str, RubricScores] = {}
    if judge is not None:
        for name, suite_names in RUBRIC_SUITES.items():
            items = {p.id: (p.messages, replies[p.id]) for s in suite_names for p in suites[s]}
            judged[name] = score_replies(judge, rubrics[name], items)
            metrics.extend(judged[name].metrics())
            details[f"judge_{name}"] = {"malformed": judged[name].malformed, "failed": judged[name].failed}
        quality, method = judged[BIAS_QUALITY[0]].normalised(BIAS_QUALITY[1]), "judge"
    else:
        metrics.append(
            proxy_empathy_metric([replies[p.id] for s in RUBRIC_SUITES["empathy"] for p in suites[s]])
        )
        for rubric in rubrics.values():
            metrics.extend(
                unmeasured(m.name, m.scale, "judge", "no judge configured")
                for m in rubric.metrics.values()
                if m.name != "empathy"
            )
        quality = {p.id: proxy_empathy(replies[p.id]) for p in suites["bias_probes"]}
        method = "proxy"
    bias, worst_gap = bias_metrics(suites["bias_probes"], replies, quality, method)
    metrics.extend(bias)
    details["bias_worst_gap"] = worst_gap

    voice_replies = [replies[p.id] for p in suites["voice_probes"]]
    if voice is None:
        metrics.append(
            unmeasured(
                "voice_share",
                "share of replies classified as the educator",
                "classifier",
                "no voice classifier: this stage's gate does not read voice_share, or too "
                "few educator passages and baseline replies to train it",
            )
        )
    else:
        metrics.append(voice_metric(voice, voice_replies, settings.voice))
    return ScoreCard({m.name: m for m in metrics}, details)


def calibration(
    human: Sequence[tuple[Sequence[Mapping[str, str]], str]],
    judge: JudgeClient | None,
    rubrics: Mapping[str, Rubric],
) -> dict[str, Metric]:
    """The judge's (or the proxy's) scores for held-out human replies: (context, human reply) pairs."""
    if not human:
        return {}
    if judge is None:
        return {"empathy": proxy_empathy_metric([reply for _, reply in human])}
    items = {f"human-{i}": pair for i, pair in enumerate(human)}
    out: dict[str, Metric] = {}
    for name in ("empathy", "counselbench"):
        out.update({m.name: m for m in score_replies(judge, rubrics[name], items).metrics()})
    return out
