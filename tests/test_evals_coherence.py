"""Long conversations are written by the model itself: every scripted counsellor turn is replaced by
the model's own reply, and the last reply is scored for the facts of the first client turns."""

from dataclasses import replace

from inspect_ai import eval as inspect_eval
from inspect_ai.model import ModelOutput, ModelUsage, get_model

from evals.settings import load_settings
from evals.suites import load_suites
from evals.tasks import suite_tasks


def test_the_model_writes_every_assistant_turn_of_a_long_conversation(tmp_path):
    settings = replace(load_settings(), epochs=1)
    probe = next(p for p in load_suites()["long_conversations"] if p.id == "long-dog-biscuit")
    users = [m["content"] for m in probe.messages if m["role"] == "user"]
    # The model's own replies: each names a fact, and the last one recalls both planted facts.
    outputs = [f"own reply {i}" for i in range(len(users) - 1)] + ["Biscuit and your night shifts as a nurse."]
    # Usage given: mockllm would otherwise count tokens with a tokenizer it downloads.
    usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
    replies = [ModelOutput.from_content("mockllm/model", o).model_copy(update={"usage": usage}) for o in outputs]
    model = get_model("mockllm/model", custom_outputs=replies)
    (task,) = suite_tasks(settings, "You are kind.", suites={"long_conversations": [probe]})
    (log,) = inspect_eval(task, model=model, log_dir=str(tmp_path), display="none")
    (sample,) = log.samples
    roles = [m.role for m in sample.messages]
    assert roles == ["system"] + ["user", "assistant"] * len(users)
    assert [m.text for m in sample.messages if m.role == "user"] == users
    written = [m.text for m in sample.messages if m.role == "assistant"]
    assert written == outputs  # none of the scripted counsellor turns survives
    assert sample.scores["fact_recall"].value == {"fact_recall": 1.0}
