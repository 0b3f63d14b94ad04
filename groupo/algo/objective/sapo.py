"""SAPO: soft adaptive policy optimisation, a sigmoid gate instead of PPO's hard clip
(Gao et al., Qwen, arXiv 2511.20347).

Per-token objectives: ``__call__(logp, old_logp, adv, mask) -> (loss_tok [N, T], metrics
{name: [N, T]})``, loss = negated objective.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...protocols import Objective
from ...registry import register


@register("objective", "sapo")
@dataclass(frozen=True)
class SAPO(Objective):
    """Soft Adaptive Policy Optimization (arXiv 2511.20347, §3: the SAPO objective with the
    soft gate f_{i,t}):

        r = exp(logp - old_logp),   tau = tau_pos if A_i > 0 else tau_neg
        f(r) = sigmoid(tau * (r - 1)) * 4 / tau
        loss_{i,t} = -f(r_{i,t}) * A_i

    f'(r) = 4 sigmoid(1 - sigmoid) peaks at 1 when r = 1, so on-policy the gradient is
    -A * grad logp (GRPO's), and it decays smoothly as r leaves 1 instead of dropping to 0
    at a clip edge; a larger tau decays faster (tau_neg > tau_pos damps negative updates).
    The on-policy loss value is -2A/tau, not -A. The paper aggregates per sequence
    (verl and TRL: seq-mean-token-mean), our default ``seq_mean_token_mean``.

    Defaults: tau_pos 1.0, tau_neg 1.05 (the paper's; verl ``tau_pos/tau_neg`` and TRL
    ``sapo_temperature_pos/neg`` have the same). ``log_ratio_clamp`` 20: log r clamped to
    [-20, 20] before exp, as verl's ``sapo`` (TRL has no clamp; 0 or None: off).
    A = 0 takes tau_neg, as verl and TRL (its loss is 0 either way).
    """

    zero_advantage_no_gradient: ClassVar[bool] = True   # A = 0: loss 0 and gradient 0

    tau_pos: float = 1.0
    tau_neg: float = 1.05
    log_ratio_clamp: float | None = 20.0

    def __post_init__(self):
        if not (self.tau_pos > 0 and self.tau_neg > 0):
            raise ValueError(f"tau_pos and tau_neg must be > 0, got {self.tau_pos}, {self.tau_neg}")
        if self.log_ratio_clamp is not None and self.log_ratio_clamp < 0:
            raise ValueError(f"log_ratio_clamp must be >= 0 (0 or null: off), got {self.log_ratio_clamp}")

    def __call__(self, logp, old_logp, adv, mask):
        a = adv.to(logp.dtype)[:, None]                                     # [N, 1]
        log_ratio = logp - old_logp
        if self.log_ratio_clamp:
            log_ratio = torch.clamp(log_ratio, -self.log_ratio_clamp, self.log_ratio_clamp)
        ratio = torch.exp(log_ratio)
        tau = torch.where(a > 0, torch.full_like(a, self.tau_pos), torch.full_like(a, self.tau_neg))
        gate = torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau)
        loss = -gate * a
        return loss, {"sapo/gate": gate.detach(), "ratio/mean": ratio.detach()}
