"""KL regularisers against a frozen reference policy (axis ``kl``), per token [N, T].

Estimators from Schulman, "Approximating KL divergence" (2020), with d = ref_logp - logp:
  k1 = -d = logp - ref_logp;  k2 = d^2 / 2;  k3 = exp(d) - d - 1 (>= 0; DeepSeekMath eq. 4).
The loop adds ``coef * kl`` to each token's loss before aggregation, and loads the
reference model only when the coefficient is non-zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..protocols import KL
from ..registry import register


@register("kl", "none")
@dataclass(frozen=True)
class NoKL(KL):
    coef: float = 0.0

    def __post_init__(self):
        if self.coef != 0.0:
            raise ValueError("kl 'none' takes no coefficient; use k1, k2 or k3 for a KL penalty")

    def __call__(self, logp, ref_logp):
        return torch.zeros_like(logp)


@register("kl", "k1")
@dataclass(frozen=True)
class K1(KL):
    coef: float = 0.04

    def __call__(self, logp, ref_logp):
        return logp - ref_logp


@register("kl", "k2")
@dataclass(frozen=True)
class K2(KL):
    coef: float = 0.04

    def __call__(self, logp, ref_logp):
        return 0.5 * (logp - ref_logp) ** 2


@register("kl", "k3")
@dataclass(frozen=True)
class K3(KL):
    coef: float = 0.04

    def __call__(self, logp, ref_logp):
        d = ref_logp - logp
        return torch.exp(d) - d - 1
