"""A-GRAE: asymmetric group-relative advantage estimation (arXiv 2602.05548)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import result, float_rewards


@register("advantage", "agrae")
@dataclass(frozen=True)
class AGRAE(Advantage):
    """A-GRAE, asymmetric group-relative advantage estimation (arXiv 2602.05548;
    ALGORITHMS.md §6, code verl ``compute_grpo_outcome_advantage`` L158-225). With the
    GRPO advantage Â (eps 1e-6; the Dr. GRPO one when ``scale=False``), p_g the group's
    mean reward (its accuracy for 0/1 rewards) and mu_B the mean over the batch's groups
    of p_g:

        hard_i = 0.5 Â_i / (sqrt(p_g) + eps),   easy_i = 0.5 Â_i / (1 - sqrt(p_g) + eps)
        A_i    = (1 - mu_B) easy_i + mu_B hard_i             (curriculum: easy first)
        A_i   *= min(1, mu_B / alpha)  where A_i > 0          (suppress positives early)

    Deviation, stated plainly: the released code runs this branch only when its scheduled
    ``grpo_weight`` equals exactly 2.0, which the schedule (2 - step/total, from step 1)
    never produces, so the released scripts train plain GRPO / Dr. GRPO. We implement the
    branch as the algorithm and drop the schedule. The curriculum signal is the batch's
    mean accuracy, so the component is stateless; ``mu_b`` (a field the loop or a user may
    set, e.g. to a running mean of training accuracy or to training progress in [0, 1])
    replaces the per-batch mu_B when given.
    Guards [INFERRED]: p_g is clamped to [0, 1] before the square root (rewards outside
    [0, 1] would give NaN); size-1 and all-equal groups have Â = 0, hence A = 0
    (``singleton_raw`` gives verl's Â = r for size-1 groups).
    """

    alpha: float = 1.0
    eps: float = 1e-6
    scale: bool = True
    mu_b: float | None = None
    singleton_raw: bool = False

    def __post_init__(self):
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.eps <= 0:
            raise ValueError("eps must be > 0 (it keeps 1/(1 - sqrt(p)) finite)")
        if self.mu_b is not None and not 0.0 <= self.mu_b <= 1.0:
            raise ValueError(f"mu_b must be in [0, 1], got {self.mu_b}")

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = float_rewards(batch), batch.group
        n = ops.count(grp)                                         # [N]
        mean = ops.group_mean(r, grp)
        base = r - mean
        if self.scale:
            base = base / (ops.group_std(r, grp) + self.eps)
        base = torch.where(ops.all_equal(r, grp), torch.zeros_like(base), base)
        base = torch.where(n > 1, base, r if self.singleton_raw else torch.zeros_like(base))
        p = mean.clamp(0.0, 1.0)                                   # [N] group accuracy
        n_groups = ops.compact(grp)[1]
        mu = float((p / n).sum() / n_groups) if self.mu_b is None else self.mu_b  # mean over groups
        sp = torch.sqrt(p)
        hard = 0.5 * base / (sp + self.eps)
        easy = 0.5 * base / (1.0 - sp + self.eps)
        adv = (1.0 - mu) * easy + mu * hard
        adv = torch.where(adv > 0, adv * min(1.0, mu / self.alpha), adv)
        return result(adv, metrics={"agrae/mu_b": mu})
