"""FLOP model of one GRPO step and this machine's measured matmul throughput.

Per token, a decoder forward costs about 2 x (non-embedding parameters) FLOPs for the weight
matmuls plus 4 x layers x hidden x context for attention scores and values (Kaplan et al.
2020, arXiv 2001.08361, Table 1), plus 2 x hidden x vocab for the output head. Backward is
2x the forward. Generation with a KV cache costs one forward per new token over the growing
context. Old/reference log-prob passes are forwards over prompt + completion.
"""
from __future__ import annotations

import time

import torch


def forward_flops_per_token(cfg, context: float) -> float:
    h, L, V = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    inter = getattr(cfg, "intermediate_size", 4 * h)
    kv = getattr(cfg, "num_key_value_heads", cfg.num_attention_heads) * (h // cfg.num_attention_heads)
    per_layer = 2 * (h * h + 2 * h * kv + h * h) + 2 * 3 * h * inter      # q, k, v, o + gated MLP
    return L * per_layer + 4 * L * h * context + 2 * h * V


def step_flops(cfg, n_rows: int, prompt_len: float, completion_len: float, ref: bool, old: bool) -> dict:
    """FLOPs of one step: generation, old/ref log-probs, training forward and backward."""
    seq = prompt_len + completion_len
    fwd_tok = forward_flops_per_token(cfg, seq / 2)
    gen = n_rows * completion_len * forward_flops_per_token(cfg, prompt_len + completion_len / 2)
    gen += n_rows * prompt_len * forward_flops_per_token(cfg, prompt_len / 2)   # prefill (per row: upper bound)
    train_fwd = n_rows * seq * fwd_tok
    return {"generation": gen, "logprobs": (int(ref) + int(old)) * train_fwd, "forward": train_fwd,
            "backward": 2 * train_fwd}


def matmul_gflops(threads: int, n: int = 1024, reps: int = 10) -> float:
    """Measured fp32 GEMM throughput with ``threads`` torch threads (best of ``reps``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9
