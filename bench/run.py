"""groupo vs TRL GRPOTrainer, side by side in one invocation (`make bench`).

For each configuration (1M and 25M model x beta 0 and 0.04; 8 prompts x 8 rollouts, up to 32
new tokens, temperature 1, fp32, lr 1e-4 linear decay, AdamW, grad clip 1, token-mean loss,
k3 KL, the same model directory, tokenizer, prompt list, reward and thread count), it runs
each library in a fresh subprocess (groupo in the main venv, TRL in .venv-bench), --reps
times, alternating which goes first, and prints per configuration: the median step time of
each and their ratio, completions and completion tokens per second, peak RSS of the worker
process, GFLOP per step (bench/flops.py) and the percent of this machine's measured fp32
matmul rate it represents, and the split of the step into generation / scoring / log-probs
/ forward / backward / optimizer / other. Then the fixed-batch equivalence check
(bench/equivalence.py) and the shared-prefix bench (bench/prefix_bench.py).

Ends with one line per target: `target NAME MEASURED LIMIT pass|fail`.
Results also go to bench/results/latest.json and bench/results/latest.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from common import RESULT, SIZES, build_model, cpu_load, median  # noqa: E402

LIMITS = {"1M": 0.5, "25M": 0.7}          # step time groupo / TRL, from the issue
RSS_LIMIT = 1.0                           # peak RSS groupo / TRL
EQUIV_TOL = 1e-5
PHASES = ("generation_s", "scoring_s", "logprobs_s", "forward_s", "backward_s", "optimizer_s", "other_s")
CONTENDED = 0.05                          # other processes' share of the CPUs above which a run is flagged


def auto_threads() -> int:
    """All cores when the machine is idle, else the cores other processes leave free
    (groupo/runtime.py: the 1-minute load average, checked by a short measurement when it says
    busy; loaded on its own so that groupo's package import, which decides an OpenMP policy,
    does not run in this process)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n, int(n - cpu_load().busy_cores() + 0.5)))


# The caller's OpenMP wait policy, read before anything imports groupo (which may set one for
# its own process): both libraries' workers get exactly this (unset = OpenMP's default spin).
USER_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")


def worker_env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if USER_WAIT_POLICY:
        env["OMP_WAIT_POLICY"] = USER_WAIT_POLICY
    return {**env, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "PYTHONWARNINGS": "ignore"}


