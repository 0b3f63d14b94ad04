"""Group filters (axis ``filter``): which groups of a step are trained.

A filter returns a bool [N] row mask. Refilling (generating more prompts until the
batch is full) is done by the loop, bounded by ``max_rounds``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .. import ops
from ..protocols import Filter
from ..registry import register
from ..types import Batch


@register("filter", "none")
@dataclass(frozen=True)
class NoFilter(Filter):
    refill: bool = False
    max_rounds: int = 0

    def __call__(self, batch: Batch) -> torch.Tensor:
        return torch.ones(batch.n, dtype=torch.bool)


@register("filter", "zero_variance")
@dataclass(frozen=True)
class ZeroVariance(Filter):
    """Drop groups whose rewards are all equal: their GRPO advantage is 0, so they carry
    no policy-gradient signal (DAPO dynamic sampling, arXiv 2503.14476 eq. 11).
    ``refill=True`` makes the loop sample more prompts, up to ``max_rounds`` extra
    generation rounds, to fill the step; if it still cannot, it trains on what it has
    (DAPO's verl recipe raises instead; ALGORITHMS.md §1.3 d)."""

    refill: bool = False
    max_rounds: int = 3
    metric: Literal["reward", "correct"] = "reward"

    def __post_init__(self):
        if self.max_rounds < 0:
            raise ValueError("max_rounds must be >= 0")

    def signal(self, batch: Batch) -> torch.Tensor:
        return batch.rewards if self.metric == "reward" or batch.correct is None else batch.correct

    def __call__(self, batch: Batch) -> torch.Tensor:
        return ~ops.all_equal(self.signal(batch).to(torch.float64), batch.group)


@register("filter", "all_correct")
@dataclass(frozen=True)
class AllCorrect(Filter):
    """Drop only the groups in which every completion is correct (NGRPO's
    ``filter_groups.strategy=all_correct``, arXiv 2509.18851 §3): all-wrong groups stay,
    because NGRPO's virtual maximum-reward sample gives them a negative advantage."""

    refill: bool = False
    max_rounds: int = 3

    def __call__(self, batch: Batch) -> torch.Tensor:
        x = batch.correct if batch.correct is not None else batch.rewards
        x = x.to(torch.float64)
        return ~(ops.all_equal(x, batch.group) & (ops.group_min(x, batch.group) >= 1.0))
