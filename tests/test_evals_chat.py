"""`python -m stages.chat` answers a --prompt, streaming the reply, from every kind of model folder."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from evals.loading import MERGED, MIXTURE, PEFT, load_model, model_kind
from moe.adapter_io import save_adapter
from moe.base_model import TINY, load_base_model, load_tokenizer
from moe.config import MoELoRAConfig
from moe.model import attach_moe_lora, trainable_parameters
from stages.chat import main


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    config = MoELoRAConfig(r=4, alpha=8)
    mixture = attach_moe_lora(load_base_model(TINY), config)
    with torch.no_grad():
        for param in trainable_parameters(mixture).values():
            param.normal_(0, 0.05)  # trained-looking adapters: B is zero at init
    save_adapter(mixture, root / "mixture", config, TINY)
    base = load_base_model(TINY)
    base.name_or_path = TINY  # what PEFT records as the adapter's base
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(root / "peft")
    load_base_model(TINY).save_pretrained(root / "merged")
    load_tokenizer(TINY).save_pretrained(root / "merged")
    return root


def test_chat_answers_a_prompt_from_a_mixture_checkpoint(folders, capsys):
    assert (
        main(["--checkpoint", str(folders / "mixture"), "--prompt", "I feel low.", "--max-new-tokens", "8"])
        == 0
    )
    assert capsys.readouterr().out.strip()


def test_chat_answers_a_prompt_with_the_base_model(capsys):
    assert (
        main(
            [
                "--checkpoint",
                "base",
                "--base-model",
                "tiny",
                "--prompt",
                "I feel low.",
                "--max-new-tokens",
                "8",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip()


def test_every_folder_kind_loads_and_a_wrong_base_is_refused(folders):
    assert [model_kind(str(folders / k)) for k in ("mixture", "peft", "merged")] == [MIXTURE, PEFT, MERGED]
    mixture = load_model(str(folders / "mixture"), TINY)
    base = load_model("base", TINY)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(mixture.model(input_ids=ids).logits, base.model(input_ids=ids).logits)
    assert load_model(str(folders / "peft")).base_model == TINY
    assert load_model(str(folders / "merged")).kind == MERGED
    with pytest.raises(ValueError, match="was built on 'tiny', but the stage's base model is 'other/model'"):
        load_model(str(folders / "mixture"), "other/model")


def test_a_folder_that_is_no_model_is_refused_before_loading(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"neither a mixture checkpoint .* it holds \['notes.txt'\]"):
        model_kind(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model_kind(str(tmp_path / "missing"))
