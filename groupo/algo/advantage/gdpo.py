"""GDPO: group reward-decoupled normalisation of several reward components (arXiv 2601.05242)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import result, float_rewards, batch_whiten, check_eps


@register("advantage", "gdpo")
@dataclass(frozen=True)
class GDPO(Advantage):
    """GDPO, group reward-decoupled normalisation (arXiv 2601.05242; ALGORITHMS.md §4, TRL
    fork ``grpo_trainer.py``). With components R [N, K] (NaN -> 0) and weights w [K]:

        A^k_i = (R_ik - mean_g R_:k) / (std_g R_:k + eps)      per group, per reward
        pre_i = sum_k w_k A^k_i,   A_i = (pre_i - mean_N pre) / (std_N pre + eps)

    std unbiased, eps 1e-4 (TRL). ``batch_norm``: 'sequence' (TRL, the reference), 'token'
    (the README's verl variant: length-weighted whitening, needs batch.lengths), 'none'.
    Choices: without ``batch.reward_components`` the scalar rewards are one component
    (K = 1); K = 1 still runs the GDPO formula (TRL's trainer falls back to plain GRPO
    then). Missing ``reward_weights`` mean unit weights. Rows of groups where every
    component is constant (all-equal and size-1 groups) have pre = 0, and with
    ``flat_zero`` (default) get A = 0 exactly. Their whitened value would be -mu/sigma, which
    is not 0 in general: in 'sequence' mode the row mean of pre is 0 up to rounding (each
    group's z-scores sum to 0), but in 'token' mode the token-weighted mean is not, and
    ``singleton_raw`` rows move both. ``flat_zero=False`` keeps -mu/sigma, as verl does.
    ``singleton_raw``: a size-1 group's per-component score is R_ik / (1 + eps) (verl's
    mean 0 / std 1 convention) instead of 0. verl 0.9's ``gdpo`` is ``batch_norm='token',
    flat_zero=False, singleton_raw=True, eps=1e-6``.
    """

    eps: float = 1e-4
    batch_norm: Literal["sequence", "token", "none"] = "sequence"
    flat_zero: bool = True
    singleton_raw: bool = False

    def __post_init__(self):
        check_eps(self.eps)

    def __call__(self, batch: Batch) -> AdvantageResult:
        grp = batch.group
        if batch.reward_components is None:
            R = float_rewards(batch)[:, None]                              # [N, 1]
        else:
            R = torch.nan_to_num(batch.reward_components.to(torch.float64), nan=0.0)  # [N, K]
        K = R.shape[1]
        w = (torch.ones(K, dtype=torch.float64) if batch.reward_weights is None or batch.reward_components is None
             else batch.reward_weights.to(torch.float64))
        if w.shape != (K,):
            raise ValueError(f"reward_weights has shape {tuple(w.shape)}, expected ({K},)")
        pre = torch.zeros(R.shape[0], dtype=torch.float64)
        raw = (ops.count(grp) == 1) & self.singleton_raw          # size-1 groups scored r / (1 + eps)
        constant = ~raw
        for j in range(K):
            c = R[:, j]
            z = (c - ops.group_mean(c, grp)) / (ops.group_std(c, grp) + self.eps)
            flat = ops.all_equal(c, grp) & ~raw
            z = torch.where(raw, c / (1.0 + self.eps), z)
            pre = pre + w[j] * torch.where(flat, torch.zeros_like(z), z)
            constant &= flat
        adv = batch_whiten(pre, batch, self.batch_norm, self.eps)
        if self.flat_zero:
            adv = torch.where(constant, torch.zeros_like(adv), adv)
        return result(adv)
