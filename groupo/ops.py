"""Ragged group operations, index based (``group[i]`` = group id of row i).

Group ids may be any non-negative longs; they are compacted internally, so groups of
unequal size and non-contiguous rows work everywhere. All functions return per-row
values broadcast back to rows (``[N]``) unless the name says ``per_group``.
Standard deviations are unbiased (n-1) by default, matching ``torch.std`` and the
reference code (ALGORITHMS.md §0.2); a group of size 1 has std 0.
"""
from __future__ import annotations

import torch


def compact(group: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map arbitrary group ids to 0..G-1 (in order of first appearance is not needed;
    sorted order is used). Returns (index [N], number of groups)."""
    uniq, inv = torch.unique(group, return_inverse=True)
    return inv, int(uniq.numel())


def count(group: torch.Tensor) -> torch.Tensor:
    """Size of each row's group, as float [N]."""
    idx, g = compact(group)
    counts = torch.bincount(idx, minlength=g).to(torch.float64)
    return counts[idx]


def _sum_per_group(x: torch.Tensor, idx: torch.Tensor, g: int) -> torch.Tensor:
    out = torch.zeros(g, dtype=x.dtype, device=x.device)
    return out.index_add(0, idx, x)


def group_sum(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Sum of x over each row's group, broadcast to rows [N]."""
    idx, g = compact(group)
    return _sum_per_group(x, idx, g)[idx]


def group_mean(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Mean of x over each row's group, broadcast to rows [N]."""
    idx, g = compact(group)
    n = torch.bincount(idx, minlength=g).to(x.dtype)
    return (_sum_per_group(x, idx, g) / n)[idx]


def group_std(x: torch.Tensor, group: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Std of x within each row's group, broadcast to rows [N]. Size-1 groups give 0."""
    idx, g = compact(group)
    n = torch.bincount(idx, minlength=g).to(x.dtype)
    mean = _sum_per_group(x, idx, g) / n
    sq = _sum_per_group((x - mean[idx]) ** 2, idx, g)
    denom = (n - 1).clamp(min=1) if unbiased else n
    std = torch.sqrt(sq / denom)
    std = torch.where(n > 1, std, torch.zeros_like(std))
    return std[idx]


def group_median(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Median of x within each row's group (the mean of the two middle values for even
    sizes, like numpy), broadcast to rows [N]."""
    idx, g = compact(group)
    out = torch.empty(g, dtype=x.dtype, device=x.device)
    for j in range(g):  # groups are few (prompts per step); values sorted per group
        v = torch.sort(x[idx == j]).values
        m = v.numel()
        out[j] = v[m // 2] if m % 2 else 0.5 * (v[m // 2 - 1] + v[m // 2])
    return out[idx]


def group_mad(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Median absolute deviation from the group median, broadcast to rows [N]."""
    return group_median((x - group_median(x, group)).abs(), group)


def group_min(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    idx, g = compact(group)
    out = torch.full((g,), float("inf"), dtype=x.dtype, device=x.device)
    return out.scatter_reduce(0, idx, x, reduce="amin")[idx]


def group_max(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    idx, g = compact(group)
    out = torch.full((g,), float("-inf"), dtype=x.dtype, device=x.device)
    return out.scatter_reduce(0, idx, x, reduce="amax")[idx]


def all_equal(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Bool [N]: True where every reward in the row's group is equal (zero variance)."""
    return group_max(x, group) == group_min(x, group)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x where mask is 1 (0 where the mask is empty)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """verl's ``masked_whiten``: (x - mu) * rsqrt(var + eps), mu the mean and var the
    Bessel-corrected variance of x over the entries where mask is 1; 0 where mask is 0 (verl
    leaves the shifted value there; every loss masks it). Fewer than 2 entries: zeros."""
    m = mask.to(x.dtype)
    n = m.sum()
    if n < 2:
        return torch.zeros_like(x)
    mu = (x * m).sum() / n
    var = ((x - mu) ** 2 * m).sum() / (n - 1)
    return (x - mu) * torch.rsqrt(var + eps) * m
