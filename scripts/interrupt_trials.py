"""Ctrl-C a 2-process run at random moments, then resume it: it must stop without hanging (well
within train.pg_timeout) and always end with the weights of an uninterrupted run.

    OMP_NUM_THREADS=1 python scripts/interrupt_trials.py [--trials 20] [--fsdp] [--seed 0]

Each trial starts ``torchrun --nproc_per_node 2 -m groupo train`` in its own process group,
waits until training has begun plus a random delay, sends SIGINT to the whole group (what a
terminal's Ctrl-C does: every process gets it, and torchrun forwards it once more), measures how
long the job takes to exit, then resumes it with ``groupo train --out RUN --resume`` and compares
the final weights with an uninterrupted run's. Prints one line per trial and a summary; exit 1 on
any hang or mismatch.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def settings(model: Path, reward: Path, fsdp: bool) -> list[str]:
    return [f"model.path={model}", "model.tiny=false", "model.threads=1", "generation.group_size=4",
            "generation.prompts_per_step=4", "generation.max_new_tokens=6", "generation.temperature=1.5",
            "train.steps=60", "train.lr=2e-4", "warmstart.steps=0", "eval.before=false", "eval.after=false",
            "log.tensorboard=false", "log.progress=false", "checkpoint.every=10", "train.pg_timeout=60",
            f"rewards=[{{name: python, path: {reward}}}]", *(["train.parallel=fsdp"] if fsdp else [])]


def weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run / "checkpoints/step_60/model.safetensors")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--fsdp", action="store_true", help="train.parallel=fsdp")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from groupo.model.tiny import build_tiny

    rng = random.Random(args.seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    bad, stops = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny(tmp / "model", seed=0, hidden=64, layers=2, heads=2)
        reward = tmp / "varied.py"
        reward.write_text("def reward(completions, **kw):\n    return [float(len(c) % 3) for c in completions]\n")
        over = settings(model, reward, args.fsdp)
        subprocess.run([*TORCHRUN, "-m", "groupo", "train", "demo", *over, "--out", str(tmp / "ref")], env=env,
                       check=True, capture_output=True)
        ref = weights(tmp / "ref")
        for trial in range(args.trials):
            run = tmp / f"t{trial}"
            p = subprocess.Popen([*TORCHRUN, "-m", "groupo", "train", "demo", *over, "--out", str(run)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
            t0 = time.monotonic()
            while not (run / "metrics.jsonl").exists() and p.poll() is None and time.monotonic() - t0 < 120:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 4.0))
            sent = time.monotonic()
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
            try:
                p.wait(timeout=90)
                stopped = time.monotonic() - sent
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                stopped = float("inf")
            done = len((run / "metrics.jsonl").read_text().splitlines()) if (run / "metrics.jsonl").exists() else 0
            r = subprocess.run([*TORCHRUN, "-m", "groupo", "train", "--out", str(run), "--resume"], env=env,
                               capture_output=True, text=True)
            same = r.returncode == 0 and all(bool((ref[k] == w).all()) for k, w in weights(run).items())
            ok = same and stopped < 60
            bad += not ok
            stops.append(stopped)
            print(f"trial {trial}: exit {p.returncode} after {stopped:.1f} s at step {done}; resume exit "
                  f"{r.returncode}, weights {'identical' if same else 'DIFFER'}{'' if ok else '  <- FAIL'}", flush=True)
            if r.returncode:
                print(r.stderr[-1500:])
    print(f"interrupt trials: {args.trials} runs, {bad} failed; time to stop after Ctrl-C: max "
          f"{max(stops):.1f} s, median {sorted(stops)[len(stops) // 2]:.1f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
