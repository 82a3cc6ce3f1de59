"""`python -m stages.chat` answers a --prompt, streaming the reply."""

import pytest

from evals.loading import model_kind
from stages.chat import main


def test_chat_answers_a_prompt_with_the_base_model(capsys):
    assert main(["--checkpoint", "base", "--base-model", "tiny", "--prompt", "I feel low.", "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out.strip()


def test_a_folder_that_is_no_model_is_refused_before_loading(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"neither a mixture checkpoint .* it holds \['notes.txt'\]"):
        model_kind(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model_kind(str(tmp_path / "missing"))
