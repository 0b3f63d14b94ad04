"""FLOP model of one GRPO step and this machine's measured fp32 matmul throughput.

Counting (multiply-add = 2 FLOPs; Kaplan et al. 2020, arXiv 2001.08361, Table 1):

* dense, per token and layer: 2 x (q, k, v, o projections + gated MLP) weights
  = 2 (2 h^2 + 2 h kv + 3 h i);
* attention, per token and layer: 4 h c (scores Q K^T and the weighted sum of V) over the
  c positions it attends to (causal: position p attends to p + 1 keys);
* output head: 2 h V per position whose logits are needed (tied embeddings: the lookup
  itself is free);
* backward = 2 x forward (gradients w.r.t. activations and weights).

Per step, with P prompts of mean length Lp, N = P x G rows and mean completion length Lc
(real tokens, EOS included; padding is not useful work):

* generation with a KV cache: prefill of each distinct prompt once (head on its last
  position), then N x Lc decode positions, each attending to Lp + its position;
* policy forward for the loss over N rows of Lp + Lc tokens (head on the Lc completion
  positions), and its backward (2x);
* log-prob passes without gradient: the reference model when beta > 0, the old policy
  when num_iterations > 1 (0 here): each one more such forward.

The count is the naive step's work for both libraries: where groupo computes less (skipped
zero-advantage rows, a prompt computed once per group), its percentage is an effective rate.

The bound: FLOPs / (step time x measured fp32 GEMM rate with the same thread count: the faster
of torch.matmul and oneDNN on square products), so
100% would mean every FLOP ran at large-matmul speed; small models cannot get there, but
the figure shows how far each library is from the hardware.
"""
from __future__ import annotations



def _shape(cfg):
    h, L, V = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    hd = getattr(cfg, "head_dim", None) or h // heads
    inter = getattr(cfg, "intermediate_size", None) or 4 * h
    dense = 2 * L * (h * heads * hd * 2 + 2 * h * kv * hd + 3 * h * inter)   # per token
    return dense, 4 * L * heads * hd, 2 * h * V                            # dense, attention per key, head


def forward_flops(cfg, tokens: float, keys: float, head_positions: float) -> float:
    """``tokens`` positions, ``keys`` attended keys summed over them, ``head_positions`` logits rows."""
    dense, attn, head = _shape(cfg)
    return dense * tokens + attn * keys + head * head_positions


def step_flops(cfg, prompts: int, rows: int, prompt_len: float, completion_len: float, ref: bool,
               old: bool = False, train_rows: float | None = None) -> dict:
    """FLOPs of one step by phase (see the module docstring). ``train_rows``: rows that go
    through the loss forward/backward when fewer than ``rows`` do (groupo skips rows whose
    advantage is 0 and that carry no KL term); the FLOPs counted are those of the work done."""
    lp, lc = float(prompt_len), float(completion_len)
    prefill = prompts * forward_flops(cfg, lp, lp * (lp + 1) / 2, 1)
    decode = rows * forward_flops(cfg, lc, lc * lp + lc * (lc + 1) / 2, lc)
    s = lp + lc
    per_row = forward_flops(cfg, s, s * (s + 1) / 2, lc)
    trained = rows if train_rows is None else train_rows
    return {"generation": prefill + decode, "logprobs": (int(ref) + int(old)) * rows * per_row,
            "forward": trained * per_row, "backward": 2 * trained * per_row}


def matmul_gflops(threads: int, sizes=(1024, 2048), reps: int = 5) -> dict:
    """Measured fp32 GEMM throughput (best of ``reps`` per size) with ``threads`` torch threads,
    through torch.matmul (MKL) and through oneDNN (``torch.ops.mkldnn._linear_pointwise``, where
    this torch has it; groupo uses it where faster, groupo/model/gemm.py):
    {"n=1024": GFLOP/s, ..., "onednn n=1024": ..., "best": the fastest of all}."""
    import torch

    from groupo.model.gemm import best_time

    def _best_s(fn, reps):
        fn()                                               # warm-up
        return best_time(fn, reps)

    torch.set_num_threads(threads)
    out = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        out[f"n={n}"] = round(2 * n ** 3 / _best_s(lambda: torch.matmul(a, b, out=c), reps) / 1e9, 1)
        try:
            lin = torch.ops.mkldnn._linear_pointwise
            t = _best_s(lambda: lin(a, b, None, "none", [], ""), reps)
            out[f"onednn n={n}"] = round(2 * n ** 3 / t / 1e9, 1)
        except (AttributeError, RuntimeError):
            pass
    out["best"] = max(out.values())
    return out


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description="measured fp32 matmul GFLOP/s")
    ap.add_argument("--threads", type=int, default=2)
    print(json.dumps(matmul_gflops(ap.parse_args().threads)))
