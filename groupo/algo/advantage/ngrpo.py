"""NGRPO: negative-enhanced GRPO with a virtual maximum-reward sample (arXiv 2509.18851)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import result, float_rewards


@register("advantage", "ngrpo")
@dataclass(frozen=True)
class NGRPO(Advantage):
    """NGRPO, negative-enhanced GRPO (arXiv 2509.18851; ALGORITHMS.md §3, verl
    ``compute_ngrpo_outcome_advantage``). K virtual samples with reward r_max join each
    group's *statistics* only:

        aug = r ++ [r_max]*k,   A_i = (r_i - mean(aug)) / (std_unbiased(aug) + eps)

    so an all-wrong group gets a negative advantage; an all-r_max group gets A = 0.
    Deviation: a size-1 group gives A = 0 (library §0.6); the authors' verl code gives
    A = r (``singleton_raw=True``). Pair with ppo_clip eps_low 0.16 / eps_high 0.24.
    """

    r_max: float = 1.0
    k: int = 1
    eps: float = 1e-6
    singleton_raw: bool = False

    def __post_init__(self):
        if self.k < 0:
            raise ValueError(f"k must be >= 0, got {self.k}")
        if self.eps < 0:
            raise ValueError("eps must be >= 0")

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = float_rewards(batch), batch.group
        n = ops.count(grp)                                           # [N] real group sizes
        k, rm = float(self.k), self.r_max
        mean = (ops.group_sum(r, grp) + k * rm) / (n + k)            # [N] mean of aug
        ss = ops.group_sum((r - mean) ** 2, grp) + k * (rm - mean) ** 2
        std = torch.sqrt(ss / (n + k - 1).clamp(min=1))              # unbiased std of aug
        adv = (r - mean) / (std + self.eps)
        constant = ops.all_equal(r, grp) & ((r == rm) | (self.k == 0))  # aug has zero spread
        adv = torch.where(constant, torch.zeros_like(adv), adv)
        adv = torch.where(n > 1, adv, r if self.singleton_raw else torch.zeros_like(adv))
        return result(adv)
