"""More advantage estimators (axis ``advantage``): DGPO (DGAE), A-GRAE, VGPO.

Protocol and conventions as in ``advantage.py`` / ``advantage_zoo.py``; ragged groups.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from ..registry import register
from ..types import AdvantageResult, Batch
from .advantage_zoo import _out, _rewards


@register("advantage", "dgpo")
@dataclass(frozen=True)
class DGPO:
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
        r, grp = _rewards(batch), batch.group
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
        return _out(adv, keep, {"dgpo/valid_groups": float(n_valid)})


@register("advantage", "agrae")
@dataclass(frozen=True)
class AGRAE:
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
        r, grp = _rewards(batch), batch.group
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
        return _out(adv, metrics={"agrae/mu_b": mu})


@register("advantage", "vgpo")
@dataclass(frozen=True)
class VGPO:
    """Value-anchored advantage, OUR TRANSFER of VGPO's "adaptive dual advantage
    estimation" (arXiv 2512.12387, a flow-matching image-generation paper; only its
    abstract and third-party summaries were available, ALGORITHMS.md §15 [INFERRED form]):

        A_i = (r_i - mean_g) / (std_g + eps) + lam_g * (r_i - tau_abs) / reward_scale
        lam_g = lam_max * max(0, 1 - std_g / sigma_ref)

    std unbiased, eps 1e-6. The absolute anchor grows as in-group diversity shrinks, so
    a group with no reward spread still gets a signal. This overrides §0.6 on purpose: an
    all-equal group gets A = lam_max (r - tau_abs) / reward_scale (0.25 for all-correct
    binary rewards with the defaults, -0.25 for all-wrong), and so does a size-1 group
    (its std is 0 and its z-score term 0). Not the paper's method; its dense per-step
    value estimates (temporal cumulative reward) have no counterpart here.
    """

    lam_max: float = 0.5
    sigma_ref: float = 0.5
    tau_abs: float = 0.5
    reward_scale: float = 1.0
    eps: float = 1e-6

    def __post_init__(self):
        if self.lam_max < 0:
            raise ValueError("lam_max must be >= 0")
        if self.sigma_ref <= 0 or self.reward_scale <= 0:
            raise ValueError("sigma_ref and reward_scale must be > 0")
        if self.eps < 0:
            raise ValueError("eps must be >= 0")

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = _rewards(batch), batch.group
        std = ops.group_std(r, grp)                                # [N], 0 for size-1 groups
        z = (r - ops.group_mean(r, grp)) / (std + self.eps)
        z = torch.where(ops.all_equal(r, grp), torch.zeros_like(z), z)
        lam = self.lam_max * (1.0 - std / self.sigma_ref).clamp(min=0.0)
        return _out(z + lam * (r - self.tau_abs) / self.reward_scale)
