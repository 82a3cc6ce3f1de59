import json
import logging

import pytest
import torch
from mixtures import perturbed_mixture
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from moe.adapter_io import save_adapter
from moe.base_model import TINY, load_base_model, load_tokenizer
from moe.config import MoELoRAConfig
from moe.model import attach_moe_lora, forced_gates
from lightning_app.vllm import max_lora_rank
from stages.export import main

OBSERVED = {
    "psychology": [0.6, 0.0, 0.3, 0.1],
    "mental_health": [0.1, 0.7, 0.2, 0.0],
    "bias_detection": [0.0, 0.2, 0.8, 0.0],
    "general_therapeutic": [0.25, 0.25, 0.25, 0.25],
}
IDS = torch.arange(3, 40).reshape(1, -1)


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    """A trained-looking mixture (every adapter and router weight non-trivial) saved as a checkpoint."""
    config = MoELoRAConfig()
    model = perturbed_mixture(TINY, config, scale=0.2)
    checkpoint = tmp_path_factory.mktemp("checkpoint")
    save_adapter(model, checkpoint, config, base_model=TINY, extra={"observed_gates": OBSERVED})
    return model, checkpoint


def mixture_logits(model, gates: list[float]) -> torch.Tensor:
    with torch.no_grad(), forced_gates(model, torch.tensor(gates)):
        return model(input_ids=IDS, use_cache=False).logits


def peft_logits(directory) -> torch.Tensor:
    peft = PeftModel.from_pretrained(load_base_model(TINY), directory).eval()
    with torch.no_grad():
        return peft(input_ids=IDS, use_cache=False).logits


@pytest.mark.parametrize(
    ("flags", "gates", "rank"),
    [
        (["--domain", "bias_detection"], [0.0, 0.0, 1.0, 0.0], 16),
        (["--domain", "psychology", "--gates", "observed"], OBSERVED["psychology"], 48),
        (["--average"], [0.25, 0.25, 0.25, 0.25], 64),
        (
            ["--average", "--gates", "observed"],
            torch.tensor(list(OBSERVED.values())).mean(0).tolist(),
            64,
        ),
    ],
)
def test_peft_export_gives_the_logits_of_the_mixture_with_forced_gates(
    mixture, tmp_path, capsys, flags, gates, rank
):
    model, checkpoint = mixture
    out = tmp_path / "export"
    assert main(["--checkpoint", str(checkpoint), "--out", str(out), *flags]) == 0
    printed = capsys.readouterr().out
    assert f"PEFT LoRA adapter of rank {rank}" in printed
    assert f"--max-lora-rank {max_lora_rank(rank)}" in printed
    stored = json.loads((out / "adapter_config.json").read_text())
    assert (stored["peft_type"], stored["r"], stored["lora_alpha"]) == ("LORA", rank, rank)
    expected = mixture_logits(model, gates)
    assert not torch.allclose(expected, mixture_logits(model, [1.0, 0.0, 0.0, 0.0]), atol=1e-3)
    torch.testing.assert_close(peft_logits(out), expected, rtol=0, atol=1e-5)


def test_merged_export_loads_with_transformers_and_matches(mixture, tmp_path):
    model, checkpoint = mixture
    out = tmp_path / "merged"
    flags = ["--domain", "mental_health", "--gates", "observed", "--format", "merged"]  # tiny's own dtype: float32
    main(["--checkpoint", str(checkpoint), "--out", str(out), *flags])
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        logits = merged(input_ids=IDS, use_cache=False).logits
    torch.testing.assert_close(logits, mixture_logits(model, OBSERVED["mental_health"]), rtol=0, atol=1e-5)
    assert AutoTokenizer.from_pretrained(out).eos_token == "<|im_end|>"


def test_observed_gates_missing_fall_back_to_one_hot_and_say_so(tmp_path, caplog, capsys):
    config = MoELoRAConfig()
    checkpoint = tmp_path / "checkpoint"
    save_adapter(attach_moe_lora(load_base_model(TINY), config), checkpoint, config, base_model=TINY)
    with caplog.at_level(logging.WARNING):
        main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"), "--domain", "mental_health",
              "--gates", "observed"])
    assert "records no observed gates for ['mental_health']: using one-hot gates" in caplog.text
    assert "gates: psychology 0.0000, mental_health 1.0000," in capsys.readouterr().out


