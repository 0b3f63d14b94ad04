"""Loss aggregation modes (axis ``aggregation``; ALGORITHMS.md §0.5).

Each mode returns per-token weights w [N, T], computed once on the *whole step's*
batch, so that the loss is sum_{i,t} w_{i,t} * loss_{i,t}. Slicing w by micro-batch
and summing the micro-batch losses gives exactly the full-batch loss, so 1 or k
micro-batches give the same gradient. Rows with keep=False get weight 0 and do not
count in any denominator.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..registry import register


def _kept(mask: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    m = mask.to(torch.float64)
    if keep is not None:
        m = m * keep.to(m.dtype)[:, None]
    return m


@register("aggregation", "seq_mean_token_mean")
@dataclass(frozen=True)
class SeqMeanTokenMean:
    """(1/N_seq) sum_i (1/|o_i|) sum_t loss_{i,t} (GRPO, arXiv 2402.03300 eq. 3; TRL loss_type='grpo')."""

    def __call__(self, mask, keep=None, max_length=None):
        m = _kept(mask, keep)
        lens = m.sum(1, keepdim=True)                       # [N, 1]
        n_seq = (lens.squeeze(1) > 0).sum().clamp(min=1)
        return m / lens.clamp(min=1) / n_seq


@register("aggregation", "token_mean")
@dataclass(frozen=True)
class TokenMean:
    """sum_{i,t} loss / sum_{i,t} mask over the step (DAPO, arXiv 2503.14476 eq. 12;
    TRL 'bnpo'/'dapo', verl 'token-mean'). With one process local = global."""

    def __call__(self, mask, keep=None, max_length=None):
        m = _kept(mask, keep)
        return m / m.sum().clamp(min=1)


@register("aggregation", "seq_sum_const")
@dataclass(frozen=True)
class SeqSumConst:
    """sum_{i,t} loss / (N_seq * L_max), L_max the generation limit, a constant
    (Dr. GRPO, arXiv 2503.20783 §3.1; TRL 'dr_grpo'). We follow TRL and divide by N_seq
    too (verl's 'seq-mean-token-sum-norm' does not; ALGORITHMS.md §0.5)."""

    max_length: int | None = None

    def __call__(self, mask, keep=None, max_length=None):
        m = _kept(mask, keep)
        L = self.max_length or max_length or mask.shape[1]
        n_seq = (m.sum(1) > 0).sum().clamp(min=1)
        return m / (n_seq * L)
