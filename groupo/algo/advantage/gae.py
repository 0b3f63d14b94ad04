"""Generalized advantage estimation with a learned critic: PPO's advantage (arXiv 1506.02438,
1707.06347), per token."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch


def token_rewards(rewards: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None,
                  kl_coef: float = 0.0) -> torch.Tensor:
    """Per-token rewards [N, T]: each row's outcome reward ``rewards`` [N] on its last completion
    token, minus ``kl_coef * kl`` on every completion token when ``kl`` [N, T] is given
    (InstructGPT's per-token KL penalty, verl's ``use_kl_in_reward``)."""
    m = mask.to(torch.float64)
    last = (m.sum(1).long() - 1).clamp(min=0)                           # [N] index of the last real token
    out = torch.zeros_like(m)
    out[torch.arange(m.shape[0]), last] = rewards.to(torch.float64)
    if kl is not None and kl_coef:
        out = out - kl_coef * kl.to(torch.float64)
    return out * m


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE (Schulman et al., arXiv 1506.02438, eq. 16) over the completion tokens of each row:

        delta_t = r_t + gamma V_{t+1} - V_t,   A_t = sum_l (gamma lam)^l delta_{t+l},   R_t = A_t + V_t

    with V = 0 after the last real token. ``rewards``, ``values``, ``mask``: [N, T]; positions with
    mask 0 are skipped (the next value and the running sum pass over them, as verl 0.9's
    ``compute_gae_advantage_return``). Returns (advantages, returns) [N, T], 0 where mask is 0."""
    r, v, m = rewards.to(torch.float64), values.to(torch.float64), mask.to(torch.float64)
    n, t_len = r.shape
    adv = torch.zeros_like(r)
    next_v = r.new_zeros(n)                                              # [N]
    run = r.new_zeros(n)                                                 # [N] A_{t+1}
    for t in reversed(range(t_len)):
        delta = r[:, t] + gamma * next_v - v[:, t]
        a = delta + gamma * lam * run
        next_v = torch.where(m[:, t] > 0, v[:, t], next_v)
        run = torch.where(m[:, t] > 0, a, run)
        adv[:, t] = run
    adv = adv * m
    return adv, (adv + v) * m


@register("advantage", "gae")
@dataclass(frozen=True)
class GAE(Advantage):
    """PPO's advantage with a learned critic (the RLHF setting of InstructGPT, Ouyang et al.
    2022, arXiv 2203.02155, eq. 2: the reward with a per-token KL penalty; PPO, arXiv
    1707.06347, §5 "actor-critic" with eq. 11-12's truncated GAE): generalized advantage estimation
    (Schulman et al., arXiv 1506.02438, eq. 16) per completion token,

        r_t = R · [t = last] - kl_coef · (log π_old - log π_ref)_t,   δ_t = r_t + γ V(s_{t+1}) - V(s_t),
        A_t = Σ_l (γλ)^l δ_{t+l},   returns R_t = A_t + V(s_t)  (the critic's targets),

    then A whitened over the batch's completion tokens (verl's ``masked_whiten``: mean and
    Bessel-corrected variance over the tokens, (A - mu) / sqrt(var + 1e-8)) when ``whiten``.
    V(s_t) are the critic's values before the update (``batch.extra["values"]``, filled by the
    loop from the ``critic`` section: ``critic.name=value``). Defaults as verl 0.9's
    ``algorithm.gamma=1.0, lam=1.0`` (InstructGPT's code used lam 0.95); with gamma = lam = 1
    A_t = R - V(s_t) before whitening. This is verl's ``compute_gae_advantage_return`` (with its
    masking of skipped tokens) followed by ``masked_whiten``.

    ``kl_coef`` > 0 (off by default, verl ``use_kl_in_reward``): the k1 estimate
    log π_old - log π_ref of each sampled token is subtracted from its reward, so the loop loads
    the reference policy and computes old and reference log-probs before scoring (verl's
    default ``kl_penalty="kl"`` is this k1; its adaptive KL controller is not implemented, the
    coefficient is fixed).

    Deviations: advantages and returns are 0 on padding (verl leaves whitened values there;
    every loss masks them). Group ids play no part: PPO needs no groups (the ``ppo`` recipe
    samples one completion per prompt).
    """

    needs_values: ClassVar[bool] = True
    per_token: ClassVar[bool] = True

    gamma: float = 1.0        # discount of future token rewards
    lam: float = 1.0          # GAE lambda (1: Monte-Carlo returns minus the value; 0: one-step TD)
    whiten: bool = True       # whiten the advantages over the batch's completion tokens (verl masked_whiten)
    kl_coef: float = 0.0      # per-token KL penalty in the reward (k1 against the reference; 0 = off)

    def __post_init__(self):
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError(f"gamma and lam must be in [0, 1], got {self.gamma}, {self.lam}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")

    @property
    def needs_ref_logp(self) -> bool:
        return self.kl_coef > 0

    def check_config(self, cfg) -> None:
        if not cfg.critic.active:
            raise ValueError("advantage.name=gae needs a value model: set critic.name=value")
        if not cfg.objective.token_advantages:
            raise ValueError(f"advantage.name=gae gives per-token advantages; objective "
                             f"'{cfg.objective.component_name}' takes one per row (use ppo_clip or reinforce)")

    def __call__(self, batch: Batch) -> AdvantageResult:
        values = batch.extra.get("values")
        if values is None or batch.completion_mask is None:
            raise ValueError("advantage 'gae' needs batch.extra['values'] [N, T] (the critic's values; the training "
                             "loop fills them with critic.name=value) and batch.completion_mask")
        mask = batch.completion_mask.to(torch.float64)
        kl = None
        if self.kl_coef > 0:
            kl = batch.extra["old_logp"].to(torch.float64) - batch.extra["ref_logp"].to(torch.float64)
        r_tok = token_rewards(batch.rewards, mask, kl, self.kl_coef)          # [N, T]
        adv, returns = gae(r_tok, values[:, : mask.shape[1]], mask, self.gamma, self.lam)
        raw_mean = float(ops.masked_mean(adv, mask))
        if self.whiten:
            adv = ops.masked_whiten(adv, mask)
        n = adv.shape[0]
        m = {"gae/returns_mean": float(ops.masked_mean(returns, mask)), "gae/adv_raw_mean": raw_mean,
             "gae/values_mean": float(ops.masked_mean(values[:, : mask.shape[1]].to(torch.float64), mask))}
        if kl is not None:
            m["gae/kl_reward_mean"] = float(ops.masked_mean(kl, mask))
        return AdvantageResult(adv, torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.float64), m, returns)
