"""Advantages that train pass@k instead of pass@1: verl's ``grpo_passk`` (best-of-group credit,
arXiv 2503.19595) and the analytic Pass@k-training advantage (arXiv 2508.10751)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import check_eps, float_rewards, result


@register("advantage", "grpo_passk")
@dataclass(frozen=True)
class GRPOPassK(Advantage):
    """verl 0.9's ``grpo_passk`` (its docstring cites Tang et al., "Optimizing Language
    Models for Inference Time Objectives using Reinforcement Learning", arXiv 2503.19595):
    the leave-one-out gradient of the group's maximum reward (pass@k with k = the group size),
    which credits only the best row:

        A_best = (r_max - r_second) / (std_g(r) + eps),   A_i = 0 for every other row

    r_second is the second-largest value (equal to r_max on a tie at the top, so a tie gives
    every row 0 and which tied row is "best" does not matter). std unbiased; ``scale='none'``
    drops the division (verl's ``norm_adv_by_std_in_grpo=False``). eps 1e-6 as verl.
    Deviation: verl raises on a size-1 group; here it gets A = 0. Any reward scale works;
    for a k below the group size with 0/1 rewards see ``passk``.
    """

    eps: float = 1e-6
    scale: Literal["group", "none"] = "group"

    def __post_init__(self):
        check_eps(self.eps)

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = float_rewards(batch), batch.group
        idx, g = ops.compact(grp)
        adv = torch.zeros_like(r)
        for j in range(g):                                   # groups are few (prompts per step)
            rows = (idx == j).nonzero().squeeze(1)
            if rows.numel() < 2:
                continue
            top = torch.topk(r[rows], 2)
            gap = top.values[0] - top.values[1]
            if self.scale == "group":
                gap = gap / (r[rows].std() + self.eps)
            adv[rows[top.indices[0]]] = gap
        return result(adv)


@register("advantage", "passk")
@dataclass(frozen=True)
class PassK(Advantage):
    """Pass@k Training with the analytic advantage (Chen et al., arXiv 2508.10751, §4, the
    analytical derivation; authors' ``passk_adv.py`` in RUCAIBox/Passk_Training). Per group of
    n rows with c positives (r >= ``threshold``):

        rho   = 1 - C(n - c, k) / C(n, k)                  (the group's pass@k, unbiased)
        sigma = sqrt(rho (1 - rho))
        A_pos = (1 - rho) / (sigma + eps)
        A_neg = (1 - rho - C(n - c - 1, k - 1) / C(n - 1, k - 1)) / (sigma + eps)

    k = 1 is GRPO with the population std. A group with no positive, with only positives, or
    with fewer than k negatives (every k-subset passes) gets A = 0. Binary rewards: a row is
    positive when r >= ``threshold`` (1.0: the authors' ``val == 1``); the authors' code keeps
    the raw value of a reward that is neither 0 nor 1, here every row gets A_pos or A_neg.
    A group smaller than k uses k = its size (a config check asks for k <= group_size).
    eps 1e-6 as the authors. verl has no such estimator (its ``grpo_passk`` is k = n).
    """

    k: int = 4
    threshold: float = 1.0
    eps: float = 1e-6

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        check_eps(self.eps)

    def check_config(self, cfg) -> None:
        if self.k > cfg.generation.group_size:
            raise ValueError(f"advantage.k={self.k} must be <= generation.group_size={cfg.generation.group_size}")

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = float_rewards(batch), batch.group
        pos = r >= self.threshold
        idx, g = ops.compact(grp)
        adv = torch.zeros_like(r)
        for j in range(g):
            rows = idx == j
            n, c = int(rows.sum()), int((rows & pos).sum())
            k = min(self.k, n)
            if c == 0 or c == n:
                continue
            rho = 1.0 - math.comb(n - c, k) / math.comb(n, k)
            sigma = math.sqrt(rho * (1.0 - rho))
            a_pos = (1.0 - rho) / (sigma + self.eps)
            a_neg = (1.0 - rho - math.comb(n - c - 1, k - 1) / math.comb(n - 1, k - 1)) / (sigma + self.eps)
            adv[rows & pos] = a_pos
            adv[rows & ~pos] = a_neg
        return result(adv)
