"""GPU smoke test for a machine with one CUDA GPU (docs/gpu.md). Run from the repository root:

    python bench/gpu_smoke.py                      # offline tiny model (built here, no download)
    python bench/gpu_smoke.py --model /models/M    # a local Hugging Face model directory
    python bench/gpu_smoke.py --estimate           # docs/scaling.md's estimate table (no GPU needed)

Checks, in order; exits 2 without CUDA, 1 if any check fails, 0 otherwise:
  cuda     CUDA visible, bf16 supported
  train    `groupo train` with bf16 compute (float32 weights + bf16 autocast, or --precision bf16),
           gradient checkpointing and chunked log-probs, with the hf sampler and (if vllm is
           installed) the vllm backend: finite losses; prints the median step time, generated
           tokens/s, peak GPU memory, and the mean TIS weight
  vllm     (if vllm is installed) in this process: the Rollout's padding conventions; the
           sampler's log-probs against the training forward (mean |diff|, TIS weight); weight
           sync at sleep levels 2 and 1 (the output head is scaled x3: at level 2 the weights
           are pushed at every wake, so even an untold engine must agree, after a level-2 sleep;
           at level 1 an untold engine must disagree, a told one agree); memory freed by sleep;
           generation tokens/s of vllm (seeded and unseeded) and of groupo's own sampler
A summary is written to OUT/summary.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS: list = []


def record(name: str, ok: bool | None, **info) -> None:
    status = "SKIP" if ok is None else ("OK" if ok else "FAIL")
    RESULTS.append({"check": name, "status": status, **info})
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
    print(f"gpu_smoke: [{name}] {status}" + (f": {shown}" if shown else ""), flush=True)


# ----------------------------------------------------------------------------- estimate (no GPU)
QWEN_MATH_1P5B = dict(hidden=1536, layers=28, heads=12, kv_heads=2, inter=8960, vocab=151936, tied=True, qkv_bias=True)
SETUPS = {"1 GPU": dict(rows=64 * 8, micro_batches=32), "8 GPUs (per GPU)": dict(rows=32 * 8, micro_batches=16)}
ASSUME = dict(prompt=200, completion=600, max_new=1024, chunk=64, gpu_gb=80, util=0.4, vllm_overhead_gb=2.0,
              peak_tflops=989.0, mfu=0.30, hbm_tbps=3.35, hbm_eff=0.6, sleep_gbps=20.0, world=8, allreduce_gbps=360.0)


def n_params(a: dict) -> int:
    d = a["hidden"] // a["heads"]
    attn = 2 * a["hidden"] * a["heads"] * d + 2 * a["hidden"] * a["kv_heads"] * d
    bias = (a["heads"] + 2 * a["kv_heads"]) * d if a["qkv_bias"] else 0
    layer = attn + bias + 3 * a["hidden"] * a["inter"] + 2 * a["hidden"]
    return a["layers"] * layer + a["vocab"] * a["hidden"] * (1 if a["tied"] else 2) + a["hidden"]


def estimate(a: dict = QWEN_MATH_1P5B, s: dict = ASSUME) -> str:
    """Markdown table: memory and time per GRPO step for the qwen_math_1p5b recipes, from
    the formulas in its last column. Estimates, not measurements."""
    P, G = n_params(a), 1e9
    d = a["hidden"] // a["heads"]
    S = s["prompt"] + s["max_new"]                           # padded row length (worst case)
    kv_tok = a["layers"] * 2 * a["kv_heads"] * d * 2         # bytes of KV cache per token (bf16)
    act_tok = 2 * (7 * a["hidden"] + 2 * a["kv_heads"] * d + 4 * a["inter"])   # one layer's saved tensors, bytes/token
    flops, hbm = s["peak_tflops"] * 1e12 * s["mfu"], s["hbm_tbps"] * 1e12 * s["hbm_eff"]
    cols = {}
    for name, w in SETUPS.items():
        R, B, multi = w["rows"], w["rows"] // w["micro_batches"], name.startswith("8")
        c = {}
        c["weights, float32 master copy, 4 B/param (GB)"] = 4 * P / G
        c["gradients, float32 (GB)"] = 4 * P / G
        c["AdamW moments, float32, 8 B/param (GB)"] = 8 * P / G
        c["bf16 weight copies cached by autocast in a forward (GB)"] = 2 * P / G
        c["checkpointed layer inputs: layers x B x S x hidden x 2 B (GB)"] = a["layers"] * B * S * a["hidden"] * 2 / G
        c["one layer recomputed in backward: B x S x 94 KB (GB)"] = B * S * act_tok / G
        c["output head chunk: B x chunk x vocab x 14 B (GB)"] = B * s["chunk"] * a["vocab"] * 14 / G
        c["flat float32 gradient buffer for all_reduce (GB)"] = 4 * P / G if multi else 0.0
        c["**training phase peak**, vLLM asleep (GB)"] = sum(c.values())
        c["without gradient checkpointing, activations alone (GB)"] = a["layers"] * B * S * act_tok / G
        budget = s["util"] * s["gpu_gb"]
        c["vLLM budget: gpu_memory_utilization x GPU (GB)"] = budget
        need = (R // 8) * s["prompt"] + R * s["max_new"]       # prompts shared by prefix caching
        c["vLLM KV cache for every row at 1024 tokens, 28 KB/token (GB)"] = need * kv_tok / G
        kv_gb = budget - 2 * P / G - s["vllm_overhead_gb"]
        c["vLLM KV capacity: budget - weights - 2 GB (tokens)"] = kv_gb * G / kv_tok
        c["**generation phase peak**: weights, grads, Adam + vLLM budget (GB)"] = 16 * P / G + budget
        tok = R * S
        c["training FLOPs: 10 x params x padded tokens (fwd 2, bwd 4, recompute 2, old log-probs 2)"] = 10 * P * tok
        t_train = 10 * P * tok / flops
        c["training time at the assumed MFU (s)"] = t_train
        gen_tok = R * s["completion"]
        t_gen = (2 * P * gen_tok / flops + s["max_new"] * 2 * P / hbm
                 + gen_tok * (s["prompt"] + s["completion"] / 2) * kv_tok / hbm)
        c["generation: compute + weight reads per decode step + KV reads, no overlap (s)"] = t_gen
        t_sync = 2 * 2 * P / (s["sleep_gbps"] * G)
        c["weight sync, wake and sleep: 2 x weights over PCIe at 20 GB/s (s)"] = t_sync
        t_ar = 2 * (s["world"] - 1) / s["world"] * 4 * P / (s["allreduce_gbps"] * G) if multi else 0.0
        c["float32 gradient all_reduce: ring at 360 GB/s bus bandwidth (s)"] = t_ar
        step = t_train + t_gen + t_sync + t_ar
        c["**step time**, reward scoring not included (s)"] = step
        c["samples per second, all GPUs"] = R * (s["world"] if multi else 1) / step
        cols[name] = c
    lines = [f"Model: {P / 1e9:.3f}e9 parameters (hidden {a['hidden']}, {a['layers']} layers, {a['heads']} heads, "
             f"{a['kv_heads']} KV heads, MLP {a['inter']}, vocab {a['vocab']:,}). Rows of {s['prompt']} prompt + up to "
             f"{s['max_new']} completion tokens (mean {s['completion']}; S = {S} padded), B = 16 rows per "
             f"micro-batch, float32 weights with bf16 autocast, vLLM in bf16, logprob_chunk {s['chunk']}; "
             f"MFU {s['mfu']:.0%} of {s['peak_tflops']:.0f} TFLOP/s (H100 SXM "
             f"dense bf16); {s['hbm_eff']:.0%} of {s['hbm_tbps']} TB/s HBM; gpu_memory_utilization {s['util']} of "
             f"{s['gpu_gb']} GB.",
             "", "| quantity | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for key in cols["1 GPU"]:
        vals = [("-" if c[key] == 0 else f"{c[key]:.2e}" if c[key] >= 1e5 else f"{c[key]:.1f}" if c[key] >= 1
                 else f"{c[key]:.2f}") for c in cols.values()]
        lines.append(f"| {key} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- helpers (GPU)
def sync(dev: str) -> None:
    import torch

    if dev == "cuda":
        torch.cuda.synchronize()


def free_memory(dev: str) -> int:
    import torch

    return torch.cuda.mem_get_info()[0] if dev == "cuda" else 0


def model_dir(args, out: Path) -> Path:
    if args.model:
        return Path(args.model)
    from groupo.model.tiny import build_tiny

    path = out / "tiny_model"
    if not (path / "config.json").exists():     # head_dim 64: a size every vLLM attention backend supports
        build_tiny(path, seed=0, hidden=256, layers=4, heads=4)
    return path


def train_overrides(args, path: Path, backend: str) -> tuple[str, list]:
    prec = ["model.dtype=bfloat16"] if args.precision == "bf16" else ["model.dtype=float32", "model.autocast=bfloat16"]
    common = [f"model.path={path}", *prec, f"model.device={args.device}", "model.gradient_checkpointing=true",
              "forward.logprob_chunk=64", f"rollout.name={backend}", "generation.group_size=8",
              f"generation.max_new_tokens={args.max_new_tokens}", f"train.steps={args.steps}",
              "eval.before=false", "eval.after=false", "log.tensorboard=false", "log.progress=false",
              "log.line_every=1", "checkpoint.every=0"]
    if args.model:
        return "grpo", common + ["task.name=arithmetic", "generation.prompts_per_step=8", *args.train_arg]
    return "demo", common + ["model.tiny=false", "warmstart.steps=30", "generation.prompts_per_step=16",
                             *args.train_arg]


def run_train(args, path: Path, out: Path, backend: str) -> None:
    recipe, over = train_overrides(args, path, backend)
    run = out / f"train_{backend}"
    cmd = [sys.executable, "-m", "groupo", "train", recipe, "--force", "--out", str(run), *over]
    print("gpu_smoke: $ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, timeout=args.timeout)
        rc = r.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    name = f"train {backend}"
    rows = []
    if (run / "metrics.jsonl").exists():
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    if rc != 0 or not rows:
        record(name, False, rc=rc, steps=len(rows), wall_s=time.perf_counter() - t0)
        return

    def med(key):
        vals = [r_[key] for r_ in rows if key in r_]
        return statistics.median(vals) if vals else float("nan")

    finite = all(math.isfinite(r_.get("loss", float("nan"))) for r_ in rows if "loss" in r_)
    info = dict(steps=len(rows), step_s=med("time/step"), gen_s=med("time/gen"), tokens_per_s=med("tokens_per_s"),
                peak_gpu_gb=max(r_.get("mem/gpu_peak_gb", float("nan")) for r_ in rows))
    ok = finite
    if backend == "vllm":
        tis = [r_["tis/mean_weight"] for r_ in rows if "tis/mean_weight" in r_]
        info["tis_mean_weight"] = statistics.mean(tis) if tis else float("nan")
        ok = ok and bool(tis) and all(0 < t <= 2.0 + 1e-6 for t in tis)
    record(name, ok, finite_loss=finite, **info)


def _train_logp(model, roll, temperature: float, rows_per_pass: int = 8):
    import torch
    from groupo.model.forward import completion_logprobs

    out = []
    with torch.no_grad():
        for a in range(0, roll.completion_ids.shape[0], rows_per_pass):
            sl = slice(a, a + rows_per_pass)
            lp, _ = completion_logprobs(model, roll.prompt_ids[sl], roll.prompt_mask[sl], roll.completion_ids[sl],
                                        roll.completion_mask[sl], temperature, chunk=64)
            out.append(lp.float())
    return torch.cat(out)


def _mismatch(model, roll, temperature):
    import torch
    from groupo.algo.tis import tis_stats, truncated_is_weights

    lp = _train_logp(model, roll, temperature)
    s = roll.sampler_logp.float()
    w = truncated_is_weights(lp, s, roll.completion_mask, cap=2.0)
    st = tis_stats(w, lp, s, roll.completion_mask, cap=2.0)
    return st["tis/abs_logp_diff"], st["tis/mean_weight"], bool(torch.isfinite(s[roll.completion_mask.bool()]).all())


def conventions(roll, tok, prompts, sizes, eos) -> list:
    """Problems with the Rollout's layout (empty list: as groupo's hf sampler lays it out)."""
    import torch

    bad = []
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    rows = torch.repeat_interleave(torch.arange(len(prompts)), torch.tensor(sizes))
    if not torch.equal(roll.prompt_ids.cpu(), enc["input_ids"][rows]):
        bad.append("prompt ids are not the left-padded tokenizer encoding")
    if not torch.equal(roll.prompt_mask.cpu(), enc["attention_mask"][rows]):
        bad.append("prompt mask")
    if not torch.equal(roll.group.cpu(), rows):
        bad.append("group index")
    m = roll.completion_mask.cpu()
    if not torch.equal(m, (m.cumsum(1) == torch.arange(1, m.shape[1] + 1)).long()):
        bad.append("completion mask is not ones then zeros")
    if not bool((roll.completion_ids.cpu()[m == 0] == tok.pad_token_id).all()):
        bad.append("completion padding is not the pad id")
    ends = torch.tensor([bool(int(c[k.bool()][-1]) in eos) if k.any() else False
                         for c, k in zip(roll.completion_ids.cpu(), m)])
    if not torch.equal(roll.truncated.cpu(), ~ends):
        bad.append("truncated flag")
    if len(roll.texts) != len(rows):
        bad.append("texts")
    return bad


def vllm_checks(args, path: Path) -> None:
    import random

    import torch
    from groupo.config import load_config
    from groupo.model.load import eos_ids, load_model, load_tokenizer
    from groupo.registry import build
    from groupo.rollout import vllm as vb

    recipe, over = train_overrides(args, path, "vllm")
    cfg = load_config(recipe, over)
    dev = args.device
    tok, model = load_tokenizer(path), load_model(path, "bfloat16" if dev == "cuda" else "float32", dev)
    eos = eos_ids(tok, model)
    rng = random.Random(0)
    items = [cfg.task.sample_train(rng) for _ in range(args.prompts)]
    prompts = [cfg.template(it.question, tok) for it in items]
    G, L, temp = 8, args.max_new_tokens, 1.0

    backends = {"vllm": cfg.rollout, "lean": build("rollout", "lean")}

    def gen(ps, backend="vllm", seed=0):
        g = torch.Generator(device=dev).manual_seed(seed)
        return backends[backend].generate(model, tok, ps, [G] * len(ps), L, eos, temperature=temp, generator=g)

    few = prompts[:8]
    t0 = time.perf_counter()
    r = gen(few)
    record("vllm start + first generate", True, seconds=time.perf_counter() - t0)
    bad = conventions(r, tok, few, [G] * len(few), eos)
    record("vllm rollout layout", not bad, problems="; ".join(bad) or "none")
    diff0, w0, finite = _mismatch(model, r, temp)
    record("vllm log-probs vs training forward", finite and diff0 < 0.1, mean_abs_diff=diff0, tis_mean_weight=w0)

    eng = vb.get_engine(model, cfg.rollout)
    tol = max(0.1, 2 * diff0)
    for level in (2, 1):                  # the engine's level may change between generations
        eng.sleep_level = level
        gen(few)                          # asleep at this level
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(3.0)        # a large, known change of the policy
        stale = gen(few)                  # not told: level 1 wakes its old CPU copy, level 2 pushes anyway
        diff_stale, _, _ = _mismatch(model, stale, temp)
        cfg.rollout.weights_changed(model)
        synced = gen(few)
        diff_sync, _, _ = _mismatch(model, synced, temp)
        with torch.no_grad():
            model.get_output_embeddings().weight.div_(3.0)
        cfg.rollout.weights_changed(model)
        # level 2 discards the weights: sampling after a wake must still match (no garbage, vllm#29341)
        ok = diff_stale < tol if level == 2 else diff_stale > 3 * diff_sync
        record(f"vllm weight sync (sleep level {level})", ok and diff_sync < tol, stale_diff=diff_stale,
               synced_diff=diff_sync)
    eng.sleep_level = cfg.rollout.sleep_level
    sync(dev)
    free_asleep = free_memory(dev)
    t0 = time.perf_counter()
    eng.wake_up()
    t_wake = time.perf_counter() - t0
    free_awake = free_memory(dev)
    t0 = time.perf_counter()
    eng.sleep()
    record("vllm sleep frees memory", free_asleep - free_awake > 0 if dev == "cuda" else None,
           freed_gb=(free_asleep - free_awake) / 1e9, wake_s=t_wake, sleep_s=time.perf_counter() - t0)
    t0 = time.perf_counter()
    eng.sync_weights(model)
    eng.sleep()
    record("vllm sync_weights (+ sleep)", True, seconds=time.perf_counter() - t0)

    for label, seeded in (("seeded", True), ("unseeded", False)):
        eng.seeded = seeded
        sync(dev)
        t0 = time.perf_counter()
        rr = gen(prompts)
        dt = time.perf_counter() - t0
        record(f"vllm generate {len(prompts)}x{G} ({label})", True, tokens=int(rr.completion_mask.sum()),
               seconds=dt, tokens_per_s=float(rr.completion_mask.sum()) / dt)
    eng.seeded = True
    n = min(len(prompts), args.hf_prompts)
    sync(dev)
    t0 = time.perf_counter()
    rr = gen(prompts[:n], backend="lean")
    dt = time.perf_counter() - t0
    record(f"hf generate {n}x{G} (groupo's sampler)", True, tokens=int(rr.completion_mask.sum()), seconds=dt,
           tokens_per_s=float(rr.completion_mask.sum()) / dt)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="local Hugging Face model directory (default: the offline tiny model, built here)")
    p.add_argument("--out", default="runs/gpu_smoke", help="output directory (default runs/gpu_smoke)")
    p.add_argument("--steps", type=int, default=5, help="training steps per `groupo train` run (default 5)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default 32 (tiny) / 256 (--model)")
    p.add_argument("--prompts", type=int, default=64, help="prompts for the generation throughput check (x8 samples)")
    p.add_argument("--hf-prompts", type=int, default=16, help="prompts for groupo's own sampler, for comparison")
    p.add_argument("--precision", choices=("autocast", "bf16"), default="autocast",
                   help="train runs: float32 weights + bf16 autocast (the recipes' setting, default) or pure bf16")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per `groupo train` run")
    p.add_argument("--train-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override for the `groupo train` runs (repeatable), e.g. task.name=jsonl")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-vllm", action="store_true")
    p.add_argument("--require-vllm", action="store_true", help="fail (instead of skip) when vllm is not installed")
    p.add_argument("--estimate", action="store_true", help="print docs/scaling.md's estimate table and exit")
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)   # cpu: dry run of the checks (tests)
    args = p.parse_args(argv)
    if args.estimate:
        print(estimate())
        return 0
    import torch

    RESULTS.clear()
    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device visible to torch", file=sys.stderr)
        return 2
    if args.max_new_tokens is None:
        args.max_new_tokens = 256 if args.model else 32
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        record("cuda", torch.cuda.is_bf16_supported(), device=props.name, memory_gb=props.total_memory / 1e9,
               torch=torch.__version__, cuda=str(torch.version.cuda), bf16=torch.cuda.is_bf16_supported())
    path = model_dir(args, out)
    try:
        import vllm
        has_vllm = True
        print(f"gpu_smoke: vllm {getattr(vllm, '__version__', '?')}", flush=True)
    except ImportError:
        has_vllm = False
    if not args.skip_train:
        run_train(args, path, out, "lean")
        if has_vllm:
            run_train(args, path, out, "vllm")
        else:
            record("train vllm", False if args.require_vllm else None, reason="vllm is not installed")
    if args.skip_vllm:
        pass
    elif not has_vllm:
        record("vllm", False if args.require_vllm else None, reason="vllm is not installed: pip install 'groupo[vllm]'")
    else:
        try:
            vllm_checks(args, path)
        except Exception as e:           # report and carry on to the summary
            record("vllm checks", False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
    (out / "summary.json").write_text(json.dumps(RESULTS, indent=2, default=str))
    failed = [r["check"] for r in RESULTS if r["status"] == "FAIL"]
    print(f"gpu_smoke: {len(RESULTS)} checks, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else "")
          + f"; summary in {out / 'summary.json'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the repository's groupo
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