def test_bad_requests_stop_with_a_clear_message(mixture, tmp_path):
    _, checkpoint = mixture
    with pytest.raises(ValueError, match=r"--domain 'grief' is not one of this adapter's expert domains"):
        main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "a"), "--domain", "grief"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(SystemExit, match="exists and is not empty"):
        main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "full"), "--average"])
    with pytest.raises(FileNotFoundError, match="no adapter config"):
        main(["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "b"), "--average"])
    with pytest.raises(SystemExit):  # argparse: one of --domain / --average is required
        main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "c")])
    assert max_lora_rank(48) == 64 and max_lora_rank(16) == 16


def test_every_export_is_world_readable_and_says_how_to_serve_it(mixture, tmp_path):
    _, checkpoint = mixture
    out = tmp_path / "average"
    main(["--checkpoint", str(checkpoint), "--out", str(out), "--average", "--gates", "observed"])
    modes = {path.name: path.stat().st_mode & 0o777 for path in out.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes
    info = json.loads((out / "export.json").read_text())
    assert (info["base_model"], info["rank"], info["gate_mode"]) == (TINY, 64, "observed")
    readme = (out / "README.md").read_text()
    served = next(line for line in readme.splitlines() if line.startswith("vllm serve"))
    argv = served.split()
    assert int(argv[argv.index("--max-lora-rank") + 1]) >= info["rank"]
    assert argv[argv.index("--dtype") + 1] == "float32"  # tiny's own; vLLM's auto would serve float16
    assert f"average={out.resolve()}" in argv and str(checkpoint) in readme


@pytest.mark.parametrize("kind, tolerance", [("f32", 1e-5), ("f16", 2e-3), ("bf16", 1e-2), ("q8_0", 8e-2)])
def test_gguf_export_reads_back_with_transformers_gguf_reader(mixture, tmp_path, kind, tolerance):
    """transformers' own GGUF reader (an independent implementation) gives the merged model's logits."""
    model, checkpoint = mixture
    out = tmp_path / "gguf"
    main(["--checkpoint", str(checkpoint), "--out", str(out), "--domain", "psychology", "--gates", "observed",
          "--format", "gguf", "--gguf-type", kind])
    name = f"gguf-{kind}.gguf"
    loaded = AutoModelForCausalLM.from_pretrained(out, gguf_file=name, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = loaded(input_ids=IDS, use_cache=False).logits
    expected = mixture_logits(model, OBSERVED["psychology"])
    torch.testing.assert_close(logits, expected, rtol=0, atol=tolerance * expected.abs().max().item())
    tokenizer = AutoTokenizer.from_pretrained(out, gguf_file=name)
    chat = [{"role": "user", "content": "I can't sleep, my mind keeps racing."}]
    original = load_tokenizer(TINY)
    text = original.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert tokenizer(text)["input_ids"] == original(text)["input_ids"]
    assert tokenizer.chat_template == original.chat_template and tokenizer.eos_token == "<|im_end|>"
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{name}") and 'PARAMETER stop "<|im_end|>"' in modelfile


def test_a_plain_lora_exports_as_itself_for_every_domain(tmp_path):
    """MoELoRAConfig.plain_lora(): every domain maps to the one expert, so each --domain export is the
    whole adapter (rank num_experts x r) and PEFT gives the trained model's own logits, router untouched."""
    config = MoELoRAConfig().plain_lora()
    model = perturbed_mixture(TINY, config, 0.2, seed=1)
    with torch.no_grad():
        own = model(input_ids=IDS, use_cache=False).logits
    checkpoint = tmp_path / "checkpoint"
    save_adapter(model, checkpoint, config, base_model=TINY)
    main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "served"), "--domain", "bias_detection"])
    assert json.loads((tmp_path / "served" / "adapter_config.json").read_text())["r"] == 64
    torch.testing.assert_close(peft_logits(tmp_path / "served"), own, rtol=0, atol=1e-4)
