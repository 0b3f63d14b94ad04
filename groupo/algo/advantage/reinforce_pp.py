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
    batch.lengths).

    Flat groups. x is 0 in an all-equal group, but its whitened value is -mu/sigma, which is
    not 0 in general: with ``batch_norm='token'`` the token-weighted mean mu of x is not 0
    (longer rows weigh more), and with size-1 groups under ``singleton_raw`` neither mean is.
    ``flat_zero`` True (default) sets A = 0 exactly for all-equal groups (and size-1 groups
    unless ``singleton_raw``); False keeps -mu/sigma there, as verl does. ``singleton_raw``:
    a size-1 group's baseline is 0, so x = r (verl's mean-0 convention); default False: A = 0.
    verl 0.9's ``reinforce_plus_plus_baseline`` is ``batch_norm='token', flat_zero=False,
    singleton_raw=True`` (its whitening has no eps: rsqrt(var + 1e-8)).
    """

    eps: float = 1e-6
    batch_norm: Literal["sequence", "token", "none"] = "sequence"
    flat_zero: bool = True
    singleton_raw: bool = False

    def __post_init__(self):
        check_eps(self.eps)

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = float_rewards(batch), batch.group
        raw = (ops.count(grp) == 1) & self.singleton_raw        # size-1 groups with baseline 0
        flat = ops.all_equal(r, grp) & ~raw
        x = torch.where(raw, r, r - ops.group_mean(r, grp))
        x = torch.where(flat, torch.zeros_like(x), x)            # exactly 0, not r - mean(r) rounding
        adv = batch_whiten(x, batch, self.batch_norm, self.eps)
        if self.flat_zero:
            adv = torch.where(flat, torch.zeros_like(adv), adv)
        return result(adv)
