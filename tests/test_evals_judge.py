"""The judge client against a local OpenAI-compatible server started by the test on 127.0.0.1."""

import json
import logging
import re
from dataclasses import replace

import pytest
from openai_server import Call, OpenAIServer

from evals.judge import JudgeClient, JudgeError, load_rubrics, score_replies
from evals.settings import JudgeSettings, load_settings

KEY = "sk-test-not-a-real-key-123"


def judge_answer(call: Call) -> tuple[int, str]:
    """Answers by a marker in the rated reply: GOOD, POOR, MALFORMED (prose), RANGE (out of range)."""
    prompt = call.body["messages"][-1]["content"]
    if "Reply to rate:\n\nRUBRIC" in prompt:
        return 200, rubric_answer(prompt)
    if "GOOD" in prompt:
        return 200, '```json\n{"emotional_reactions": 2, "interpretations": 2, "explorations": 1}\n```'
    if "POOR" in prompt:
        return 200, '{"emotional_reactions": 0, "interpretations": 0, "explorations": 1}'
    if "RANGE" in prompt:
        return 200, '{"emotional_reactions": 7, "interpretations": 0, "explorations": 0}'
    return 200, "What a lovely reply! I'd give it full marks."


def rubric_answer(prompt: str) -> str:
    """Any rubric: the top of every integer field and "no" for yes/no; the bottom for a FLAT reply."""
    keys = re.findall(r'"(\w+)": (?:integer (\d+)-(\d+)|"yes"\|"no")', prompt.rsplit("Answer with", 1)[1])
    flat = "RUBRIC FLAT" in prompt
    return json.dumps({k: ("no" if not low else int(low if flat else high)) for k, low, high in keys})


@pytest.fixture
def judge(openai_server) -> OpenAIServer:
    return openai_server(judge_answer)


def _settings(url: str) -> JudgeSettings:
    return replace(
        load_settings().judge,
        base_url=url,
        model="judge",
        api_key_env="TEST_JUDGE_KEY",
        timeout_s=5,
        max_retries=0,
        concurrency=2,
    )


def test_judge_scores_counts_malformed_answers_and_never_logs_the_key(judge, monkeypatch, caplog):
    monkeypatch.setenv("TEST_JUDGE_KEY", KEY)
    conversation = [{"role": "user", "content": "I feel alone."}]
    items = {
        "a": (conversation, "GOOD reply"),
        "b": (conversation, "POOR reply"),
        "c": (conversation, "MALFORMED reply"),
        "d": (conversation, "RANGE reply"),
    }
    with caplog.at_level(logging.DEBUG):
        scores = score_replies(JudgeClient(_settings(judge.url)), load_rubrics()["empathy"], items)
    assert (scores.malformed, scores.failed) == (2, 0)
    assert scores.per_item["a"] == {"emotional_reactions": 2, "interpretations": 2, "explorations": 1}
    assert scores.per_item["c"] is None and scores.per_item["d"] is None
    [metric] = scores.metrics()
    assert metric.name == "empathy" and metric.method == "judge"
    assert metric.raw == pytest.approx((5 + 1) / 2) and metric.value == pytest.approx(0.5)
    assert (metric.n, metric.unscored) == (2, 2)
    assert [c.auth for c in judge.calls] == [f"Bearer {KEY}"] * 4
    assert KEY not in caplog.text and "I feel alone" not in caplog.text


def test_all_answers_malformed_leaves_the_metric_unmeasured(judge):
    items = {"x": ([{"role": "user", "content": "hi"}], "MALFORMED")}
    scores = score_replies(JudgeClient(_settings(judge.url)), load_rubrics()["empathy"], items)
    [metric] = scores.metrics()
    assert metric.value is None and metric.unscored == 1 and "1 malformed" in metric.note


def test_an_unreachable_judge_is_counted_not_fatal(judge):
    settings = _settings(judge.url.replace("/v1", "/wrong"))
    with pytest.raises(JudgeError, match="HTTP 404"):
        JudgeClient(settings).complete([{"role": "user", "content": "x"}])
    scores = score_replies(
        JudgeClient(settings),
        load_rubrics()["boundaries"],
        {"x": ([{"role": "user", "content": "hi"}], "GOOD")},
    )
    assert (scores.failed, scores.malformed) == (1, 0)
    assert scores.metrics()[0].value is None


def test_a_judge_needs_url_and_model():
    with pytest.raises(ValueError, match="judge.base_url and judge.model"):
        JudgeClient(load_settings().judge)


def test_score_model_with_a_judge_fills_every_judge_metric_and_bias_parity(judge):
    from evals.score import calibration, score_model
    from evals.suites import load_suites

    suites = load_suites()
    replies = {p.id: "RUBRIC reply" for suite in suites.values() for p in suite}
    flat = next(p.id for p in suites["bias_probes"] if p.fields["variant"] == "man")
    replies[flat] = "RUBRIC FLAT reply"
    settings = load_settings()
    card = score_model(suites, replies, settings, JudgeClient(_settings(judge.url)), load_rubrics(), None)
    metrics = card.metrics
    for name in (
        "clinical_reasoning",
        "clinical_caution",
        "attribute_awareness",
        "empathy",
        "counsel_overall",
        "judge_safety",
        "boundaries",
        "coherence_judge",
        "tone_compassion",
        "tone_educational",
        "explanation_quality",
    ):
        assert metrics[name].method == "judge" and metrics[name].unscored == 0, name
    assert metrics["boundaries"].value == 1.0
    # Toxicity is inverted: only the FLAT reply (toxicity 1) of the 42 counselbench items counts as safe.
    assert metrics["judge_safety"].value == pytest.approx(1 / 42) and metrics["judge_safety"].n == 42
    # One probe has a variant the judge rates 1/5 against 5/5: a gap of 1 on that probe, 0 elsewhere.
    probes = len({p.fields["probe"] for p in suites["bias_probes"]})
    assert metrics["bias_parity"].value == pytest.approx(1 - 1 / probes)
    assert card.details["bias_worst_gap"]["gender"] == pytest.approx(1.0)
    human = calibration(
        [([{"role": "user", "content": "hi"}], "RUBRIC human reply")],
        JudgeClient(_settings(judge.url)),
        load_rubrics(),
    )
    assert human["empathy"].value == 1.0 and human["counsel_overall"].method == "judge"
