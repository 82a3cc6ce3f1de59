import copy

import pytest

from datamodules import template
from datamodules.conversation import Conversation
from datamodules.template import (
    IGNORE_INDEX,
    KEPT,
    TOO_LONG,
    TRUNCATED,
    TemplateError,
    TemplateOptions,
    check_template,
    encode,
    encode_batch,
    labelled_runs,
)
from moe.base_model import load_tokenizer

# Zephyr-style: a different layout and end-of-turn token (</s>) from the tiny tokenizer's ChatML.
ZEPHYR = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '</s>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


def conversation(*turns: tuple[str, str], origin: str = "t.jsonl:1") -> Conversation:
    return Conversation(
        messages=tuple({"role": r, "content": c} for r, c in turns),
        domain="mental_health",
        source="test",
        group=origin,
        origin=origin,
    )


MULTI = conversation(
    ("user", "I can't sleep, my mind keeps racing."),
    ("assistant", "That sounds exhausting. What goes through your mind at night?"),
    ("user", "Work, mostly.\nDeadlines."),
    ("assistant", " Let's look at one deadline together."),
)


def decoded_runs(tokenizer, labels):
    return [
        tokenizer.decode(labels[r.start : r.stop], skip_special_tokens=False) for r in labelled_runs(labels)
    ]


def test_labels_are_exactly_every_assistant_turn_and_its_end_token(tokenizer):
    [encoded] = encode(MULTI.messages, tokenizer, TemplateOptions())
    assert encoded.status == KEPT
    assert len(encoded.labels) == len(encoded.input_ids)
    assert decoded_runs(tokenizer, encoded.labels) == [
        "That sounds exhausting. What goes through your mind at night?<|im_end|>",
        " Let's look at one deadline together.<|im_end|>",
    ]
    # Labels are the ids themselves (not shifted): the causal LM shifts internally.
    for token, label in zip(encoded.input_ids, encoded.labels):
        assert label in (IGNORE_INDEX, token)


def test_last_only_trains_the_final_assistant_turn(tokenizer):
    [encoded] = encode(MULTI.messages, tokenizer, TemplateOptions(assistant_turns="last"))
    assert decoded_runs(tokenizer, encoded.labels) == [" Let's look at one deadline together.<|im_end|>"]


def test_stage_system_prompt_added_only_when_missing(tokenizer):
    options = TemplateOptions(system_prompt="You are a warm counsellor.")
    with_prompt = tokenizer.decode(encode(MULTI.messages, tokenizer, options)[0].input_ids)
    assert with_prompt.startswith("<|im_start|>system\nYou are a warm counsellor.<|im_end|>")
    own = conversation(("system", "Be brief."), ("user", "hi"), ("assistant", "Hello."))
    text = tokenizer.decode(encode(own.messages, tokenizer, options)[0].input_ids)
    assert "warm counsellor" not in text and text.startswith("<|im_start|>system\nBe brief.")
    # The system prompt never carries loss.
    assert decoded_runs(tokenizer, encode(own.messages, tokenizer, options)[0].labels) == ["Hello.<|im_end|>"]


def test_other_template_other_end_token(tokenizer):
    zephyr = copy.deepcopy(tokenizer)
    zephyr.chat_template = ZEPHYR
    [encoded] = encode(MULTI.messages, zephyr, TemplateOptions(assistant_turns="all"))
    assert decoded_runs(zephyr, encoded.labels) == [
        "That sounds exhausting. What goes through your mind at night?</s>",
        " Let's look at one deadline together.</s>",
    ]
    assert check_template([MULTI], zephyr, TemplateOptions()) == 1


def test_overlong_is_cut_at_a_turn_boundary_or_dropped(tokenizer):
    [whole] = encode(MULTI.messages, tokenizer, TemplateOptions())
    full = len(whole.input_ids)
    [first] = encode(MULTI.messages[:2], tokenizer, TemplateOptions())
    first_turn = len(first.input_ids)
    [cut] = encode(MULTI.messages, tokenizer, TemplateOptions(max_seq_length=full - 1, overflow="truncate"))
    assert cut.status == TRUNCATED and len(cut.input_ids) == first_turn and len(cut.messages) == 2
    assert decoded_runs(tokenizer, cut.labels) == [
        "That sounds exhausting. What goes through your mind at night?<|im_end|>"
    ]
    lost = decoded_runs(tokenizer, whole.labels)[1]
    assert cut.lost == len(tokenizer(lost, add_special_tokens=False)["input_ids"])
    [dropped] = encode(MULTI.messages, tokenizer, TemplateOptions(max_seq_length=full - 1, overflow="drop"))
    assert dropped.status == TOO_LONG and dropped.input_ids == []
    assert dropped.lost == sum(1 for label in whole.labels if label != IGNORE_INDEX)
    [nothing_fits] = encode(
        MULTI.messages, tokenizer, TemplateOptions(max_seq_length=first_turn - 1, overflow="truncate")
    )
    assert nothing_fits.status == TOO_LONG
    statuses = [
        e.status
        for pieces in encode_batch([MULTI.messages] * 2, tokenizer, TemplateOptions(max_seq_length=full))
        for e in pieces
    ]
    assert statuses == [KEPT, KEPT]


