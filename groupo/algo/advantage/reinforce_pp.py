"""REINFORCE++ and its group-baseline variant (arXiv 2501.03262)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import result, float_rewards, batch_whiten, check_eps


@register("advantage", "reinforce_pp")
@dataclass(frozen=True)
class ReinforcePP(Advantage):
    """REINFORCE++ with the group-mean baseline ("REINFORCE++-baseline", arXiv 2501.03262,
    §3: subtract the prompt's mean reward, then normalise over the global batch):

        x_i = r_i - mean_g(r),   A_i = (x_i - mean_N x) / (std_N x + eps)

    std unbiased over all rows; eps 1e-6 is our choice. ``batch_norm='token'`` whitens
    over tokens instead (length-weighted, like verl's reinforce_plus_plus_baseline; needs
    batch.lengths). All-equal and size-1 groups get A = 0 exactly (x is 0 there and the
    batch mean of x is 0 up to rounding, each group's x summing to 0).
    """

    eps: float = 1e-6
    batch_norm: Literal["sequence", "token", "none"] = "sequence"

    def __post_init__(self):
        check_eps(self.eps)

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = float_rewards(batch), batch.group
        flat = ops.all_equal(r, grp)
        x = torch.where(flat, torch.zeros_like(r), r - ops.group_mean(r, grp))
        adv = batch_whiten(x, batch, self.batch_norm, self.eps)
        return result(torch.where(flat, torch.zeros_like(adv), adv))
