"""Rewarding the Unlikely: the unlikeliness reward against GRPO's rank bias (arXiv 2506.02355)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from ... import ops
from ...protocols import Shaping
from ...registry import register
from ...types import Batch
from .common import group_ranks


@register("shaping", "unlikeliness")
@dataclass(frozen=True)
class Unlikeliness(Shaping):
    """Unlikeliness reward (He et al., "Rewarding the Unlikely", arXiv 2506.02355;
    ALGORITHMS.md §9): scale each reward down the more likely its sample is in its group,

        r'_i = r_i * (1 - beta_rank * (rank_i + rank_offset) / G_i)

    rank_i = ascending rank of ``extra["seq_logp"]`` (length-normalised log-likelihood under
    the rollout policy) among the G_i rows of its group, 0 = least likely; all rows are
    ranked, correct or not (incorrect rows keep reward 0). ``rank_offset`` 0 is the
    authors' code; 1 is the paper's formula (rank 0 = most likely, factor 1 - beta(G - rank)/G).
    The sort is stable: ties are ranked in row order (the reference argsort is not stable).
    Components, when present, are scaled by the same factor.
    """

    needs_logp: ClassVar[bool] = True

    beta_rank: float = 0.25
    rank_offset: int = 0

    def __post_init__(self):
        if self.rank_offset not in (0, 1):
            raise ValueError(f"rank_offset must be 0 (code) or 1 (paper), got {self.rank_offset}")
        if self.beta_rank < 0:
            raise ValueError(f"beta_rank must be >= 0, got {self.beta_rank}")

    def factors(self, seq_logp: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        rank = group_ranks(seq_logp, group).to(torch.float64)
        return 1.0 - self.beta_rank * (rank + self.rank_offset) / ops.count(group)

    def __call__(self, batch: Batch) -> Batch:
        lp = batch.extra.get("seq_logp")
        if lp is None:
            raise ValueError("shaping 'unlikeliness' needs batch.extra['seq_logp'] ([N] mean token "
                             "log-prob of each completion under the rollout policy)")
        lp = torch.as_tensor(lp)
        if lp.shape != (batch.n,):
            raise ValueError(f"unlikeliness: extra['seq_logp'] must have shape [{batch.n}], got {list(lp.shape)}")
        if torch.isnan(lp).any():
            raise ValueError("unlikeliness: extra['seq_logp'] contains NaN")
        f = self.factors(lp.detach().to(torch.float64), batch.group)
        out = {"rewards": batch.rewards * f.to(batch.rewards.dtype), "extra": dict(batch.extra)}
        if batch.reward_components is not None:
            out["reward_components"] = batch.reward_components * f.to(batch.reward_components.dtype)[:, None]
        return dataclasses.replace(batch, **out)
