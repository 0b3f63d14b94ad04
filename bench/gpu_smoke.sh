#!/usr/bin/env bash
# GPU smoke test for a machine with one CUDA GPU (docs/gpu.md); the checks live in bench/gpu_smoke.py.
# Usage (venv active; PY=... picks another interpreter):
#   bash bench/gpu_smoke.sh                    # offline tiny model, built on the fly
#   bash bench/gpu_smoke.sh /models/M [opts]   # a local Hugging Face model directory
#   bash bench/gpu_smoke.sh --help             # all options
# Exits 2 without CUDA, 1 if a check fails; the summary is in runs/gpu_smoke/summary.json.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."
PY="${PY:-python}"
ARGS=()
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  ARGS+=(--model "$1")
  shift
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec "$PY" bench/gpu_smoke.py ${ARGS[@]+"${ARGS[@]}"} "$@"
