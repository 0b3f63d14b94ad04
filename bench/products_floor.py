"""The matrix products alone of one bench step, timed at the step's own shapes.

    python bench/products_floor.py [--size 1M] [--threads 2] [--completion-tokens 1800]
                                   [--prompt-tokens 45] [--train-rows 44,64] [--rows 64]

A floor under any implementation that runs the step's dense products as separate
``torch.mm`` calls on this machine (everything else a step does, norms, RoPE, attention,
sampling, the optimizer and each operation's fixed cost, comes on top). It answers "how
much of the target's budget do the products alone use", measured rather than estimated from
a peak rate (bench/run.py's "% of compute bound" uses the rate of large square products,
which small-K shapes do not reach).

Counted (the bench's Llama shapes, q/k/v and gate/up fused, as groupo's decode runs them):

* decode: one product per projection and layer plus the output head for ``rows`` rows per
  token step, for completion-tokens / rows steps (the generated tokens, at full rows);
* training forward over prompt-tokens + completion tokens of the ``train-rows`` rows that go
  through the loss (prompts once per group: Prefix Grouper), the head on the completion
  positions only; backward: dX = dY W and dW = dY^T X for each product;
* the reference model's forward over all rows when beta > 0.

Token counts default to the medians of groupo's 1M runs in bench/results/run_0957 (1800
completion tokens, 8 prompts of 5.6 tokens, 44 of 64 rows trained at beta 0 after skipping
zero-advantage rows, all 64 at beta 0.04). Each product is timed on its own (best of 5 repeats)
both through ``torch.mm`` and through oneDNN (pre-packed for the row count in the decode step, as
groupo's lean decoder does; groupo/model/gemm.py), and the faster counts; weight gradients on
``torch.mm`` only (oneDNN was 0-30% slower for them in every layout tried, gemm.py).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import SIZES  # noqa: E402

from groupo.model import gemm  # noqa: E402

VOCAB = 107             # groupo's character tokenizer (bench/common.build_model)


def best_time(fn, reps: int) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return best


def fastest(candidates, reps: int) -> float:
    """The shortest time of any way to compute one product (each timed on its own)."""
    return min(best_time(c, reps) for c in candidates)


class Shapes:
    """Each product timed on its own, the faster of ``torch.mm`` and oneDNN (weights pre-packed
    for the row count where groupo packs them: the decode step); summed over the layers."""

    def __init__(self, size: str):
        s = SIZES[size]
        h, i = s["hidden"], s["intermediate"]
        self.h, self.layers = h, s["layers"]
        self.proj = [(h, 3 * h), (h, h), (h, 2 * i), (i, h)]       # (in, out): qkv, o, gate+up, down
        self.dnn = gemm.available()

    def _fwd_product(self, m: int, a: int, b: int, packed: bool, reps: int) -> float:
        x, w = torch.randn(m, a), torch.randn(b, a)
        wt = w.t().contiguous()
        cands = [lambda: torch.mm(x, wt)]
        if self.dnn:
            dw = torch.ops.mkldnn._reorder_linear_weight(w, m) if packed else w
            cands.append(lambda: gemm._dnn(x, dw, None))
        return fastest(cands, reps)

    def forward(self, m: int, head_rows: int, packed: bool = False, reps: int = 20) -> float:
        t = sum(self._fwd_product(m, a, b, packed, reps) for a, b in self.proj) * self.layers
        return t + self._fwd_product(head_rows, self.h, VOCAB, packed, reps)

    def _bwd_product(self, m: int, a: int, b: int, reps: int) -> float:
        x, w, gy = torch.randn(m, a), torch.randn(b, a), torch.randn(m, b)
        dx = [lambda: torch.mm(gy, w)]                          # dX = dY W      [m, in]
        if self.dnn:
            wt = w.t()
            dx.append(lambda: gemm._dnn(gy, wt, None))
        gyt = gy.t()
        return fastest(dx, reps) + fastest([lambda: torch.mm(gyt, x)], reps)   # dW = dY^T X [out, in]

    def backward(self, m: int, head_rows: int, reps: int = 20) -> float:
        t = sum(self._bwd_product(m, a, b, reps) for a, b in self.proj) * self.layers
        return t + self._bwd_product(head_rows, self.h, VOCAB, reps)


def floor(size: str, rows: int, completion_tokens: int, prompt_tokens: int, train_rows: int, beta: float) -> dict:
    s = Shapes(size)
    train_comp = round(completion_tokens * train_rows / rows)
    out = {"decode": s.forward(rows, rows, packed=True, reps=100) * completion_tokens / rows,
           "forward": s.forward(prompt_tokens + train_comp, train_comp),
           "backward": s.backward(prompt_tokens + train_comp, train_comp),
           "reference": s.forward(prompt_tokens + completion_tokens, completion_tokens) if beta else 0.0}
    out["total"] = sum(out.values())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1M", choices=sorted(SIZES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--completion-tokens", type=int, default=1800)
    ap.add_argument("--prompt-tokens", type=int, default=45)
    ap.add_argument("--train-rows", default="44,64", help="rows trained at beta 0 and at beta 0.04")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for beta, tr in zip((0.0, 0.04), map(int, args.train_rows.split(","))):
        f = floor(args.size, args.rows, args.completion_tokens, args.prompt_tokens, tr, beta)
        print(f"{args.size} beta {beta:g}: products alone {1000 * f['total']:.0f} ms per step = decode "
              f"{1000 * f['decode']:.0f} + reference {1000 * f['reference']:.0f} + forward {1000 * f['forward']:.0f} "
              f"+ backward {1000 * f['backward']:.0f} ({args.threads} threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
