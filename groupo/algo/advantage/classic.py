"""Advantage estimators (axis ``advantage``).

Each component is a frozen dataclass called with a ``Batch`` and returns an
``AdvantageResult`` (advantages [N], keep [N], weights [N]). Groups are ragged.

Shared policy (ALGORITHMS.md §0.6): an all-equal group gives A = 0 exactly; a group
of size 1 gives A = 0 by default (TRL) or the raw reward with ``singleton_raw=True``
(verl's mean 0 / std 1 convention).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import group_result


@register("advantage", "grpo")
@dataclass(frozen=True)
class GRPO(Advantage):
    """GRPO group z-score (DeepSeekMath, arXiv 2402.03300, eq. for Â_{i,t} in §4.1.2):
    A_i = (r_i - mean(r)) / (std(r) + eps), std unbiased (torch.std default; ALGORITHMS.md §0.2).

    ``eps`` defaults to TRL's 1e-4 (verl uses 1e-6). ``scale`` follows TRL's
    ``scale_rewards``: "group" (per-group std), "batch" (std over the whole batch),
    "none" (no division; this is Dr. GRPO's estimator).
    """

    eps: float = 1e-4
    scale: Literal["group", "batch", "none"] = "group"
    unbiased: bool = True
    singleton_raw: bool = False


    def __call__(self, batch: Batch) -> AdvantageResult:
        r = batch.rewards.to(torch.float64)
        centered = r - ops.group_mean(r, batch.group)  # [N]
        if self.scale == "group":
            adv = centered / (ops.group_std(r, batch.group, self.unbiased) + self.eps)
        elif self.scale == "batch":
            std = r.std(unbiased=self.unbiased) if r.numel() > 1 else r.new_tensor(0.0)
            adv = centered / (std + self.eps)
        else:
            adv = centered
        return group_result(batch, adv, self.singleton_raw)


@register("advantage", "dr_grpo")
@dataclass(frozen=True)
class DrGRPO(Advantage):
    """Dr. GRPO ("Understanding R1-Zero-Like Training", arXiv 2503.20783, eq. 3):
    A_i = r_i - mean(r); no std division. Pair it with ``seq_sum_const`` aggregation."""

    singleton_raw: bool = False

    def __call__(self, batch: Batch) -> AdvantageResult:
        r = batch.rewards.to(torch.float64)
        return group_result(batch, r - ops.group_mean(r, batch.group), self.singleton_raw)


@register("advantage", "rloo")
@dataclass(frozen=True)
class RLOO(Advantage):
    """RLOO leave-one-out baseline (Ahmadian et al., arXiv 2402.14740, eq. 6; Kool et al. 2019):
    A_i = r_i - (1/(G-1)) sum_{j != i} r_j = G/(G-1) * (r_i - mean(r)); no std."""

    singleton_raw: bool = False

    def __call__(self, batch: Batch) -> AdvantageResult:
        r = batch.rewards.to(torch.float64)
        g = ops.count(batch.group)  # [N] group sizes
        adv = g / (g - 1).clamp(min=1) * (r - ops.group_mean(r, batch.group))
        return group_result(batch, adv, self.singleton_raw)
