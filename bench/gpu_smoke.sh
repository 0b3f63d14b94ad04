#!/usr/bin/env bash
# GPU smoke test for a person with one CUDA GPU (docs/gpu.md). Checks, in order:
#   1. CUDA is visible to torch;
#   2. bf16 training of the offline tiny model on the GPU (gradient checkpointing, chunked log-probs);
#   3. vLLM generation + weight sync + truncated importance sampling (if vllm is installed);
#   4. a few steps of a real small model from a local directory (if MODEL_DIR is given).
# Usage: bash bench/gpu_smoke.sh [MODEL_DIR]     (run from the repository root, venv active)
set -euo pipefail
MODEL_DIR="${1:-}"
OUT="${OUT:-runs/gpu_smoke}"
PY="${PY:-python}"
$PY - <<'PYEOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_smoke: no CUDA device visible to torch")
print(f"gpu_smoke: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PYEOF
COMMON=(generation.group_size=8 generation.prompts_per_step=16 generation.max_new_tokens=16 train.steps=5
        eval.n=64 log.tensorboard=false checkpoint.every=0 model.device=cuda)
echo "gpu_smoke: [2] bf16 training of the tiny model"
$PY -m groupo demo --force --out "$OUT/tiny_bf16" "${COMMON[@]}" warmstart.steps=50 \
    model.dtype=bfloat16 model.gradient_checkpointing=true model.logprob_chunk=8
if $PY -c "import vllm" 2>/dev/null; then
  echo "gpu_smoke: [3] vLLM generation (colocated, sleep mode, TIS)"
  $PY -m groupo demo --force --out "$OUT/tiny_vllm" "${COMMON[@]}" warmstart.steps=50 \
      model.dtype=bfloat16 generation.backend=vllm
else
  echo "gpu_smoke: [3] skipped: vllm is not installed (pip install 'groupo[vllm]')"
fi
if [ -n "$MODEL_DIR" ]; then
  echo "gpu_smoke: [4] real model $MODEL_DIR, 3 steps"
  BACKEND=hf; $PY -c "import vllm" 2>/dev/null && BACKEND=vllm
  $PY -m groupo train grpo --force --out "$OUT/real" model.path="$MODEL_DIR" model.dtype=bfloat16 \
      model.device=cuda model.gradient_checkpointing=true model.logprob_chunk=256 task.name=arithmetic \
      generation.backend=$BACKEND generation.group_size=8 generation.prompts_per_step=8 \
      generation.max_new_tokens=256 train.steps=3 eval.n=32 log.tensorboard=false checkpoint.every=0
fi
$PY - "$OUT" <<'PYEOF'
import json, sys, pathlib
for m in sorted(pathlib.Path(sys.argv[1]).glob("*/metrics.jsonl")):
    rows = [json.loads(l) for l in m.read_text().splitlines()]
    last = rows[-1]
    print(f"gpu_smoke: {m.parent.name}: {len(rows)} steps, median step "
          f"{sorted(r['time/step'] for r in rows)[len(rows) // 2]:.2f} s, {last.get('tokens_per_s', 0):.0f} tokens/s, "
          f"peak GPU memory {last.get('mem/gpu_peak_gb', float('nan')):.2f} GB, loss {last.get('loss')}")
PYEOF
echo "gpu_smoke: all checks ran"
