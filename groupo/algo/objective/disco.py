"""DisCO: discriminative constrained optimisation, a full-batch objective (arXiv 2505.12366).

Full-batch objectives: ``full_batch = True`` and ``batch_loss(logp [N, T], old_logp [N, T],
mask [N, T], group [N], correct [N]) -> (scalar loss, {name: float})``. The loop calls
``batch_loss`` once on every trained row of the step (``groupo.train.loss``); micro-batching
does not apply.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ... import ops
from ...protocols import Objective
from ...registry import register

@register("objective", "disco")
@dataclass(frozen=True)
class DisCO(Objective):
    """Discriminative Constrained Optimization (Li et al., arXiv 2505.12366; ALGORITHMS.md §7).

    Score per sequence, length-normalised over real tokens:
      ``logL``:   s_i = (1/|o_i|) sum_t logp_{i,t}
      ``Lratio``: s_i = (1/|o_i|) sum_t exp(logp_{i,t} - old_logp_{i,t})
    Per group, pos = {correct >= 1}, neg = the rest; a group is valid when both are non-empty.
    With Q = number of groups among the rows given (valid or not):
      ``disco_b``: J = (1/Q) sum_valid [ mean_pos s - mean_neg s ]
      ``disco``:   J = (1/Q) sum_valid [ mean_pos s - tau * log mean_neg exp(s / tau) ]
      KL = mean over all real tokens of (old_logp - logp)            (kl_type ``kl``)
           or of exp(x) - x - 1, x = logp - old_logp, clamped like verl  (``low_var_kl``)
      loss = -J + sg[max(beta * (KL - delta), 0)] * KL   (gradient of (beta/2)[KL - delta]_+^2)

    ``tau`` None picks the authors' scripts' value: 10 for logL, 1 for Lratio.

    Deviations from the authors' code, on purpose:
    - Groups are complete: the loss sees every trained row of the step at once. The
      released code forms the loss per gathered micro-batch and so may contrast
      sub-groups of a question split across micro-batches (§7 b, caveat).
    - ``correct`` is binarised: >= 1.0 is positive, anything else (0, -1, partial
      credit, NaN) negative. The code's ``== 1`` / ``== 0`` masks silently ignore other values.
    - The loss value is -J itself (the log-mean-exp form). The code's forward value uses
      ``neg_sum_exp / sg(neg_sum_exp)`` and so differs from -J by a constant; the
      gradients are the same.
    - With no valid group, J is a zero that stays attached to the graph.
    Groups dropped by a filter before the loss do not count in Q (the loop passes only
    trained rows); in the code all-correct / all-wrong questions count.
    """

    full_batch: ClassVar[bool] = True

    score: Literal["logL", "Lratio"] = "logL"
    variant: Literal["disco", "disco_b"] = "disco"
    tau: float | None = None
    beta: float = 1e3
    delta: float = 1e-4
    kl_type: Literal["kl", "low_var_kl"] = "kl"

    def __post_init__(self):
        if self.tau is not None and not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.beta < 0 or self.delta < 0:
            raise ValueError("beta and delta must be >= 0")

    @property
    def tau_value(self) -> float:
        if self.tau is not None:
            return float(self.tau)
        return 10.0 if self.score == "logL" else 1.0

    def __call__(self, logp, old_logp, adv, mask):
        raise RuntimeError("objective 'disco' is a full-batch objective (full_batch=True): call "
                           "batch_loss(logp, old_logp, mask, group, correct); it has no per-token loss")

    def scores(self, logp, old_logp, mask):
        """Length-normalised sequence scores s [N]."""
        m = mask.to(logp.dtype)
        x = logp if self.score == "logL" else torch.exp(logp - old_logp)
        return (x * m).sum(1) / m.sum(1).clamp(min=1)

    def objective(self, s, group, correct):
        """J (scalar, graph-preserving) and per-group stats, from scores s [N]."""
        idx, q = ops.compact(group.to(s.device))
        pos = torch.nan_to_num(correct.to(s.device, s.dtype), nan=0.0) >= 1.0
        neg = ~pos
        zeros = torch.zeros(q, dtype=s.dtype, device=s.device)
        n_pos = zeros.index_add(0, idx, pos.to(s.dtype))
        n_neg = zeros.index_add(0, idx, neg.to(s.dtype))
        valid = (n_pos > 0) & (n_neg > 0)                                                # [Q]
        mean_pos = zeros.index_add(0, idx, torch.where(pos, s, 0.0)) / n_pos.clamp(min=1)
        if self.variant == "disco_b":
            neg_term = zeros.index_add(0, idx, torch.where(neg, s, 0.0)) / n_neg.clamp(min=1)
        else:
            tau = self.tau_value
            z = s / tau
            inf = torch.full_like(z, float("-inf"))
            m = torch.full((q,), float("-inf"), dtype=s.dtype, device=s.device)
            m = m.scatter_reduce(0, idx, torch.where(neg, z, inf).detach(), reduce="amax")
            m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))                  # groups without negatives
            e = torch.exp(torch.where(neg, z - m[idx], inf))
            sum_e = zeros.index_add(0, idx, e)
            neg_term = tau * (m + torch.log(sum_e.clamp(min=1e-30)) - torch.log(n_neg.clamp(min=1)))
        per_q = torch.where(valid, mean_pos - neg_term, torch.zeros_like(mean_pos))
        return per_q.sum() / q, valid, n_pos, n_neg

    def kl(self, logp, old_logp, mask):
        """Mean KL(pi_old || pi) estimate over all real tokens (scalar)."""
        m = mask.to(logp.dtype)
        x = logp - old_logp
        if self.kl_type == "kl":
            k = -x
        else:  # verl low_var_kl: clamp the log-ratio to [-20, 20] and the estimate to [-10, 10]
            x = torch.clamp(x, -20.0, 20.0)
            k = torch.clamp(torch.exp(x) - x - 1, -10.0, 10.0)
        return (k * m).sum() / m.sum().clamp(min=1)

    def batch_loss(self, logp, old_logp, mask, group, correct):
        if logp.shape[0] == 0:
            return logp.sum() * 0.0, {}
        s = self.scores(logp, old_logp, mask)
        j, valid, n_pos, n_neg = self.objective(s, group, correct)
        kl = self.kl(logp, old_logp, mask)
        coef = torch.clamp(self.beta * (kl.detach() - self.delta), min=0.0)
        loss = -j + coef * kl
        pos = torch.nan_to_num(correct.to(s.device, s.dtype), nan=0.0) >= 1.0
        sd = s.detach()
        metrics = {
            "disco/objective": float(j.detach()), "disco/kl": float(kl.detach()),
            "disco/penalty_coef": float(coef), "disco/penalty": float(coef * kl.detach()),
            "disco/valid_groups": float(valid.sum()), "disco/groups": float(valid.numel()),
            "disco/score_pos": float(sd[pos].mean()) if pos.any() else 0.0,
            "disco/score_neg": float(sd[~pos].mean()) if (~pos).any() else 0.0,
        }
        return loss, metrics
