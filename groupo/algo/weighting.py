"""Per-question weights (axis ``weighting``).

Protocol: ``__call__(batch, adv) -> torch.Tensor`` of per-row weights [N] float64, which
the loop multiplies into each row's loss weight (after the aggregation's token
weights). ``adv`` is the step's ``AdvantageResult``; components may ignore it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .. import ops
from ..protocols import Weighting
from ..registry import register
from ..types import AdvantageResult, Batch


@register("weighting", "uniform")
@dataclass(frozen=True)
class Uniform(Weighting):
    """Every row weight 1."""

    def __call__(self, batch: Batch, adv: AdvantageResult) -> torch.Tensor:
        return torch.ones(batch.n, dtype=torch.float64)


@register("weighting", "dgpo_dqw")
@dataclass(frozen=True)
class DGPODQW(Weighting):
    """DGPO's difficulty-aware question weighting, DQW (MathForge, arXiv 2601.20614, eq. 5;
    ALGORITHMS.md §5, code ``grpo_trainer.py`` L1677-1730). Over the B_v valid groups
    (total reward not constant; size-1 groups are invalid):

        D_s = -acc_s,   lambda_s = B_v * softmax_{s valid}(D_s / temperature)

    so the valid weights sum to B_v and harder questions weigh more. Rows of invalid
    groups get 1.0 (their advantage is 0 anyway), and with no valid group every weight
    is 1. acc_s is the group mean of ``batch.correct`` when present (``metric='correct'``),
    else of ``batch.rewards``; the code uses reward function 0 as the accuracy.
    ``all_incorrect_as_easy`` (the code's detail, default on): a group with acc 0 is
    weighted as if acc were 1 (lowest weight); it can only be valid when another reward
    varies. ``adv`` is not used.
    """

    temperature: float = 2.0
    metric: Literal["correct", "reward"] = "correct"
    all_incorrect_as_easy: bool = True

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def __call__(self, batch: Batch, adv: AdvantageResult) -> torch.Tensor:
        grp = batch.group
        r = batch.rewards.to(torch.float64)
        src = batch.correct if self.metric == "correct" and batch.correct is not None else batch.rewards
        acc = ops.group_mean(src.to(torch.float64), grp)            # [N] per-row group accuracy
        if self.all_incorrect_as_easy:
            acc = torch.where(acc == 0, torch.ones_like(acc), acc)
        valid = ~ops.all_equal(r, grp)                              # [N]
        w = torch.ones(batch.n, dtype=torch.float64)
        if not valid.any():
            return w
        idx, g = ops.compact(grp)
        gvalid = torch.zeros(g, dtype=torch.bool).index_fill(0, idx[valid], True)      # [g]
        gacc = torch.zeros(g, dtype=torch.float64).scatter(0, idx, acc)                 # [g]
        logits = torch.where(gvalid, -gacc / self.temperature, torch.full_like(gacc, -torch.inf))
        lam = gvalid.sum() * torch.softmax(logits, 0)                                   # [g]
        return torch.where(valid, lam[idx], w)
