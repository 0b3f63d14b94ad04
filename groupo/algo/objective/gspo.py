"""GSPO: group sequence policy optimisation, the sequence-level importance ratio (arXiv 2507.18071),
and its token-level variant GSPO-token.

Per-token objectives: ``__call__(logp, old_logp, adv, mask) -> (loss_tok [N, T], metrics
{name: [N, T]})``, loss = negated objective.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...protocols import Objective
from ...registry import register

def check_eps(eps_low: float, eps_high: float) -> None:
    if not 0.0 <= eps_low < 1.0:
        raise ValueError(f"eps_low must be in [0, 1), got {eps_low}")
    if eps_high < 0.0:
        raise ValueError(f"eps_high must be >= 0, got {eps_high}")


def seq_log_ratio(logp, old_logp, mask):
    """(1/|o_i|) sum_t (logp - old_logp) over real tokens, [N]; |o_i| = 0 gives 0."""
    m = mask.to(logp.dtype)
    return ((logp - old_logp) * m).sum(1) / m.sum(1).clamp(min=1)


def clip_loss(ratio, a, eps_low, eps_high, mask):
    """-min(ratio*A, clip(ratio)*A) and PPO-style clip metrics; ratio and a broadcast to [N, T]."""
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    loss = -torch.minimum(ratio * a, clipped * a)
    low = (ratio < 1 - eps_low) & (a < 0)
    high = (ratio > 1 + eps_high) & (a > 0)
    m = mask.to(loss.dtype)
    shape = mask.shape
    metrics = {"clip/frac": (low | high).to(loss.dtype).expand(shape), "clip/low": low.to(loss.dtype).expand(shape),
               "clip/high": high.to(loss.dtype).expand(shape), "ratio/mean": ratio.detach().expand(shape)}
    return loss.expand(shape) * m, metrics


@register("objective", "gspo")
@dataclass(frozen=True)
class GSPO(Objective):
    """Group Sequence Policy Optimization (Zheng et al., arXiv 2507.18071; ALGORITHMS.md §1.4):

        s_i = exp( (1/|o_i|) sum_t (logp_{i,t} - old_logp_{i,t}) )
        loss_i = -min(s_i * A_i, clip(s_i, 1 - eps_low, 1 + eps_high) * A_i)

    Every real token of o_i carries the same loss_i (padding gets 0), so the aggregation
    ``seq_mean_token_mean`` gives the paper's (1/G) sum_i loss_i; other aggregations weight
    sequences by their length. |o_i| = 0 is guarded (s_i = 1). ``log_ratio_max`` clamps
    log s_i from above, like verl (10). Defaults eps_low 3e-4, eps_high 4e-4 (paper v2 §5.1).
    Fully on-policy (old = current), s_i = 1 and this is GRPO with sequence aggregation.
    """

    zero_advantage_no_gradient: ClassVar[bool] = True   # A = 0 rows add nothing: the loop may skip them

    eps_low: float = 3e-4
    eps_high: float = 4e-4
    log_ratio_max: float = 10.0

    def __post_init__(self):
        check_eps(self.eps_low, self.eps_high)

    def __call__(self, logp, old_logp, adv, mask):
        log_s = torch.clamp(seq_log_ratio(logp, old_logp, mask), max=self.log_ratio_max)   # [N]
        s = torch.exp(log_s)[:, None]                                                         # [N, 1]
        a = adv.to(logp.dtype)[:, None]
        return clip_loss(s, a, self.eps_low, self.eps_high, mask)


@register("objective", "gspo_token")
@dataclass(frozen=True)
class GSPOToken(GSPO):
    """GSPO-token (arXiv 2507.18071 §4.3; verl, Tinker): the token ratio

        s_{i,t} = sg[s_i] * pi(o_{i,t}) / sg[pi(o_{i,t})] = exp(logp - sg(logp) + sg(log s_i))

    has the value s_i on every token, and gradient s_i * grad logp_{i,t}. With one advantage
    per sequence (this library's adv [N]) it gives the same loss value and gradient as
    ``gspo`` under ``seq_mean_token_mean``; the clip decision is also per sequence.
    """

    def __call__(self, logp, old_logp, adv, mask):
        log_s = seq_log_ratio(logp, old_logp, mask).detach()[:, None]                  # [N, 1]
        log_tok = torch.clamp(logp - logp.detach() + log_s, max=self.log_ratio_max)     # [N, T]
        a = adv.to(logp.dtype)[:, None]
        return clip_loss(torch.exp(log_tok), a, self.eps_low, self.eps_high, mask)
