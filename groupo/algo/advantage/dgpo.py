"""DGPO (MathForge "Harder Is Better"): the difficulty-balanced group advantage DGAE (arXiv 2601.20614)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import result, float_rewards


@register("advantage", "dgpo")
@dataclass(frozen=True)
class DGPO(Advantage):
    """DGPO's difficulty-balanced group advantage, DGAE (MathForge "Harder Is Better",
    arXiv 2601.20614, eq. 3-4; ALGORITHMS.md §5, code ``grpo_trainer.py`` L1677-1730).
    The std is replaced by the mean absolute deviation, so sum_i |A_i| = G per group:

        A_i = G * (r_i - mean_g) / (sum_j |r_j - mean_g| + eps)  =  (r_i - mean_g) / (MAD_g + eps/G)

    eps 1e-4; G is the row's own group size (ragged groups). ``scale_rewards=False`` gives
    A = r - mean (as the code does without scale_rewards).

    Valid groups are those whose total reward varies (std != 0); size-1 and all-equal
    groups are invalid and get A = 0. With ``drop_invalid`` (default) their rows get
    keep=False: the paper's J_DGPO sums over valid groups only and divides by the valid
    groups' tokens, so with keep=False rows out of every denominator ``dgpo_token_mean``
    (or ``token_mean``) aggregation gives exactly that normalisation. The code's two token
    ratios (zero_mask_ratio, global_balancing_ratio) only emulate it inside TRL's local
    'bnpo' loss and are therefore not applied. Question weights (DQW) are the separate
    ``dgpo_dqw`` weighting component.
    """

    eps: float = 1e-4
    scale_rewards: bool = True
    drop_invalid: bool = True

    def __post_init__(self):
        if self.eps < 0:
            raise ValueError("eps must be >= 0")

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = float_rewards(batch), batch.group
        centered = r - ops.group_mean(r, grp)                      # [N]
        if self.scale_rewards:
            spread = ops.group_sum(centered.abs(), grp)            # [N] sum_j |r_j - mean|
            adv = ops.count(grp) * centered / (spread + self.eps)
        else:
            adv = centered
        valid = ~ops.all_equal(r, grp)                             # [N] bool
        adv = torch.where(valid, adv, torch.zeros_like(adv))
        keep = valid if self.drop_invalid else torch.ones_like(valid)
        n_valid = int(torch.unique(grp[valid]).numel())
        return result(adv, keep, {"dgpo/valid_groups": float(n_valid)})
