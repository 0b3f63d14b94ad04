"""OPO: on-policy RL with the optimal reward baseline, approximated by length (arXiv 2505.23585)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import float_rewards, group_result


def row_lengths(batch: Batch, who: str) -> torch.Tensor:
    """Completion lengths [N] (float64) from ``batch.lengths`` or the completion mask."""
    if batch.lengths is not None:
        return batch.lengths.to(torch.float64)
    if batch.completion_mask is not None:
        return batch.completion_mask.to(torch.float64).sum(1)
    raise ValueError(f"advantage '{who}' needs batch.lengths or batch.completion_mask")


@register("advantage", "opo")
@dataclass(frozen=True)
class OPO(Advantage):
    """OPO (Hao et al., "On-Policy RL with Optimal Reward Baseline", arXiv 2505.23585, §3):
    the variance-minimising baseline b* = E[||grad log pi||^2 r] / E[||grad log pi||^2], with
    ||grad log pi(o)||^2 taken proportional to the length |o| (the paper's approximation):

        b_g = sum_{i in g} |o_i| r_i / sum_{i in g} |o_i|,    A_i = r_i - b_g      (no std)

    As verl 0.9's ``opo``. Choices: an all-equal group gives A = 0 exactly; a size-1 group
    gives A = 0 (``singleton_raw=True``: verl's baseline 0, A = r); a group whose lengths sum to
    0 falls back to the plain mean. The paper trains exactly on-policy (one update per batch,
    the recipe's ``num_iterations: 1``); the baseline itself does not depend on that.
    """

    singleton_raw: bool = False

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = float_rewards(batch), batch.group
        length = row_lengths(batch, "opo")
        den = ops.group_sum(length, grp)
        b = torch.where(den > 0, ops.group_sum(length * r, grp) / den.clamp(min=1e-300), ops.group_mean(r, grp))
        adv = torch.where(ops.all_equal(r, grp), torch.zeros_like(r), r - b)
        return group_result(batch, adv, self.singleton_raw)
