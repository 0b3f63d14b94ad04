"""VGPO's value-anchored dual advantage, transferred to text (arXiv 2512.12387; see the class)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import result, float_rewards


@register("advantage", "vgpo")
@dataclass(frozen=True)
class VGPO(Advantage):
    """Value-anchored advantage, OUR TRANSFER of VGPO's "adaptive dual advantage
    estimation" (arXiv 2512.12387, a flow-matching image-generation paper; only its
    abstract and third-party summaries were available, ALGORITHMS.md §15 [INFERRED form]):

        A_i = (r_i - mean_g) / (std_g + eps) + lam_g * (r_i - tau_abs) / reward_scale
        lam_g = lam_max * max(0, 1 - std_g / sigma_ref)

    std unbiased, eps 1e-6. The absolute anchor grows as in-group diversity shrinks, so
    a group with no reward spread still gets a signal. This overrides §0.6 on purpose: an
    all-equal group gets A = lam_max (r - tau_abs) / reward_scale (0.25 for all-correct
    binary rewards with the defaults, -0.25 for all-wrong), and so does a size-1 group
    (its std is 0 and its z-score term 0). Not the paper's method; its dense per-step
    value estimates (temporal cumulative reward) have no counterpart here.
    """

    lam_max: float = 0.5
    sigma_ref: float = 0.5
    tau_abs: float = 0.5
    reward_scale: float = 1.0
    eps: float = 1e-6

    def __post_init__(self):
        if self.lam_max < 0:
            raise ValueError("lam_max must be >= 0")
        if self.sigma_ref <= 0 or self.reward_scale <= 0:
            raise ValueError("sigma_ref and reward_scale must be > 0")
        if self.eps < 0:
            raise ValueError("eps must be >= 0")

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = float_rewards(batch), batch.group
        std = ops.group_std(r, grp)                                # [N], 0 for size-1 groups
        z = (r - ops.group_mean(r, grp)) / (std + self.eps)
        z = torch.where(ops.all_equal(r, grp), torch.zeros_like(z), z)
        lam = self.lam_max * (1.0 - std / self.sigma_ref).clamp(min=0.0)
        return result(z + lam * (r - self.tau_abs) / self.reward_scale)
