"""KL regularisers against a frozen reference policy (axis ``kl``), per token [N, T].

Estimators from Schulman, "Approximating KL divergence" (2020), with d = ref_logp - logp:
  k1 = -d = logp - ref_logp;  k2 = d^2 / 2;  k3 = exp(d) - d - 1 (>= 0; DeepSeekMath eq. 4);
  abs = |d|.
Straight-through variants (verl 0.9's ``kl_penalty`` names ending in "+") take the value of one
estimator and the gradient of k2, (logp - ref_logp) * grad logp, the gradient of KL(pi || ref)
in expectation (k1's and k3's gradients are not):
  k1_st = verl "k1+" / "kl+",  k3_st = verl "k3+" / "low_var_kl+",  abs_st = verl "abs+";
verl's "k2+" / "mse+" is plain k2. The loop adds ``coef * kl`` to each token's loss before
aggregation, and loads the reference model only when the coefficient is non-zero.
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
            raise ValueError("kl 'none' takes no coefficient; use k1, k2, k3, abs or a straight-through variant (k1_st, k3_st, abs_st) for a KL penalty")

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


@register("kl", "abs")
@dataclass(frozen=True)
class AbsKL(KL):
    """|logp - ref_logp| (verl's ``abs``); gradient sign(logp - ref_logp) * grad logp."""

    coef: float = 0.04

    def __call__(self, logp, ref_logp):
        return (logp - ref_logp).abs()


def straight_through(value, logp, ref_logp):
    """``value``'s value with k2's gradient: k2 - sg(k2) + sg(value) (verl ``kl_penalty`` "+")."""
    k2 = 0.5 * (logp - ref_logp) ** 2
    return k2 - k2.detach() + value.detach()


@register("kl", "k1_st")
@dataclass(frozen=True)
class K1ST(KL):
    """Value k1 = logp - ref_logp, gradient of k2 (verl "k1+" / "kl+")."""

    coef: float = 0.04

    def __call__(self, logp, ref_logp):
        return straight_through(logp - ref_logp, logp, ref_logp)


@register("kl", "k3_st")
@dataclass(frozen=True)
class K3ST(KL):
    """Value k3 = exp(d) - d - 1, gradient of k2 (verl "k3+" / "low_var_kl+"). verl also
    clamps d to [-20, 20] and the k3 value to [-10, 10]; the value here is unclamped, as
    ``k3`` (the gradient does not depend on it)."""

    coef: float = 0.04

    def __call__(self, logp, ref_logp):
        d = ref_logp - logp
        return straight_through(torch.exp(d) - d - 1, logp, ref_logp)


@register("kl", "abs_st")
@dataclass(frozen=True)
class AbsST(KL):
    """Value |logp - ref_logp|, gradient of k2 (verl "abs+")."""

    coef: float = 0.04

    def __call__(self, logp, ref_logp):
        return straight_through((logp - ref_logp).abs(), logp, ref_logp)
