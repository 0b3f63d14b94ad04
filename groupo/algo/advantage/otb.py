"""Optimal Token Baseline (OTB, arXiv 2602.07078): a per-token group baseline weighted by each
row's cumulative "realized energy" up to that token."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import float_rewards

OTB_EPS = 1e-8      # verl's epsilon in the baseline's denominator


def otb_baseline(returns: torch.Tensor, energy: torch.Tensor, mask: torch.Tensor, group: torch.Tensor,
                 eps: float = OTB_EPS, handle_zero_tail: bool = True) -> torch.Tensor:
    """Per-token baselines [N, T]: B_t = sum_i G_t^i W_t^i m_t^i / (sum_i W_t^i m_t^i + eps), the
    sums over the rows i of each row's group at the same position t. ``returns`` G, ``energy``
    W (cumulative), ``mask`` m: [N, T]; ``group`` [N] group ids (ragged, any order). A group of
    one row: B = 0. ``handle_zero_tail``: where one row of a group is strictly the longest, its
    baseline from the second-longest row's length on is 0 (there it is the only row, and the
    weighted mean of itself would give it A = 0)."""
    g64, w64, m = returns.to(torch.float64), energy.to(torch.float64), mask.to(torch.float64)
    n, t_len = m.shape
    idx, n_groups = ops.compact(group)
    num = m.new_zeros(n_groups, t_len).index_add(0, idx, g64 * w64 * m)           # [groups, T]
    den = m.new_zeros(n_groups, t_len).index_add(0, idx, w64 * m) + eps
    base = (num / den)[idx]                                                        # [N, T]
    size = torch.bincount(idx, minlength=n_groups)                                 # [groups]
    base[size[idx] == 1] = 0.0
    if handle_zero_tail and n:
        lengths = m.sum(1)                                                         # [N]
        for k in (size > 1).nonzero().flatten().tolist():
            rows = (idx == k).nonzero().flatten()
            ls = lengths[rows].sort(descending=True).values
            if ls[0] > ls[1]:                     # one row strictly the longest
                base[rows[lengths[rows] == ls[0]], int(ls[1]):] = 0.0
    return base


@register("advantage", "otb")
@dataclass(frozen=True)
class OTB(Advantage):
    """Optimal Token Baseline (Li, Xu, Li et al., "The Optimal Token Baseline: Variance Reduction
    for Long-Horizon LLM-RL", arXiv 2602.07078; verl's ``adv_estimator=optimal_token_baseline``,
    ``compute_optimal_token_baseline_advantage``). The paper's result (abstract): "gradient
    updates should be weighted inversely to their cumulative gradient norm". The baseline of the
    REINFORCE estimator at token t is the mean of the group's rewards-to-go weighted by each
    row's cumulative squared score norm up to t, B*_t = E[G_t W_t] / E[W_t]; the norm is the
    abstract's Logit-Gradient Proxy, from forward probabilities only: the squared norm of the
    gradient of log pi(y_j) with respect to the logits, ||e_{y_j} - pi||^2 = 1 - 2 pi_j + sum_v pi_v^2
    (the formulas as in verl's docs/algo/otb.md, "Mechanics at a glance"). Per prompt group,
    per completion position t:

        w_j = 1 - 2 pi_j + S_j,   pi_j = exp(old log-prob of token j),   S_j = sum_v pi_v(j)^2,
        W_t = sum_{j<=t} w_j m_j                          (the cumulative "realized energy"),
        B_t = sum_i G_t^i W_t^i m_t^i / (sum_i W_t^i m_t^i + 1e-8),
        A_t = (G_t - B_t) m_t,

    with G_t the reward-to-go: for the outcome reward R on the last token, G_t = R on every real
    token of the row; the sums over i run over the group's rows at the same position t (rows that
    have ended contribute nothing). No whitening, no std: A is in reward units, per token [N, T].

    pi_j and S_j are those of the temperature-scaled distribution the rows were sampled from, under
    the policy before the update: the loop (``needs_sum_pi2``) runs the old-log-prob pass and fills
    ``batch.extra["old_logp"]`` and ``["sum_pi2"]`` [N, T] (S = exp(logsumexp(2z) - 2 logsumexp(z))
    for the scaled logits z, computed next to the log-probs on every forward path).

    ``handle_zero_tail`` (default True, as the ``handle_zero_tail=True`` default of verl's
    ``compute_optimal_token_baseline_advantage``, which its trainer does not override; other verl
    versions document False): when one row of a group is strictly the longest, its baseline beyond
    the second-longest row's length is 0, so that tail keeps A = G instead of the ~0 it would get
    as the only row there.

    Edge cases (verl's arithmetic, unlike the shared policy of ``advantage/common.py``): a group
    of one row: B = 0, A = G. A group whose rows all have the reward R gets
    A_t = R eps / (sum_i W_t^i + eps) (about 1e-8 R), not exactly 0 (exactly 0 for R = 0), so
    ``train.skip_zero_advantage`` does not skip it; and with ``handle_zero_tail`` its strictly
    longest row's tail gets A = R. Deviations: verl multiplies w by the squared
    truncated importance weights when rollout importance sampling is on; that scaling is left
    out (with ``rollout.tis_cap`` > 0 the loss is still corrected, the baseline is not). A is 0 on
    padding. Pair it with an objective that takes per-token advantages (``ppo_clip``,
    ``reinforce``); the recipe ``otb`` uses ``ppo_clip`` with ``token_mean`` aggregation.
    """

    needs_sum_pi2: ClassVar[bool] = True
    per_token: ClassVar[bool] = True

    handle_zero_tail: bool = True   # the strictly longest row's tail beyond the second-longest: baseline 0
    eps: float = OTB_EPS            # added to the baseline's denominator (verl: 1e-8)

    def __post_init__(self):
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")

    def check_config(self, cfg) -> None:
        if not cfg.objective.token_advantages:
            raise ValueError(f"advantage.name=otb gives per-token advantages; objective "
                             f"'{cfg.objective.component_name}' takes one per row (use ppo_clip or reinforce)")

    def __call__(self, batch: Batch) -> AdvantageResult:
        logp, s2 = batch.extra.get("old_logp"), batch.extra.get("sum_pi2")
        if logp is None or s2 is None or batch.completion_mask is None:
            raise ValueError("advantage 'otb' needs batch.extra['old_logp'] and ['sum_pi2'] [N, T] (the old policy's "
                             "token log-probs and sum of squared probabilities; the training loop fills them) "
                             "and batch.completion_mask")
        mask = batch.completion_mask.to(torch.float64)                     # [N, T]
        t_len = mask.shape[1]
        pi = torch.exp(logp[:, :t_len].to(torch.float64))
        w = (1.0 - 2.0 * pi + s2[:, :t_len].to(torch.float64)) * mask      # per-token energy, 0 on padding
        energy = w.cumsum(1)                                                # W_t
        returns = float_rewards(batch)[:, None] * mask                      # G_t = R on every real token
        base = otb_baseline(returns, energy, mask, batch.group, self.eps, self.handle_zero_tail)
        adv = (returns - base) * mask
        n = adv.shape[0]
        last = (mask.sum(1).long() - 1).clamp(min=0)
        m = {"otb/baseline_mean": float(ops.masked_mean(base, mask)),
             "otb/token_energy_mean": float(ops.masked_mean(w, mask)),
             "otb/sum_pi2_mean": float(ops.masked_mean(s2[:, :t_len].to(torch.float64), mask)),
             "otb/final_energy_mean": float(energy[torch.arange(n), last].mean()) if n else 0.0}
        return AdvantageResult(adv, torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.float64), m)
