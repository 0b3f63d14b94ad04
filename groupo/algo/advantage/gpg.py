"""GPG: group policy gradient, GRPO's advantage without std and with a valid-sample
correction factor (Chu et al., arXiv 2504.02546)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import check_eps, float_rewards, result


@register("advantage", "gpg")
@dataclass(frozen=True)
class GPG(Advantage):
    """Group Policy Gradient (arXiv 2504.02546, §3: the GPG advantage and its correction):

        A_i = alpha * (r_i - mean_g(r)) / F_norm,     F_norm = 1 ('none') or std_g(r) + eps ('group')
        alpha = B / (B - M)                             ('valid': B rows, M rows in groups whose rewards
                                                         are all equal, which carry no gradient)

    alpha rescales the loss as if only the valid rows had been averaged over (the paper's
    fix for the gradient shrinking when many groups are flat); B and M count the rows this
    advantage sees (the whole step). The objective is plain REINFORCE, -A log pi with a
    token-mean loss: the recipe pairs it with ``reinforce`` (-r A, the same gradient at
    r = 1) and ``token_mean``.

    ``alpha='nonzero_reward'`` is verl 0.9's ``gpg`` estimator: alpha = N / max(#rows with
    r != 0, 1) (it counts non-zero *rewards*, not valid rows; with 0/1 rewards, the correct
    rows). ``alpha='none'``: alpha = 1. ``scale='group'`` is the authors' ``scale_rewards``
    (std unbiased, eps 1e-4 as their code); verl and the paper's best run use F_norm = 1.
    An all-equal group gives A = 0 exactly; a size-1 group A = 0, or alpha * r with
    ``singleton_raw`` (verl: mean 0, std 1), counted as valid then. No valid row: alpha = 1.
    The authors also resample until enough valid rows exist (``min_inverse_alpha``); here
    that is the ``zero_variance`` filter's refill, which changes what alpha sees.
    """

    alpha: Literal["valid", "nonzero_reward", "none"] = "valid"
    scale: Literal["none", "group"] = "none"
    eps: float = 1e-4
    singleton_raw: bool = False

    def __post_init__(self):
        check_eps(self.eps)

    def __call__(self, batch: Batch) -> AdvantageResult:
        r, grp = float_rewards(batch), batch.group
        raw = (ops.count(grp) == 1) & self.singleton_raw
        flat = ops.all_equal(r, grp) & ~raw
        x = torch.where(raw, r, r - ops.group_mean(r, grp))
        if self.scale == "group":
            x = torch.where(raw, x, x / (ops.group_std(r, grp) + self.eps))
        x = torch.where(flat, torch.zeros_like(x), x)
        n = r.numel()
        if self.alpha == "valid":
            valid = int((~flat).sum())
            alpha = n / valid if valid else 1.0
        elif self.alpha == "nonzero_reward":
            alpha = n / max(int((r != 0).sum()), 1)
        else:
            alpha = 1.0
        return result(alpha * x, metrics={"gpg/alpha": float(alpha)})