def run_worker(py: str, script: str, argv: list[str], threads: int, timeout: int = 1800) -> dict:
    r = subprocess.run([py, str(HERE / script), *argv], capture_output=True, text=True, env=worker_env(threads),
                       timeout=timeout, cwd=ROOT)
    for line in r.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    raise RuntimeError(f"{script} failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


def summarize(runs: list[dict]) -> dict:
    """Median over runs of every numeric field; the runs' own step medians kept too."""
    out = {k: median(r.get(k) for r in runs) for k in runs[0]
           if isinstance(runs[0][k], (int, float)) and not isinstance(runs[0][k], bool)}
    out["step_s_runs"] = [round(r["step_s"], 4) for r in runs]
    out["other_cpu_frac_max"] = max(r.get("other_cpu_frac", 0.0) for r in runs)
    out["prompts_match"] = all(r.get("prompts_match") for r in runs)
    out["versions"] = runs[0].get("versions", {})
    out["cpu_gemm"] = sorted({str(r["cpu_gemm"]) for r in runs if r.get("cpu_gemm")})    # groupo: backend chosen per run
    if "config" in runs[0]:
        out["config"] = runs[0]["config"]
    return out


def pair_ratios(row: dict) -> list[float]:
    """groupo / TRL step time of each run pair (run i of both libraries ran back to back): the spread
    shows how much of a ratio is the machine's run-to-run noise."""
    return [round(a / b, 2) for a, b in zip(row["groupo"]["step_s_runs"], row["trl"]["step_s_runs"]) if b]


def percent_bound(flops: dict, step_s: float, gflops: float) -> float:
    return 100.0 * sum(flops.values()) / (step_s * gflops * 1e9)


def fmt_block(row: dict) -> list[str]:
    g, t = row["groupo"], row["trl"]
    lines = [f"== {row['size']} model ({row['params'] / 1e6:.2f}M params), {row.get('precision', 'fp32')}, "
             f"beta {row['beta']:g} == "
             f"(medians of {len(g['step_s_runs'])} runs each, alternating; each run: median of its timed steps)",
             f"{'':<26}{'groupo':>12}{'TRL':>12}{'groupo/TRL':>12}"]

    def line(name, a, b, f="{:.3f}", ratio=True):
        r = f"{a / b:.2f}" if ratio and a is not None and b else ""
        lines.append(f"{name:<26}{f.format(a):>12}{f.format(b):>12}{r:>12}")

    line("step time (s)", g["step_s"], t["step_s"])
    line("completions / s", g["completions_per_s"], t["completions_per_s"], "{:.1f}")
    line("completion tokens / s", g["tokens_per_s"], t["tokens_per_s"], "{:.0f}")
    line("completion tokens / step", g["completion_tokens"], t["completion_tokens"], "{:.0f}")
    line("peak RSS (MB)", g["peak_rss_mb"], t["peak_rss_mb"], "{:.0f}")
    line("GFLOP / step (done)", g["gflop_per_step"], t["gflop_per_step"], "{:.2f}")
    line("% of compute bound", g["pct_compute_bound"], t["pct_compute_bound"], "{:.1f}")
    lines.append("time split (s)            " + " ".join(f"{p[:-2]:>10}" for p in PHASES))
    for name, d in (("groupo", g), ("TRL", t)):
        lines.append(f"  {name:<24}" + " ".join(f"{(d.get(p) or 0.0):>10.3f}" for p in PHASES))
    flags = []
    if max(g["other_cpu_frac_max"], t["other_cpu_frac_max"]) > CONTENDED:
        flags.append(f"CONTENDED: other processes used up to "
                     f"{100 * max(g['other_cpu_frac_max'], t['other_cpu_frac_max']):.0f}% of the CPUs during a run")
    if not (g["prompts_match"] and t["prompts_match"]):
        flags.append("PROMPTS DIFFER between the libraries")
    if g.get("zero_adv_rows_skipped"):
        flags.append(f"groupo skipped the forward/backward of {g['zero_adv_rows_skipped']:.0f} zero-advantage rows "
                     f"per step (median; TRL computes them)")
    lines += [f"  note: {f}" for f in flags]
    if g.get("cpu_gemm"):
        lines.append(f"  groupo's CPU float32 products (model.cpu_gemm auto): {', '.join(g['cpu_gemm'])}")
    lines.append(f"  step times per run (s): groupo {g['step_s_runs']}  TRL {t['step_s_runs']}; "
                 f"ratio per run pair {pair_ratios(row)}")
    return lines


def markdown(meta: dict, results: list[dict], equiv: list[dict] | None, targets: list[tuple], extra: list[str]) -> str:
    v = meta["versions"]
    out = [f"# groupo vs TRL {v.get('trl', '?')}: {meta['date']}", "",
           f"Machine: {meta['cpu']}, {meta['cores']} cores, torch {v.get('torch')}, transformers "
           f"{v.get('transformers')}, Python {meta['python']}; {meta['threads']} torch thread(s) on both sides, "
           f"OpenMP wait policy {meta.get('omp_wait_policy', 'default')} on both sides; load average at start {meta['loadavg_start']:.2f}; measured fp32 matmul (the faster of torch.matmul and oneDNN, n=1024/2048, same "
           f"threads) {meta['gflops']['start']['best']:.1f} GFLOP/s before and {meta['gflops']['end']['best']:.1f} "
           f"after the runs, the bound uses {meta['gflops']['best']:.1f}; {meta['reps']} runs per library and configuration, alternating order; "
           f"each run: {meta['warmup']} warm-up steps, median of {meta['steps']} timed steps.", "",
           "Setup: 8 prompts x 8 rollouts, <= 32 new tokens, temperature 1, float32 weights, AdamW lr 1e-4 linear "
           "decay, grad clip 1, token-mean loss (TRL loss_type dapo), k3 KL (TRL use_bias_correction_kl=False), "
           "same model dir / tokenizer / prompt list / reward (bench/reward.py); TRL with gradient_checkpointing=False "
           "and per_device_train_batch_size=64 (its fastest setting). Precision fp32: TRL bf16=False, groupo "
           "model.autocast=none (the targets). Precision bf16 (a separate pair): TRL bf16=True, groupo "
           "model.autocast=bfloat16 (generation and training under bf16 autocast).", "",
           *contention_note(results),
           "| model | precision | beta | groupo s/step | TRL s/step | ratio | ratio per run pair | completion tok/s groupo / TRL | peak RSS MB "
           "groupo / TRL | % of compute bound groupo / TRL | max other-CPU share |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        g, t = r["groupo"], r["trl"]
        out.append(f"| {r['size']} ({r['params'] / 1e6:.2f}M) | {r.get('precision', 'fp32')} | {r['beta']:g} | {g['step_s']:.3f} | {t['step_s']:.3f} "
                   f"| {r['ratio']:.2f} | {', '.join(f'{x:.2f}' for x in pair_ratios(r))} | {g['tokens_per_s']:.0f} / {t['tokens_per_s']:.0f} "
                   f"| {g['peak_rss_mb']:.0f} / {t['peak_rss_mb']:.0f} "
                   f"| {g['pct_compute_bound']:.1f} / {t['pct_compute_bound']:.1f} "
                   f"| {max(g['other_cpu_frac_max'], t['other_cpu_frac_max']):.2f} |")
    out += ["", "Time split, median seconds per step: " + " / ".join(p[:-2] for p in PHASES), "",
            "| model | precision | beta | lib | " + " | ".join(p[:-2] for p in PHASES) + " | step |",
            "|---|---|---|---|" + "---|" * (len(PHASES) + 1)]
    for r in results:
        for name in ("groupo", "trl"):
            d = r[name]
            out.append(f"| {r['size']} | {r.get('precision', 'fp32')} | {r['beta']:g} | {name} | "
                       + " | ".join(f"{(d.get(p) or 0.0):.3f}" for p in PHASES) + f" | {d['step_s']:.3f} |")
    if equiv:
        out += ["", "Fixed-batch equivalence (bench/equivalence.py): groupo's loss and gradients vs TRL "
                "compute_loss", "", "| beta | groupo aggregation | TRL loss_type | abs loss diff | max abs grad diff "
                "| verdict |", "|---|---|---|---|---|---|"]
        for e in equiv:
            lt = e["trl_loss_type"] + (" (use_bias_correction_kl=True)" if e["trl_use_bias_correction_kl"] else "")
            verdict = "differs: TRL's default KL gradient estimator (informative)" if e["informative"] else (
                "pass" if e["pass"] else "FAIL")
            out.append(f"| {e['beta']:g} | {e['groupo_aggregation']} | {lt} | {e['loss_abs_diff']:.1e} "
                       f"| {e['grad_max_abs_diff']:.1e} | {verdict} |")
    out += ["", "```"] + [target_line(*t) for t in targets] + extra + ["```", ""]
    return "\n".join(out)


def contention_note(results: list[dict]) -> list[str]:
    worst = max((max(r["groupo"]["other_cpu_frac_max"], r["trl"]["other_cpu_frac_max"]) for r in results), default=0.0)
    if worst <= CONTENDED:
        return []
    return [f"**Contended machine**: other processes used up to {100 * worst:.0f}% of the CPUs during the runs; "
            f"absolute times are slower and noisier than on an idle machine (the alternating order keeps the "
            f"comparison fair, not the absolute figures).", ""]


def target_line(name: str, value: float, limit: float, fmt: str = "{:.2f}") -> str:
    return f"target {name} {fmt.format(value)} {limit:g} {'pass' if value <= limit else 'fail'}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="runs per library and configuration (alternating order)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up steps per run (not timed)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0: all free cores)")
    ap.add_argument("--sizes", default="1M,25M")
    ap.add_argument("--betas", default="0.0,0.04")
    ap.add_argument("--precision", default="fp32,bf16",
                    help="fp32 (the targets) and/or bf16 (bf16 autocast over float32 weights on both sides, a separate "
                         "pair: TRL bf16=True, groupo model.autocast=bfloat16)")
    ap.add_argument("--trl-python", default=str(ROOT / ".venv-bench/bin/python"))
    ap.add_argument("--no-equivalence", action="store_true")
    ap.add_argument("--no-prefix", action="store_true", help="skip bench/prefix_bench.py")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if not Path(args.trl_python).exists():
        print(f"no TRL interpreter at {args.trl_python}: run `make bench` (it creates .venv-bench)", file=sys.stderr)
        return 2
    threads = args.threads or auto_threads()
    load0 = os.getloadavg()[0]
    import torch
    import transformers
    from transformers import AutoConfig

    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()

    from flops import matmul_gflops, step_flops

    gf0 = matmul_gflops(threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load0:.2f}; "
          f"{threads} torch thread(s) on both sides; fp32 matmul {gf0}", flush=True)
    if load0 > 0.5:
        print(f"warning: the machine is not idle (load {load0:.2f}); timings are noisier and slower than on an idle "
              f"machine; the alternating runs keep the ratio fair, the absolute numbers are not", flush=True)
    n_total = args.warmup + args.steps
    common_argv = ["--steps", str(n_total), "--warmup", str(args.warmup), "--threads", str(threads)]
    results, targets = [], []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        prompt_file = Path(tmp) / "prompts.json"
        for size in args.sizes.split(","):
            model = build_model(Path(tmp) / size, size)
            cfg = AutoConfig.from_pretrained(model)
            from transformers import AutoModelForCausalLM

            n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model).parameters())
            if not prompt_file.exists():
                run_worker_dump = [sys.executable, str(HERE / "worker_groupo.py"), "--model", str(model),
                                   *common_argv, "--dump-prompts", str(prompt_file)]
                subprocess.run(run_worker_dump, check=True, env=worker_env(threads), cwd=ROOT, capture_output=True)
            for prec, beta in [(p_, b_) for p_ in args.precision.split(",") for b_ in map(float, args.betas.split(","))]:
                runs = {"groupo": [], "trl": []}
                argv = ["--model", str(model), "--beta", str(beta), "--prompt-file", str(prompt_file), *common_argv,
                        *(["--bf16"] if prec == "bf16" else [])]
                for rep in range(args.reps):
                    order = [("groupo", sys.executable, "worker_groupo.py"), ("trl", args.trl_python, "worker_trl.py")]
                    for lib, py, script in (order if rep % 2 == 0 else order[::-1]):
                        res = run_worker(py, script, argv, threads)
                        runs[lib].append(res)
                        print(f"  {size} {prec} beta {beta:g} run {rep + 1}/{args.reps} {lib:<6}: {res['step_s']:.3f} s/step, "
                              f"peak RSS {res['peak_rss_mb']:.0f} MB, other-CPU share {res['other_cpu_frac']:.2f} "
                              f"[{time.perf_counter() - t_start:.0f} s]", flush=True)
                row = {"size": size, "params": n_params, "beta": beta, "threads": threads, "precision": prec}
                for lib in runs:
                    s = summarize(runs[lib])
                    s["completions_per_s"] = s["rows"] / s["step_s"]
                    s["tokens_per_s"] = s["completion_tokens"] / s["step_s"]
                    fl = step_flops(cfg, prompts=8, rows=int(s["rows"]), prompt_len=s["prompt_tokens"] / s["rows"],
                                    completion_len=s["completion_tokens"] / s["rows"], ref=beta > 0,
                                    train_rows=s["rows"] - (s.get("zero_adv_rows_skipped") or 0))
                    s["flops"] = fl
                    s["gflop_per_step"] = sum(fl.values()) / 1e9
                    row[lib] = s
                row["ratio"] = row["groupo"]["step_s"] / row["trl"]["step_s"]
                row["rss_ratio"] = row["groupo"]["peak_rss_mb"] / row["trl"]["peak_rss_mb"]
                results.append(row)
                if prec == "fp32":      # the targets are on the fp32 pair; bf16 is reported beside it
                    targets.append((f"step_time_{size}_beta{beta:g}", row["ratio"], LIMITS.get(size, 1.0)))
                    targets.append((f"peak_rss_{size}_beta{beta:g}", row["rss_ratio"], RSS_LIMIT))
    gf1 = matmul_gflops(threads)
    gflops = {"start": gf0, "end": gf1, "best": max(gf0["best"], gf1["best"])}
    for row in results:                     # the bound: the best GEMM rate seen (conservative)
        for lib in ("groupo", "trl"):
            row[lib]["pct_compute_bound"] = percent_bound(row[lib]["flops"], row[lib]["step_s"], gflops["best"])
    print()
    for row in results:
        print("\n".join(fmt_block(row)) + "\n")
    print(f"matmul fp32 GFLOP/s with {threads} thread(s): start {gf0}, end {gf1}; the bound uses {gflops['best']}")

    equiv, extra = None, []
    if not args.no_equivalence:
        r = subprocess.run([args.trl_python, str(HERE / "equivalence.py"), "--json"], capture_output=True, text=True,
                           env=worker_env(1), cwd=ROOT, timeout=1800)
        lines = [ln for ln in r.stdout.splitlines() if not ln.startswith(RESULT)]
        print("\nfixed-batch equivalence, groupo vs TRL compute_loss (bench/equivalence.py):\n" + "\n".join(lines))
        js = [ln for ln in r.stdout.splitlines() if ln.startswith(RESULT)]
        if js:
            equiv = json.loads(js[0][len(RESULT):])
            for beta in sorted({e["beta"] for e in equiv}):
                es = [e for e in equiv if e["beta"] == beta and not e["informative"]]
                worst = max(max(e["loss_abs_diff"], e["grad_max_abs_diff"]) for e in es)
                if any(e["params_missing"] for e in es):
                    worst = float("inf")
                targets.append((f"equivalence_beta{beta:g}", worst, EQUIV_TOL, "{:.1e}"))
        else:
            print(r.stderr[-3000:])
            targets.append(("equivalence", float("inf"), EQUIV_TOL, "{:.1e}"))
    if not args.no_prefix:
        pb = subprocess.run([sys.executable, str(HERE / "prefix_bench.py"), "--threads", str(threads)],
                            capture_output=True, text=True, env=worker_env(threads), cwd=ROOT, timeout=1800)
        print("\nshared-prefix forward+backward (bench/prefix_bench.py):\n" + pb.stdout.strip())
        extra = [ln for ln in pb.stdout.splitlines() if ln.startswith("target ")]

    trl_v = results[0]["trl"]["versions"] if results else {}
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(), "threads": threads, "omp_wait_policy": USER_WAIT_POLICY or "default", "loadavg_start": load0,
            "gflops": gflops, "reps": args.reps, "steps": args.steps, "warmup": args.warmup,
            "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                         "trl": trl_v.get("trl"), "trl_transformers": trl_v.get("transformers")},
            "sizes": {k: SIZES[k] for k in args.sizes.split(",")}, "wall_s": round(time.perf_counter() - t_start, 1)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps({"meta": meta, "results": results, "equivalence": equiv,
                                                 "targets": [{"name": t[0], "measured": t[1], "limit": t[2],
                                                              "pass": t[1] <= t[2]} for t in targets],
                                                 "extra_targets": extra}, indent=2, default=str))
    (out / "latest.md").write_text(markdown(meta, results, equiv, targets, extra))
    print(f"\nresults: {out / 'latest.json'}, {out / 'latest.md'} ({meta['wall_s']:.0f} s)\n")
    for t in targets:
        print(target_line(*t))
    for ln in extra:
        print(ln)
    return 0


if __name__ == "__main__":
    sys.exit(main())
