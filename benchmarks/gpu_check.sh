#!/usr/bin/env bash
# The one prepared device check: under 13 minutes on one H100/H200, one JSON line per figure on stdout
# (logs on stderr). Not yet run on a GPU: no figure from it is recorded anywhere until it has been.
#
#   bash .lightning/setup.sh && pip install flash-attn --no-build-isolation   # once, on the GPU machine
#   bash benchmarks/gpu_check.sh > gpu_check.jsonl                           # on one H100/H200
#   bash benchmarks/gpu_check.sh --dry-run                                   # CPU: same code, toy size
#
# 1. throughput: 12B dimensions (random weights, all 40 layers, 131k head), seq 2048, micro-batch 4,
#    activation checkpointing, bf16-mixed: MoE-LoRA E4 top-2 and the efficient plain LoRA r16, tokens/s,
#    peak GiB, MFU, HFU (executed FLOPs with recompute, from moe.plan), the step-time ratio
#    (target <= 1.05).                                                                 (~4 min)
# 2. plan: 12B dims, MoE-LoRA, the shipped plan (micro-batch 2, no activation checkpointing) and full
#    checkpointing at 4 x 2048 side by side: tokens/s, peak GiB, HFU, and measured peak over the
#    fake-tensor prediction (moe.plan).                                                 (~4 min)
# 3. packing: packed examples get their solo logits under flash_attention_2 (flattened micro-batch)
#    and sdpa, bf16 on CUDA, with the leaky layout as control.                         (~1 min)
# 4. four-bit: a small random Mistral loaded in bitsandbytes 4-bit, MoE-LoRA attached, one training
#    step (loss, updated tensors, peak GB).                                             (~1 min)
# Each check has its own time limit, so one that hangs cannot take the others down with it.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DRY=()
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY=(--dry-run)
fi

run_check() {  # name, seconds
  timeout "$2" "$PYTHON" -m benchmarks.gpu_checks "$1" "${DRY[@]}"
  local code=$?
  if [[ $code -ne 0 ]]; then
    printf '{"check": "%s", "error": "exit %d%s"}\n' "$1" "$code" "$([[ $code -eq 124 ]] && echo ', timed out')"
  fi
}

run_check throughput 300
run_check plan 300
run_check packing 90
run_check four-bit 90
