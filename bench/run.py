"""groupo vs TRL GRPOTrainer, side by side in one invocation (`make bench`).

For each configuration (1M and 25M model x beta 0 and 0.04; 8 prompts x 8 rollouts, up to 32
new tokens, fp32, same model directory, tokenizer, prompts, reward, optimizer and threads),
runs each library in a fresh subprocess, alternating the order, --reps times, and prints the
median step time of each, their ratio, tokens per second, peak RSS, the time split, and the
percent of this machine's measured fp32 matmul throughput that the step's FLOPs represent.
Then the shared-prefix forward+backward bench. Ends with `target NAME MEASURED LIMIT pass|fail`.
Results: bench/results/latest.json and latest.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

SIZES = {"1M": dict(hidden=128, layers=4, heads=4), "25M": dict(hidden=512, layers=8, heads=8)}
LIMITS = {"1M": 0.5, "25M": 0.7}


def run_worker(py: str, script: str, model: Path, beta: float, steps: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run([py, str(HERE / script), "--model", str(model), "--beta", str(beta), "--steps", str(steps),
                        "--threads", str(threads)], capture_output=True, text=True, env=env, timeout=1800)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT_JSON "):
            return json.loads(line[len("RESULT_JSON "):])
    raise RuntimeError(f"{script} failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="1M,25M")
    ap.add_argument("--betas", default="0.0,0.04")
    ap.add_argument("--trl-python", default=str(ROOT / ".venv-bench/bin/python"))
    args = ap.parse_args()
    from bench.flops import matmul_gflops, step_flops
    from groupo.model.tiny import build_tiny
    from transformers import AutoConfig

    gflops = matmul_gflops(args.threads)
    load = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.2f}; "
          f"fp32 matmul {gflops:.1f} GFLOP/s with {args.threads} threads", flush=True)
    results, targets = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            model = build_tiny(Path(tmp) / size, seed=42, **SIZES[size])
            cfg = AutoConfig.from_pretrained(model)
            n_params = sum(p.numel() for p in __import__("groupo.model.load", fromlist=["x"]).load_model(model).parameters())
            for beta in map(float, args.betas.split(",")):
                runs = {"groupo": [], "trl": []}
                for rep in range(args.reps):
                    order = [("groupo", sys.executable, "worker_groupo.py"), ("trl", args.trl_python, "worker_trl.py")]
                    for lib, py, script in (order if rep % 2 == 0 else order[::-1]):
                        runs[lib].append(run_worker(py, script, model, beta, args.steps, args.threads))
                        print(f"  {size} beta {beta} rep {rep} {lib}: {runs[lib][-1]['step_s']:.3f} s/step", flush=True)
                med = {lib: {k: statistics.median(r[k] for r in rs if r.get(k) is not None)
                             for k in rs[0] if k != "lib" and any(r.get(k) is not None for r in rs)}
                       for lib, rs in runs.items()}
                g, t = med["groupo"], med["trl"]
                comp_len = g.get("mean_completion_len", 16.0)
                fl = step_flops(cfg, 64, 6, comp_len, ref=beta > 0, old=False)
                total = sum(fl.values())
                row = {"size": size, "params": n_params, "beta": beta, "groupo": g, "trl": t,
                       "ratio": g["step_s"] / t["step_s"], "rss_ratio": g["peak_rss_mb"] / t["peak_rss_mb"],
                       "flops": fl, "pct_compute_bound_groupo": 100 * total / 1e9 / gflops / g["step_s"],
                       "pct_compute_bound_trl": 100 * total / 1e9 / gflops / t["step_s"],
                       "tokens_per_s_groupo": g.get("completion_tokens", 0) / g["step_s"]}
                results.append(row)
                targets.append((f"step_time_{size}_beta{beta:g}", row["ratio"], LIMITS[size]))
            targets.append((f"peak_rss_{size}", max(r["rss_ratio"] for r in results if r["size"] == size), 1.0))
    pb = subprocess.run([sys.executable, str(HERE / "prefix_bench.py"), "--threads", str(args.threads)],
                        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    prefix_line = [ln for ln in pb.stdout.splitlines() if ln.startswith("target ")]
    lines = [f"# groupo vs TRL {trl_version(args.trl_python)}: {datetime.date.today()}", "",
             f"torch {__import__('torch').__version__}, transformers {__import__('transformers').__version__}, "
             f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), {args.threads} threads, "
             f"load average at start {load:.2f}; fp32 matmul {gflops:.1f} GFLOP/s; medians of {args.reps} runs "
             f"each (alternating order), each run the median of steps 3-{args.steps}.", "",
             "| model | beta | groupo s/step | TRL s/step | ratio | groupo tok/s | peak RSS groupo / TRL (MB) "
             "| % of matmul bound groupo / TRL |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['size']} ({r['params'] / 1e6:.2f}M) | {r['beta']:g} | {r['groupo']['step_s']:.3f} "
                     f"| {r['trl']['step_s']:.3f} | {r['ratio']:.2f} | {r['tokens_per_s_groupo']:.0f} "
                     f"| {r['groupo']['peak_rss_mb']:.0f} / {r['trl']['peak_rss_mb']:.0f} "
                     f"| {r['pct_compute_bound_groupo']:.1f} / {r['pct_compute_bound_trl']:.1f} |")
    lines += ["", "Time split (median seconds): generation / scoring (+ TRL's reference pass) / log-probs "
              "(groupo's old+reference pass) / forward / backward / optimizer+other", "",
              "| model | beta | groupo | TRL |", "|---|---|---|---|"]
    keys = ("generation_s", "scoring_s", "logprobs_s", "forward_s", "backward_s", "optimizer_s")
    fmt = lambda d: " / ".join("-" if d.get(k) is None else f"{d[k]:.3f}" for k in keys)  # noqa: E731
    for r in results:
        lines.append(f"| {r['size']} | {r['beta']:g} | {fmt(r['groupo'])} | {fmt(r['trl'])} |")
    lines += ["", "```"] + [f"target {n} {v:.2f} {lim} {'pass' if v <= lim else 'fail'}" for n, v, lim in targets]
    lines += prefix_line + ["```"]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results/latest.md").write_text(text)
    (HERE / "results/latest.json").write_text(json.dumps({"results": results, "targets": targets,
                                                          "prefix": prefix_line, "gflops": gflops}, indent=2))
    for n, v, lim in targets:
        print(f"target {n} {v:.2f} {lim} {'pass' if v <= lim else 'fail'}")
    for ln in prefix_line:
        print(ln)
    return 0


def trl_version(py: str) -> str:
    r = subprocess.run([py, "-c", "import trl; print(trl.__version__)"], capture_output=True, text=True)
    return r.stdout.strip() or "(not installed)"


if __name__ == "__main__":
    sys.exit(main())
