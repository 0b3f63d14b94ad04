"""More advantage estimators (axis ``advantage``): MC-GRPO, NGRPO, GDPO, REINFORCE++.

Same protocol as ``advantage.py``: ``__call__(batch) -> AdvantageResult``, ragged
groups through ``groupo.ops``, float64 advantages. DGPO, A-GRAE and VGPO are in
``advantage_zoo2.py``. Shared edge-case policy: ALGORITHMS.md §0.6 (all-equal group
gives A = 0 exactly, a size-1 group gives A = 0) unless a docstring says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from ..registry import register
from ..types import AdvantageResult, Batch

NONZERO_TOL = 1e-6      # MC-GRPO GSM trainer: |A| <= 1e-6 counts as zero (torch.isclose atol)
TOKEN_WHITEN_EPS = 1e-8  # verl masked_whiten: (x - mu) * rsqrt(var + 1e-8)


def _out(adv: torch.Tensor, keep: torch.Tensor | None = None, metrics: dict | None = None) -> AdvantageResult:
    n = adv.shape[0]
    return AdvantageResult(
        advantages=adv,
        keep=torch.ones(n, dtype=torch.bool) if keep is None else keep,
        weights=torch.ones(n, dtype=adv.dtype),
        metrics=metrics or {},
    )


def _rewards(batch: Batch) -> torch.Tensor:
    return batch.rewards.to(torch.float64)


def lower_median(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Per-group *lower* median (element (n-1)//2 of the sorted group, like torch.median),
    broadcast to rows [N]. Equals ``ops.group_median`` for odd sizes; for even sizes it is
    always one of the group's values, so a pivot row with A = 0 exists."""
    idx, g = ops.compact(group)
    order = torch.argsort(x, stable=True)
    order = order[torch.argsort(idx[order], stable=True)]      # [N] sorted by (group, value)
    counts = torch.bincount(idx, minlength=g)                  # [g]
    starts = torch.cumsum(counts, 0) - counts                  # [g]
    return x[order[starts + (counts - 1) // 2]][idx]


def first_row_where(cond: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Bool [N]: True at the lowest row index with ``cond`` in each group (none if no row)."""
    idx, g = ops.compact(group)
    n = cond.shape[0]
    rows = torch.arange(n)
    cand = torch.where(cond, rows, torch.full_like(rows, n))
    first = torch.full((g,), n, dtype=rows.dtype).scatter_reduce(0, idx, cand, reduce="amin")
    return rows == first[idx]


def batch_whiten(x: torch.Tensor, batch: Batch, level: str, eps: float) -> torch.Tensor:
    """Normalise x over the whole batch. level 'sequence': (x - mean) / (std_unbiased + eps)
    over rows (0 for a one-row batch); 'token': verl's masked_whiten over tokens, i.e. a
    length-weighted mean and (unbiased) variance, (x - mu) * rsqrt(var + 1e-8); 'none': x."""
    if level == "none":
        return x
    if level == "sequence":
        if x.numel() < 2:
            return torch.zeros_like(x)
        return (x - x.mean()) / (x.std() + eps)
    if batch.lengths is not None:
        w = batch.lengths.to(x.dtype)
    elif batch.completion_mask is not None:
        w = batch.completion_mask.to(x.dtype).sum(1)
    else:
        raise ValueError("batch_norm='token' needs batch.lengths or batch.completion_mask")
    total = w.sum()                                            # tokens in the batch
    if total <= 1:
        return torch.zeros_like(x)
    mu = (w * x).sum() / total
    var = (w * (x - mu) ** 2).sum() / (total - 1)              # Bessel-corrected over tokens
    return (x - mu) * torch.rsqrt(var + TOKEN_WHITEN_EPS)


def _check_level(level: str, eps: float) -> None:
    if level not in ("sequence", "token", "none"):
        raise ValueError(f"batch_norm must be 'sequence', 'token' or 'none', got {level!r}")
    if eps < 0:
        raise ValueError("eps must be >= 0")


@register("advantage", "mc_grpo")
@dataclass(frozen=True)
class MCGRPO:
    """MC-GRPO, median-centred GRPO (arXiv 2601.22582; ALGORITHMS.md §2, code
    ``grpo_trainer_math.py``). Each group holds G+1 rollouts (the ``mc`` allocation):

        b = median(r),  MAD = median_j |r_j - b|,  A_j = (r_j - b) / (MAD + mad_eps)

    and the pivot, the first row (lowest row index) whose reward equals b, gets keep=False,
    so G rows per prompt are trained. No std division.

    Choices and deviations:
    - Even group sizes (G odd, or ragged groups): the *lower* median (torch.median's
      semantics) for both b and MAD, so the pivot always exists and has A = 0.
    - Ties at the median: only the first tied row is the pivot; the others stay with A = 0.
      Advantages are row-order independent; which tied row is dropped follows row order.
    - Size-1 group: A = 0 and its single row is the pivot (keep=False). All-equal group:
      A = 0, the first row is dropped.
    - ``mad_fallback`` [INFERRED option]: divide by 1 instead of mad_eps when MAD = 0
      (binary rewards always give MAD = 0, hence |A| = 1/mad_eps = 1000 by default).
    - ``gsm_multiplier`` (GSM8K trainer only): before the pivot is dropped, every A with
      |A| > 1e-6 is multiplied by n / n_nonzero (n = group size incl. the pivot).
    - ``mode='mean_control'`` (GSM8K trainer with mc=False): the extra-rollout control:
      A = (r - mean) / (std_unbiased + 1e-4) over the G+1 rows, and the first row with the
      smallest |r| is dropped instead of the pivot.
    """

    mad_eps: float = 1e-3
    mad_fallback: bool = False
    gsm_multiplier: bool = False
    mode: str = "median"

    def __post_init__(self):
        if self.mode not in ("median", "mean_control"):
            raise ValueError(f"mode must be 'median' or 'mean_control', got {self.mode!r}")
        if self.mad_eps < 0 or (self.mad_eps == 0 and not self.mad_fallback):
            raise ValueError("mad_eps must be > 0 (or >= 0 with mad_fallback=true)")

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = _rewards(batch), batch.group
        if self.mode == "mean_control":
            adv = (r - ops.group_mean(r, grp)) / (ops.group_std(r, grp) + 1e-4)
            adv = torch.where(ops.all_equal(r, grp), torch.zeros_like(adv), adv)
            drop = first_row_where(r.abs() == ops.group_min(r.abs(), grp), grp)
            return _out(adv, ~drop)
        b = lower_median(r, grp)                                    # [N]
        mad = lower_median((r - b).abs(), grp)                      # [N]
        s = mad + self.mad_eps
        if self.mad_fallback:
            s = torch.where(mad == 0, torch.ones_like(s), s)
        adv = (r - b) / s
        if self.gsm_multiplier:
            nz = adv.abs() > NONZERO_TOL                           # [N] bool
            n_nz = ops.group_sum(nz.to(adv.dtype), grp)
            mult = ops.count(grp) / n_nz.clamp(min=1)
            adv = torch.where(nz, adv * mult, adv)
        pivot = first_row_where(r == b, grp)
        return _out(adv, ~pivot, {"mc/mad_zero_frac": float((mad == 0).to(torch.float64).mean())})


@register("advantage", "ngrpo")
@dataclass(frozen=True)
class NGRPO:
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
        r, grp = _rewards(batch), batch.group
        n = ops.count(grp)                                           # [N] real group sizes
        k, rm = float(self.k), self.r_max
        mean = (ops.group_sum(r, grp) + k * rm) / (n + k)            # [N] mean of aug
        ss = ops.group_sum((r - mean) ** 2, grp) + k * (rm - mean) ** 2
        std = torch.sqrt(ss / (n + k - 1).clamp(min=1))              # unbiased std of aug
        adv = (r - mean) / (std + self.eps)
        constant = ops.all_equal(r, grp) & ((r == rm) | (self.k == 0))  # aug has zero spread
        adv = torch.where(constant, torch.zeros_like(adv), adv)
        adv = torch.where(n > 1, adv, r if self.singleton_raw else torch.zeros_like(adv))
        return _out(adv)


@register("advantage", "gdpo")
@dataclass(frozen=True)
class GDPO:
    """GDPO, group reward-decoupled normalisation (arXiv 2601.05242; ALGORITHMS.md §4, TRL
    fork ``grpo_trainer.py``). With components R [N, K] (NaN -> 0) and weights w [K]:

        A^k_i = (R_ik - mean_g R_:k) / (std_g R_:k + eps)      per group, per reward
        pre_i = sum_k w_k A^k_i,   A_i = (pre_i - mean_N pre) / (std_N pre + eps)

    std unbiased, eps 1e-4 (TRL). ``batch_norm``: 'sequence' (TRL, the reference), 'token'
    (the README's verl variant: length-weighted whitening, needs batch.lengths), 'none'.
    Choices: without ``batch.reward_components`` the scalar rewards are one component
    (K = 1); K = 1 still runs the GDPO formula (TRL's trainer falls back to plain GRPO
    then). Missing ``reward_weights`` mean unit weights. Rows of groups where every
    component is constant (all-equal and size-1 groups) get A = 0 exactly: their pre is 0
    and the batch mean of pre is 0 up to rounding, since each group's z-scores sum to 0.
    """

    eps: float = 1e-4
    batch_norm: str = "sequence"

    def __post_init__(self):
        _check_level(self.batch_norm, self.eps)

    def __call__(self, batch: Batch) -> AdvantageResult:
        grp = batch.group
        if batch.reward_components is None:
            R = _rewards(batch)[:, None]                              # [N, 1]
        else:
            R = torch.nan_to_num(batch.reward_components.to(torch.float64), nan=0.0)  # [N, K]
        K = R.shape[1]
        w = (torch.ones(K, dtype=torch.float64) if batch.reward_weights is None or batch.reward_components is None
             else batch.reward_weights.to(torch.float64))
        if w.shape != (K,):
            raise ValueError(f"reward_weights has shape {tuple(w.shape)}, expected ({K},)")
        pre = torch.zeros(R.shape[0], dtype=torch.float64)
        constant = torch.ones(R.shape[0], dtype=torch.bool)
        for j in range(K):
            c = R[:, j]
            z = (c - ops.group_mean(c, grp)) / (ops.group_std(c, grp) + self.eps)
            flat = ops.all_equal(c, grp)
            pre = pre + w[j] * torch.where(flat, torch.zeros_like(z), z)
            constant &= flat
        adv = batch_whiten(pre, batch, self.batch_norm, self.eps)
        adv = torch.where(constant, torch.zeros_like(adv), adv)
        return _out(adv)


@register("advantage", "reinforce_pp")
@dataclass(frozen=True)
class ReinforcePP:
    """REINFORCE++ with the group-mean baseline ("REINFORCE++-baseline", arXiv 2501.03262,
    §3: subtract the prompt's mean reward, then normalise over the global batch):

        x_i = r_i - mean_g(r),   A_i = (x_i - mean_N x) / (std_N x + eps)

    std unbiased over all rows; eps 1e-6 is our choice. ``batch_norm='token'`` whitens
    over tokens instead (length-weighted, like verl's reinforce_plus_plus_baseline; needs
    batch.lengths). All-equal and size-1 groups get A = 0 exactly (x is 0 there and the
    batch mean of x is 0 up to rounding, each group's x summing to 0).
    """

    eps: float = 1e-6
    batch_norm: str = "sequence"

    def __post_init__(self):
        _check_level(self.batch_norm, self.eps)

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = _rewards(batch), batch.group
        flat = ops.all_equal(r, grp)
        x = torch.where(flat, torch.zeros_like(r), r - ops.group_mean(r, grp))
        adv = batch_whiten(x, batch, self.batch_norm, self.eps)
        return _out(torch.where(flat, torch.zeros_like(adv), adv))
