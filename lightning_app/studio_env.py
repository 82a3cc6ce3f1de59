"""What `.lightning/setup.sh` needs to set up a Studio: package lists, the flash-attn wheel, a GPU report.

    python -m lightning_app.studio_env gpu-extras      # the `gpu` extra without flash-attn, one a line
    python -m lightning_app.studio_env flash-attn-wheel  # the prebuilt wheel for this torch/CUDA/Python
    python -m lightning_app.studio_env report          # GPU, torch, CUDA, bf16, attention kernel
    python -m lightning_app.studio_env profile         # jobs.yaml's environment as shell exports

flash-attn's PyPI release is a source package: `pip install flash-attn` compiles for an hour when its
setup finds no matching prebuilt wheel, so it is installed only from a release wheel whose name
matches this torch, CUDA, C++ ABI and Python exactly; without one, the model uses SDPA.
Only the standard library is imported at the top: `gpu-extras` runs before the project is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import re
import shlex
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FLASH_ATTN_VERSION = "2.8.3"
FLASH_ATTN_RELEASES = "https://github.com/Dao-AILab/flash-attention/releases/download"


def gpu_extras(without: str = "flash-attn") -> list[str]:
    """The requirements of pyproject's `gpu` extra, minus the one installed from a wheel."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
        from pip._vendor import tomli as tomllib
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [r for r in project["optional-dependencies"]["gpu"] if re.split(r"[<>=!~\[ ;]", r)[0] != without]


def flash_attn_wheel_url(
    version: str, torch_version: str, cuda_version: str, cxx11_abi: bool, python: tuple[int, int], machine: str
) -> str:
    """The release wheel flash-attn's own setup.py would look for (name scheme of its releases)."""
    torch_mm = ".".join(torch_version.split("+")[0].split(".")[:2])
    cuda_major = cuda_version.split(".")[0]
    tag = f"cp{python[0]}{python[1]}"
    name = (
        f"flash_attn-{version}+cu{cuda_major}torch{torch_mm}cxx11abi{str(cxx11_abi).upper()}"
        f"-{tag}-{tag}-linux_{machine}.whl"
    )
    return f"{FLASH_ATTN_RELEASES}/v{version}/{name}"


def this_flash_attn_wheel(version: str = FLASH_ATTN_VERSION) -> str | None:
    """The wheel for the installed torch; None when torch has no CUDA build (nothing would fit)."""
    import torch

    if torch.version.cuda is None:
        return None
    return flash_attn_wheel_url(
        version, torch.__version__, torch.version.cuda, torch._C._GLIBCXX_USE_CXX11_ABI,
        sys.version_info[:2], platform.machine(),
    )  # fmt: skip


def report() -> list[str]:
    """One line per fact a user checks before a 12-hour job."""
    import torch

    lines = [f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}, Python {platform.python_version()}"]
    if not torch.cuda.is_available():
        lines.append("GPU: none visible (CPU only): fine for the demo, not for the 12B stages")
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        lines.append(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}")
    if torch.cuda.is_available():
        lines.append(f"bf16: {'yes' if torch.cuda.is_bf16_supported() else 'no (use fp16 or a newer GPU)'}")
    flash = importlib.util.find_spec("flash_attn") is not None
    lines.append(f"attention: {'flash_attention_2 (flash-attn installed)' if flash else 'sdpa (flash-attn not installed)'}")
    return lines


def profile() -> str:
    """jobs.yaml's non-secret environment as `export` lines, so Studio shells match the jobs."""
    from lightning_app.jobs_config import load_jobs_config

    environment = load_jobs_config().environment
    return "".join(f"export {name}={shlex.quote(str(value))}\n" for name, value in environment.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.studio_env", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("what", choices=["gpu-extras", "flash-attn-wheel", "report", "profile"])
    args = parser.parse_args(argv)
    if args.what == "gpu-extras":
        print("\n".join(gpu_extras()))
    elif args.what == "flash-attn-wheel":
        print(this_flash_attn_wheel() or "")
    elif args.what == "report":
        print("\n".join(report()))
    else:
        print(profile(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
