"""GDPO's reward conditioning: a reward counts only when another condition holds (arXiv 2601.05242)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from ...protocols import Shaping
from ...registry import register
from ...types import Batch
from .common import components_of, column, weighted_sum


@register("shaping", "condition")
@dataclass(frozen=True)
class Condition(Shaping):
    """Reward conditioning (GDPO, arXiv 2601.05242; ALGORITHMS.md §4): the easy reward
    counts only when the hard one is met,

        r_easy' = r_easy * 1[r_hard >= threshold]      (a NaN r_hard is not met)

    e.g. a length or format reward only on correct answers. ``rewards`` is recomputed as
    the weighted sum of the components (NaN counted as 0, like RewardSet.combine).
    A NaN r_easy stays NaN.
    """

    needs_logp: ClassVar[bool] = False

    easy: str
    hard: str
    threshold: float = 1.0

    def __post_init__(self):
        if not self.easy or not self.hard:
            raise ValueError("condition: easy and hard must name reward components")
        if self.easy == self.hard:
            raise ValueError(f"condition: easy and hard are the same component {self.easy!r}")

    def __call__(self, batch: Batch) -> Batch:
        comp, w, _ = components_of(batch, "condition")
        e, h = column(batch, self.easy, "condition"), column(batch, self.hard, "condition")
        met = comp[:, h] >= self.threshold                                 # NaN >= t is False
        comp2 = comp.clone()
        comp2[:, e] = comp[:, e] * met.to(comp.dtype)
        rewards = weighted_sum(comp2, w).to(batch.rewards.dtype)
        return dataclasses.replace(batch, rewards=rewards, reward_components=comp2, extra=dict(batch.extra))
