#!/usr/bin/env bash
# The edge-level benchmarks at full Phi-2 size (random weights) on one GPU, bfloat16 then float32, as one
# device session. The GPU machine has torch with CUDA; the wheels in .whl/ (transformer-lens and what it
# needs, fetched with pip download on a machine with network) are installed beside it, not over it.
#
#     bash benchmarks/gpu_circuits.sh [OUT_DIR]
set -u
out="${1:-${OUT:-/tmp}}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
common=(--config phi2 --device cuda --prompts 8 --pos 64 --exact-edges 100 --repeat 2 --keep /tmp/models)
python3 benchmarks/circuits.py "${common[@]}" --dtype bfloat16 --loop-edges 20 2>&1 | tee "$out/circuits_bf16.txt"
python3 benchmarks/circuits.py "${common[@]}" --dtype float32 --loop-edges 10 2>&1 | tee "$out/circuits_fp32.txt"
