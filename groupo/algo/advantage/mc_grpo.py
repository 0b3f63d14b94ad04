"""MC-GRPO: the median baseline for small groups (arXiv 2601.22582)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import result, float_rewards, lower_median, first_row_where, NONZERO_TOL


@register("advantage", "mc_grpo")
@dataclass(frozen=True)
class MCGRPO(Advantage):
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
    mode: Literal["median", "mean_control"] = "median"

    def __post_init__(self):
        if self.mad_eps < 0 or (self.mad_eps == 0 and not self.mad_fallback):
            raise ValueError("mad_eps must be > 0 (or >= 0 with mad_fallback=true)")

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = float_rewards(batch), batch.group
        if self.mode == "mean_control":
            adv = (r - ops.group_mean(r, grp)) / (ops.group_std(r, grp) + 1e-4)
            adv = torch.where(ops.all_equal(r, grp), torch.zeros_like(adv), adv)
            drop = first_row_where(r.abs() == ops.group_min(r.abs(), grp), grp)
            return result(adv, ~drop)
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
        return result(adv, ~pivot, {"mc/mad_zero_frac": float((mad == 0).to(torch.float64).mean())})
