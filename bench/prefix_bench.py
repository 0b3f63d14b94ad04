"""Shared-prefix (Prefix Grouper) vs naive forward+backward, side by side in one run.

    python bench/prefix_bench.py [--prompt 512] [--completion 64] [--group 8] [--prompts 1]

Same model, same batch (random prompt/completion tokens, completions of random length
between half and full), alternating repetitions; prints median times, their ratio, and
the token counts each path processes. Ends with ``target prefix_fwd_bwd MEASURED 0.5
pass|fail`` (the issue's target: shared <= 0.5x naive at prompt 512 / completion 64 / G=8), measured
on the path ``model.prefix_sharing=auto`` picks; both shared-prefix paths (split attention, dense mask)
are timed and printed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--completion", type=int, default=64)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", type=float, default=0.5)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from groupo.registry import build
    from groupo.model.load import load_model
    from groupo.model.prefix import plan
    from groupo.model.tiny import build_tiny

    with tempfile.TemporaryDirectory() as tmp:
        d = build_tiny(Path(tmp) / "m", seed=0, hidden=args.hidden, layers=args.layers, heads=max(1, args.hidden // 64))
        model = load_model(d).to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    V = model.config.vocab_size
    N = args.prompts * args.group
    prompts = torch.randint(3, V, (args.prompts, args.prompt), generator=g)
    p_ids = prompts.repeat_interleave(args.group, 0)
    p_mask = torch.ones_like(p_ids)
    c_ids = torch.randint(3, V, (N, args.completion), generator=g)
    c_mask = torch.zeros_like(c_ids)
    for i, L in enumerate(torch.randint(args.completion // 2, args.completion + 1, (N,), generator=g).tolist()):
        c_mask[i, :L] = 1
    _, packed, naive = plan(p_ids, p_mask, c_mask)
    p_ids, p_mask, c_ids, c_mask = (t.to(args.device) for t in (p_ids, p_mask, c_ids, c_mask))

    from groupo.model import prefix

    def step(mode):
        # "on": split attention (this is a Llama model); "dense": the dense-mask path; "off": naive
        forward = build("forward", {"on": "shared", "dense": "dense", "off": "naive"}[mode])
        model.zero_grad(set_to_none=True)
        sync()
        t0 = time.perf_counter()
        lp, _ = forward.logprobs(model, p_ids, p_mask, c_ids, c_mask)
        (lp * c_mask).sum().backward()
        sync()
        return time.perf_counter() - t0

    modes = ("off", "on", "dense")
    for mode in modes:                            # warm-up
        step(mode)
    times = {m: [] for m in modes}
    for _ in range(args.reps):
        for mode in modes:
            times[mode].append(step(mode))
    a, b, c = (statistics.median(times[m]) for m in modes)
    est = prefix.costs(model, p_ids, p_mask, c_mask)
    auto = prefix.choose(model, p_ids, p_mask, c_mask, "auto")
    print(f"model {n_params / 1e6:.1f}M params | {args.prompts} prompt(s) x G={args.group} | prompt {args.prompt} "
          f"| completions <= {args.completion} | threads {args.threads} | {args.device}")
    print(f"tokens: naive {naive}, packed without padding {packed} ({packed / naive:.2f}x); cost model "
          f"(groupo.model.prefix.costs) vs naive: split {est['split'] / est['naive']:.2f}, dense "
          f"{est['dense'] / est['naive']:.2f}; prefix_sharing=auto takes: {auto}")
    print(f"forward+backward median of {args.reps}: naive {a * 1000:.0f} ms | shared prefix (split attention) "
          f"{b * 1000:.0f} ms, ratio {b / a:.2f} | dense-mask path {c * 1000:.0f} ms, ratio {c / a:.2f}")
    r = {"naive": 1.0, "split": b / a, "dense": c / a}[auto]     # the target: the path groupo picks by default
    print(f"target prefix_fwd_bwd {r:.2f} {args.target} {'pass' if r <= args.target else 'fail'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
