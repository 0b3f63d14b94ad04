"""GMPO: geometric-mean policy optimisation (Zhao et al., arXiv 2507.20673).

Per-token objectives: ``__call__(logp, old_logp, adv, mask) -> (loss_tok [N, T], metrics
{name: [N, T]})``, loss = negated objective.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...protocols import Objective
from ...registry import register


@register("objective", "gmpo")
@dataclass(frozen=True)
class GMPO(Objective):
    """Geometric-Mean Policy Optimization (arXiv 2507.20673, §3: the GMPO objective; clip
    range §4): the geometric mean of the token ratios, each clipped in log space one-sidedly
    by the sign of A, replaces GRPO's arithmetic mean:

        l_{i,t} = logp - old_logp,   c_{i,t} = clip(l_{i,t}, -eps_low, eps_high)
        l'_{i,t} = min(l, c) if A_i > 0,  max(l, c) if A_i < 0      (= sgn(A) min(sgn(A) l, sgn(A) c))
        s_i = exp( (1/|o_i|) sum_t l'_{i,t} ),   loss_i = -A_i * s_i

    Every real token of o_i carries loss_i (padding 0), so ``seq_mean_token_mean`` gives the
    paper's (1/G) sum_i loss_i, as GSPO does here. Gradient: -A_i s_i / |o_i| * grad logp on
    every token whose clip is not binding. Defaults eps_low = eps_high = 0.4, the paper's
    (e^-0.4, e^0.4) and the authors' ``CLIPRANGE=0.4``.

    Deviations: verl's ``geo_mean`` takes a plain mean over the micro-batch's rows (a
    row with no tokens counts there, with s = 1); here the aggregation weighs rows, and an
    empty row has no token to carry a loss. verl divides by |o_i| + 1e-8, we by max(|o_i|, 1).
    No log-ratio clamp, as verl and the authors' code: like PPO's, the clip is one-sided, so
    with A < 0 a token whose ratio grew past e^eps_high still counts in full.
    """

    zero_advantage_no_gradient: ClassVar[bool] = True   # A = 0: l' = 0, loss 0, no gradient

    eps_low: float = 0.4
    eps_high: float = 0.4

    def __post_init__(self):
        if self.eps_low < 0 or self.eps_high < 0:
            raise ValueError(f"eps_low and eps_high must be >= 0 (log space), got {self.eps_low}, {self.eps_high}")

    def __call__(self, logp, old_logp, adv, mask):
        a = adv.to(logp.dtype)[:, None]                                     # [N, 1]
        m = mask.to(logp.dtype)
        log_ratio = logp - old_logp                                          # [N, T]
        clipped = torch.clamp(log_ratio, -self.eps_low, self.eps_high)
        sgn = torch.sign(a)
        pessimistic = sgn * torch.minimum(sgn * log_ratio, sgn * clipped)   # [N, T]
        seq = (pessimistic * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
        s = torch.exp(seq)                                                   # [N, 1]
        loss = (-a * s).expand_as(logp) * m
        high = ((log_ratio > self.eps_high) & (a > 0)).to(logp.dtype)
        low = ((log_ratio < -self.eps_low) & (a < 0)).to(logp.dtype)
        return loss, {"clip/frac": high + low, "clip/high": high, "clip/low": low,
                      "ratio/mean": s.detach().expand_as(logp)}
