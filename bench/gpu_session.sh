#!/usr/bin/env bash
# One short, prepared GPU session (under 10 minutes on one H100/H200): what a lent GPU machine checks.
# Checks 6 (rollout server) and 7 (FSDP2 on nccl) are bench/gpu_scale.py's; afterwards, here:
#   python bench/gpu_scale.py report OUT --doc docs/gpu.md --header "machine, date, versions"
# Run from the repository root on a machine whose python3 has torch with CUDA, transformers and
# peft; math-verify and its two dependencies come as wheels in .whl/ when the machine has no index.
#   OUT=/some/dir bash bench/gpu_session.sh
# Writes OUT/session.log and the gpu_smoke summaries; results are written up in docs/gpu.md.
set -uo pipefail
OUT="${OUT:-runs/gpu_session}"
mkdir -p "$OUT"
WORK=/tmp/groupo_gpu
mkdir -p "$WORK"
exec > >(tee "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
python3 -c "import peft, math_verify; print('peft', peft.__version__)" || echo "missing peft or math_verify"
python3 -m pip list 2>/dev/null | grep -i -E "^(vllm|trl|accelerate|datasets|pyarrow|pandas|xdist|pytest-xdist|flash|triton) " || true
T0=$(date +%s)
BUDGET="${BUDGET:-560}"   # seconds for the whole script; the test suite gets what is left
ONLY="${ONLY:-1 2 3 4 5 6 7}"   # which numbered checks to run (they run in the order 1 6 7 2 4 3 5), e.g. ONLY="1 5"
step() { echo; echo "=== $1 (t=$(( $(date +%s) - T0 )) s)"; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
# want N SECONDS: check N is asked for and SECONDS of the budget are left (else it says it skips)
want() {
  [[ " $ONLY " == *" $1 "* ]] || return 1
  if [ "$(left)" -lt "${2:-0}" ]; then echo "=== $1 skipped: $(left) s of the budget left, it needs $2"; return 1; fi
}

if want 1 100; then
step "1. gpu_smoke, tiny model (hidden 256), float32 weights + bf16 autocast, gradient checkpointing"
timeout 100 python3 bench/gpu_smoke.py --out "$WORK/smoke_autocast" --steps 6 --skip-vllm
cp "$WORK/smoke_autocast/summary.json" "$OUT/smoke_autocast.json" 2>/dev/null
fi

if want 6 150; then
step "6. rollout server on the GPU (groupo serve-rollouts --device cuda): colocated vs server vs overlap"
timeout 150 python3 bench/gpu_scale.py server --out "$WORK/scale_server" --steps 8 --timeout 60
cp "$WORK/scale_server/server.json" "$OUT/server.json" 2>/dev/null
fi

if want 7 180; then
step "7. FSDP2 and data parallel on nccl, one process per GPU (at most 2): dist_check's cases vs one process"
timeout 180 python3 bench/gpu_scale.py fsdp --out "$WORK/scale_fsdp" --timeout 170
cp "$WORK/scale_fsdp/fsdp.json" "$OUT/fsdp.json" 2>/dev/null
fi

if want 2 60; then
step "2. gpu_smoke, same model, bf16 weights"
timeout 60 python3 bench/gpu_smoke.py --out "$WORK/smoke_bf16" --steps 6 --skip-vllm --precision bf16 \
  --model "$WORK/smoke_autocast/tiny_model"
cp "$WORK/smoke_bf16/summary.json" "$OUT/smoke_bf16.json" 2>/dev/null
fi

if want 4 45; then
step "4. Prefix Grouper forward+backward on the GPU (prompt 512, completion 64, G=8)"
timeout 45 python3 bench/prefix_bench.py --device cuda --reps 5 2>&1 | tail -8
fi

if want 3 160; then
step "3. a ~400M-parameter Llama-shaped model (random weights, character tokenizer): 4 steps, 256 new tokens"
python3 -c "
from groupo.model.tiny import build_tiny
build_tiny('$WORK/m400', seed=0, hidden=1024, layers=24, heads=16)
import json; c = json.load(open('$WORK/m400/config.json')); print('built', c['hidden_size'], c['num_hidden_layers'])"
timeout 150 python3 bench/gpu_smoke.py --model "$WORK/m400" --out "$WORK/smoke_400m" --steps 4 --skip-vllm \
  --max-new-tokens 256 --train-arg train.micro_batches=4
cp "$WORK/smoke_400m/summary.json" "$OUT/smoke_400m.json" 2>/dev/null
for d in "$WORK"/smoke_400m/train_hf "$WORK"/smoke_autocast/train_hf; do
  [ -f "$d/metrics.jsonl" ] && python3 - "$d/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
keys = ["step", "loss", "time/step", "time/gen", "time/forward", "time/backward", "time/optimizer", "tokens_per_s", "mem/gpu_peak_gb"]
print(sys.argv[1])
for r in rows:
    print("  " + "  ".join(f"{k}={r[k]:.4g}" if isinstance(r.get(k), float) else f"{k}={r.get(k)}" for k in keys if k in r))
EOF
done
fi

if want 5 60; then
step "5. the default test suite on this software stack (CPU tests, 8 workers)"
if python3 -c "import xdist" 2>/dev/null; then XD=(-n 8); else XD=(); fi
timeout $(( BUDGET - ($(date +%s) - T0) )) python3 -m pytest -q -p no:cacheprovider "${XD[@]}" ${PYTEST_ARGS:-} 2>&1 | tail -40
fi

step "done"

