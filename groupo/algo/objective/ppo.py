"""Per-token policy surrogates (axis ``objective``). They return a per-token *loss*
(the negated objective), shape [N, T], plus per-token metric tensors; aggregation
into one scalar happens in ``aggregation``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...protocols import Objective
from ...registry import register


def per_token(adv: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """Advantages in ``logp``'s dtype, shaped to multiply token values [N, T]: a per-row [N]
    advantage as a column [N, 1], a per-token one [N, T] as it is."""
    a = adv.to(logp.dtype)
    return a[:, None] if a.dim() == 1 else a


@register("objective", "ppo_clip")
@dataclass(frozen=True)
class PPOClip(Objective):
    """PPO clipped surrogate (Schulman et al., arXiv 1707.06347, eq. 7) as used by GRPO
    (arXiv 2402.03300, eq. 3), with DAPO's decoupled clip range (arXiv 2503.14476, eq. 10):

        loss_{i,t} = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A),  rho = exp(logp - old_logp)

    ``dual_clip`` (verl's ``clip_ratio_c``, Ye et al. arXiv 1912.09729): for A < 0 the loss is
    capped at -A * c. Off (None) by default, as in TRL.

    ``log_ratio_clamp`` (default 20, like verl's ``compute_policy_loss_vanilla``): log rho is
    clamped to [-c, c] before exp, so a stale or mismatched token cannot overflow the loss
    (with A < 0 and no dual clip the unclipped branch rho * A is live; rho = e^50 would give a
    loss of 5e21). Beyond the clamp the token has no gradient. 0 or None: off (TRL has no clamp).
    For |log rho| <= c the loss and gradient are unchanged.
    """

    zero_advantage_no_gradient: ClassVar[bool] = True   # A = 0 rows add nothing: the loop may skip them
    token_advantages: ClassVar[bool] = True             # A per row [N] or per token [N, T] (GAE)

    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: float | None = None
    log_ratio_clamp: float | None = 20.0

    def __post_init__(self):
        if self.eps_low < 0 or self.eps_high < 0:
            raise ValueError("eps_low and eps_high must be >= 0")
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1, got {self.dual_clip}")
        if self.log_ratio_clamp is not None and self.log_ratio_clamp < 0:
            raise ValueError(f"log_ratio_clamp must be >= 0 (0 or null: off), got {self.log_ratio_clamp}")

    def __call__(self, logp, old_logp, adv, mask):
        a = per_token(adv, logp)                              # [N, 1] or [N, T]
        log_ratio = logp - old_logp
        if self.log_ratio_clamp:
            log_ratio = torch.clamp(log_ratio, -self.log_ratio_clamp, self.log_ratio_clamp)
        ratio = torch.exp(log_ratio)                           # [N, T]
        clipped = torch.clamp(ratio, 1 - self.eps_low, 1 + self.eps_high)
        loss = -torch.minimum(ratio * a, clipped * a)          # [N, T]
        if self.dual_clip is not None:
            loss = torch.where(a < 0, torch.minimum(loss, -a * self.dual_clip), loss)
        low = (ratio < 1 - self.eps_low) & (a < 0)
        high = (ratio > 1 + self.eps_high) & (a > 0)
        return loss, {"clip/frac": (low | high).to(logp.dtype), "clip/low": low.to(logp.dtype),
                      "clip/high": high.to(logp.dtype), "ratio/mean": ratio.detach()}


@register("objective", "reinforce")
@dataclass(frozen=True)
class Reinforce(Objective):
    """Unclipped importance-weighted policy gradient: loss = -rho * A. On-policy (rho = 1
    in value) its gradient is the REINFORCE estimator -A * grad log pi (Williams 1992)."""

    zero_advantage_no_gradient: ClassVar[bool] = True   # A = 0 rows add nothing: the loop may skip them
    token_advantages: ClassVar[bool] = True             # A per row [N] or per token [N, T] (GAE)

    def __call__(self, logp, old_logp, adv, mask):
        ratio = torch.exp(logp - old_logp)
        loss = -ratio * per_token(adv, logp)
        return loss, {"ratio/mean": ratio.detach()}