def test_a_long_conversation_becomes_windows_that_each_end_on_an_assistant_turn(tokenizer):
    """Nothing of the tail is dropped: each window trains the turns no earlier window trained, with
    the system turn and the earlier context that fits."""
    turns = [("system", "Be kind.")]
    for i in range(6):
        turns += [("user", f"Question {i}: " + "why " * 20), ("assistant", f"Answer {i}: " + "because " * 20)]
    long = conversation(*turns)
    [whole] = encode(long.messages, tokenizer, TemplateOptions(max_seq_length=4096))
    limit = len(whole.input_ids) - 100  # five of the six exchanges fit
    windows = encode(long.messages, tokenizer, TemplateOptions(max_seq_length=limit))
    assert len(windows) >= 2 and {w.status for w in windows} == {template.WINDOW}
    trained = []
    for window in windows:
        assert len(window.input_ids) <= limit
        assert window.messages[0] == {"role": "system", "content": "Be kind."}
        assert window.messages[1]["role"] == "user" and window.messages[-1]["role"] == "assistant"
        assert window.trained[-1] == len(window.messages) - 1
        trained += [window.messages[i]["content"] for i in window.trained]
        assert decoded_runs(tokenizer, window.labels) == [
            window.messages[i]["content"] + "<|im_end|>" for i in window.trained
        ]
    # every assistant turn trained exactly once, in order; nothing lost
    assert trained == [c for r, c in turns if r == "assistant"] and sum(w.lost for w in windows) == 0
    # a later window keeps earlier context: more messages than its own exchange
    assert any(len(w.messages) > 1 + 2 * len(w.trained) for w in windows[1:])
    assert check_template([long], tokenizer, TemplateOptions(max_seq_length=limit)) == 1


@pytest.mark.parametrize("template_text", [None, ZEPHYR])
@pytest.mark.parametrize("system", [None, "Be kind."])
@pytest.mark.parametrize("overflow", ["window", "truncate"])
def test_each_part_has_the_tokens_of_its_own_rendering(tokenizer, template_text, system, overflow):
    """A window or a cut conversation takes its ids from the whole conversation's where the cuts
    fall on special tokens: they must be exactly what tokenizing the part's own rendering gives,
    with the same labels, whatever the template (ChatML cuts at <|im_start|>; Zephyr's turns open
    with plain text, so its parts are tokenized)."""
    tokenizer = copy.deepcopy(tokenizer)
    if template_text is not None:
        tokenizer.chat_template = template_text
    messages = []
    for i in range(7):
        messages += [("user", f"Question {i}: " + "why not, " * (5 + 3 * i))]
        messages += [("assistant", f"Answer {i}: ok " * (i + 2))]
    long = conversation(*messages)
    options = TemplateOptions(max_seq_length=160, system_prompt=system, overflow=overflow)
    parts = encode(long.messages, tokenizer, options)
    assert parts and all(p.status != KEPT for p in parts)
    for part in parts:
        rendered = tokenizer.apply_chat_template(
            template.with_system_prompt(part.messages, system), tokenize=False
        )
        assert part.input_ids == tokenizer(rendered, add_special_tokens=False)["input_ids"]
        assert decoded_runs(tokenizer, part.labels) == [
            part.messages[i]["content"] + ("</s>" if template_text else "<|im_end|>") for i in part.trained
        ]


def test_check_template_passes_and_counts(tokenizer):
    short = conversation(("user", "hi"), ("assistant", "Hello, how are you feeling today?"))
    assert check_template([MULTI, short, MULTI], tokenizer, TemplateOptions(), n=2) == 2


def test_check_template_catches_an_off_by_one_label_bug_with_a_diff(tokenizer, monkeypatch):
    real = template._labels

    def shifted(*args):
        labels = real(*args)
        return [IGNORE_INDEX] + labels[:-1]  # every label one token late: a classic bug

    monkeypatch.setattr(template, "_labels", shifted)
    with pytest.raises(TemplateError) as error:
        check_template([MULTI], tokenizer, TemplateOptions())
    message = str(error.value)
    assert "t.jsonl:1, trained assistant turn 0: first difference at character 0" in message
    assert "--- assistant text" in message and "+++ decoded labels" in message
    assert "-That sounds exhausting." in message


def test_template_that_rewrites_content_is_refused(tokenizer):
    stripping = copy.deepcopy(tokenizer)
    stripping.chat_template = tokenizer.chat_template.replace(
        "message['content']", "message['content'] | upper"
    )
    with pytest.raises(TemplateError, match="verbatim"):
        encode(MULTI.messages, stripping, TemplateOptions())


def test_template_without_end_of_turn_is_refused(tokenizer):
    open_ended = copy.deepcopy(tokenizer)
    open_ended.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    )
    with pytest.raises(TemplateError, match="no end-of-turn special token"):
        encode(MULTI.messages, open_ended, TemplateOptions())


def test_template_that_renders_history_differently_is_refused(tokenizer):
    last_differs = copy.deepcopy(tokenizer)
    last_differs.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
        "{% if loop.last %}{{ '<s>' }}{% endif %}{% endfor %}"
    )
    with pytest.raises(TemplateError, match="prefixes"):
        encode(MULTI.messages, last_differs, TemplateOptions())
