"""Truncated importance sampling (TIS) for a sampler that is not the training forward.

vLLM's kernels and batching differ from the training forward, so a token sampled by vLLM has a
slightly different probability under the policy being trained. The loss multiplies each token's
weight by ``min(exp(logp_old - logp_sampler), cap)`` (Yao et al. 2025, "Your efficient RL
framework secretly brings you off-policy RL training"; TRL's
``vllm_importance_sampling_correction`` with ``vllm_importance_sampling_mode="token_truncate"``,
verl's rollout-correction TIS).
"""
from __future__ import annotations

import math

import torch


def truncated_is_weights(logp_old: torch.Tensor, logp_sampler: torch.Tensor, mask: torch.Tensor,
                         cap: float = 2.0) -> torch.Tensor:
    """Per-token truncated importance weights [N, T] = min(exp(logp_old - logp_sampler), cap)
    on the mask, 0 off it; no gradient. ``logp_old``: the training model's log-probs of the
    sampled tokens before the update; ``logp_sampler``: the sampler's (vLLM's)."""
    if not cap > 0:
        raise ValueError(f"tis cap must be > 0, got {cap}")
    if logp_old.shape != logp_sampler.shape or logp_old.shape != mask.shape:
        raise ValueError(f"shapes differ: logp_old {tuple(logp_old.shape)}, logp_sampler "
                         f"{tuple(logp_sampler.shape)}, mask {tuple(mask.shape)}")
    with torch.no_grad():
        diff = logp_old.float() - logp_sampler.float().to(logp_old.device)        # [N, T]
        ratio = torch.exp(diff.clamp(max=math.log(cap)))                           # min(exp(diff), cap), no overflow
        ratio = torch.nan_to_num(ratio, nan=1.0)     # NaN sampler log-prob (an R³-replayed row): no correction
        return torch.where(mask.to(ratio.device).bool(), ratio, torch.zeros_like(ratio))


def tis_stats(weights: torch.Tensor, logp_old: torch.Tensor, logp_sampler: torch.Tensor, mask: torch.Tensor,
              cap: float) -> dict:
    """Mismatch diagnostics over the mask: mean weight, fraction of tokens at the cap,
    mean |logp_old - logp_sampler| (nats)."""
    m = mask.to(weights.device).bool()
    n = max(int(m.sum()), 1)
    diff = (logp_old.float() - logp_sampler.float().to(logp_old.device)).abs().to(weights.device)
    return {"tis/mean_weight": float(weights[m].sum()) / n,
            "tis/capped_frac": float((weights[m] >= cap * (1 - 1e-6)).sum()) / n,
            "tis/abs_logp_diff": float(diff[m].sum()) / n}
