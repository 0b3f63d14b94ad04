"""Helpers shared by the advantage estimators: the result record, the lower median, batch
whitening (sequence or token level, verl's ``masked_whiten``) and the size-1 group policy.

Shared edge-case policy (ALGORITHMS.md §0.6): an all-equal group gives A = 0 exactly; a group of
size 1 gives A = 0 by default (TRL) or the raw reward with ``singleton_raw=True`` (verl's mean 0 /
std 1 convention), unless a component's docstring says otherwise.
"""
from __future__ import annotations

import torch

from ... import ops
from ...types import AdvantageResult, Batch

NONZERO_TOL = 1e-6      # MC-GRPO GSM trainer: |A| <= 1e-6 counts as zero (torch.isclose atol)
TOKEN_WHITEN_EPS = 1e-8  # verl masked_whiten: (x - mu) * rsqrt(var + 1e-8)


def result(adv: torch.Tensor, keep: torch.Tensor | None = None, metrics: dict | None = None) -> AdvantageResult:
    n = adv.shape[0]
    return AdvantageResult(
        advantages=adv,
        keep=torch.ones(n, dtype=torch.bool) if keep is None else keep,
        weights=torch.ones(n, dtype=adv.dtype),
        metrics=metrics or {},
    )


def float_rewards(batch: Batch) -> torch.Tensor:
    return batch.rewards.to(torch.float64)


def lower_median(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Per-group *lower* median (element (n-1)//2 of the sorted group, like torch.median),
    broadcast to rows [N]. Equals ``ops.group_median`` for odd sizes; for even sizes it is
    always one of the group's values, so a pivot row with A = 0 exists."""
    idx, g = ops.compact(group)
    order = torch.argsort(x, stable=True)
    order = order[torch.argsort(idx[order], stable=True)]      # [N] sorted by (group, value)
    counts = torch.bincount(idx, minlength=g)                  # [g]
    starts = torch.cumsum(counts, 0) - counts                  # [g]
    return x[order[starts + (counts - 1) // 2]][idx]


def first_row_where(cond: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Bool [N]: True at the lowest row index with ``cond`` in each group (none if no row)."""
    idx, g = ops.compact(group)
    n = cond.shape[0]
    rows = torch.arange(n)
    cand = torch.where(cond, rows, torch.full_like(rows, n))
    first = torch.full((g,), n, dtype=rows.dtype).scatter_reduce(0, idx, cand, reduce="amin")
    return rows == first[idx]


def batch_whiten(x: torch.Tensor, batch: Batch, level: str, eps: float) -> torch.Tensor:
    """Normalise x over the whole batch. level 'sequence': (x - mean) / (std_unbiased + eps)
    over rows (0 for a one-row batch); 'token': verl's masked_whiten over tokens, i.e. a
    length-weighted mean and (unbiased) variance, (x - mu) * rsqrt(var + 1e-8); 'none': x."""
    if level == "none":
        return x
    if level == "sequence":
        if x.numel() < 2:
            return torch.zeros_like(x)
        return (x - x.mean()) / (x.std() + eps)
    if batch.lengths is not None:
        w = batch.lengths.to(x.dtype)
    elif batch.completion_mask is not None:
        w = batch.completion_mask.to(x.dtype).sum(1)
    else:
        raise ValueError("batch_norm='token' needs batch.lengths or batch.completion_mask")
    total = w.sum()                                            # tokens in the batch
    if total <= 1:
        return torch.zeros_like(x)
    mu = (w * x).sum() / total
    var = (w * (x - mu) ** 2).sum() / (total - 1)              # Bessel-corrected over tokens
    return (x - mu) * torch.rsqrt(var + TOKEN_WHITEN_EPS)


def check_eps(eps: float) -> None:
    if eps < 0:
        raise ValueError("eps must be >= 0")



def group_result(batch: Batch, adv: torch.Tensor, singleton_raw: bool) -> AdvantageResult:
    sizes = ops.count(batch.group)
    rewards = batch.rewards.to(adv.dtype)
    adv = torch.where(sizes > 1, adv, rewards if singleton_raw else torch.zeros_like(adv))
    n = adv.shape[0]
    return AdvantageResult(
        advantages=adv,
        keep=torch.ones(n, dtype=torch.bool),
        weights=torch.ones(n, dtype=adv.dtype),
    )
