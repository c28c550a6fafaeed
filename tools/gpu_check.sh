#!/usr/bin/env bash
# The GPU check in one command (no network; about 5 minutes on a desktop GPU, 8 at most):
#   tools/gpu_check.sh              on a machine with CUDA: CUDA-only tests + `zsp bench gpu`
#   tools/gpu_check.sh --dry-run    anywhere (CI): the same script on the CPU, small and eager only
# Writes results/gpu_<card>.json (or --out FILE). Uses $ZSP_PYTHON, else .venv when it exists (make setup), else the
# python3 on PATH (it needs torch with CUDA and this repository's requirements).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DRY=0; OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY=1; shift;;
    --out) OUT="$2"; shift 2;;
    *) echo "usage: tools/gpu_check.sh [--dry-run] [--out FILE]" >&2; exit 2;;
  esac
done
PY="${ZSP_PYTHON:-python3}"; [[ -z "${ZSP_PYTHON:-}" && -x .venv/bin/python ]] && PY=.venv/bin/python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # the package, also without an installed venv
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
if [[ $DRY == 0 ]] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: torch sees no CUDA GPU here; use --dry-run to check the script on the CPU" >&2; exit 2
fi
card="$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")' \
        | tr 'A-Z ' 'a-z_' | tr -cd 'a-z0-9_.-')"
OUT="${OUT:-results/gpu_${card}$([[ $DRY == 1 ]] && echo _dry).json}"
if [[ $DRY == 0 ]]; then
  echo "gpu_check: CUDA-only tests (fast path fp32/fp16 vs eager, msda, segmenter on cuda)"
  timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_runtime_torch_fast_path.py \
      tests/test_model_msda.py tests/test_runtime_segmenter.py
fi
echo "gpu_check: timing and numerics -> $OUT"
args=(--out "$OUT"); [[ $DRY == 1 ]] && args+=(--dry-run)
timeout 300 "$PY" -m zsp_ros.cli.main bench gpu "${args[@]}"
