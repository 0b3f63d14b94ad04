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

from ..protocols import Aggregation
from ..registry import register


def _kept(mask: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    m = mask.to(torch.float64)
    if keep is not None:
        m = m * keep.to(m.dtype)[:, None]
    return m


@register("aggregation", "seq_mean_token_mean")
@dataclass(frozen=True)
class SeqMeanTokenMean(Aggregation):
    """(1/N_seq) sum_i (1/|o_i|) sum_t loss_{i,t} (GRPO, arXiv 2402.03300 eq. 3; TRL loss_type='grpo')."""

    def __call__(self, mask, keep=None, max_length=None):
        m = _kept(mask, keep)
        lens = m.sum(1, keepdim=True)                       # [N, 1]
        n_seq = (lens.squeeze(1) > 0).sum().clamp(min=1)
        return m / lens.clamp(min=1) / n_seq


@register("aggregation", "token_mean")
@dataclass(frozen=True)
class TokenMean(Aggregation):
    """sum_{i,t} loss / sum_{i,t} mask over the step (DAPO, arXiv 2503.14476 eq. 12;
    TRL 'bnpo'/'dapo', verl 'token-mean'). With one process local = global."""

    def __call__(self, mask, keep=None, max_length=None):
        m = _kept(mask, keep)
        return m / m.sum().clamp(min=1)


@register("aggregation", "seq_sum_const")
@dataclass(frozen=True)
class SeqSumConst(Aggregation):
    """sum_{i,t} loss / (N_seq * L_max), L_max the generation limit, a constant
    (Dr. GRPO, arXiv 2503.20783 §3.1; TRL 'dr_grpo'). This equals verl's
    'seq-mean-token-sum-norm' since verl 0.8 (``agg_loss`` in ``core_algos.py`` of 0.9.x:
    the token sums of the sequences with at least one token, divided by their number and by
    ``loss_scale_factor``, the mask width unless set). verl up to 0.7.x did not divide by
    N_seq (ALGORITHMS.md §0.5 describes that older code); N_seq here counts the sequences
    with a kept token, as verl's ``seq_mask``."""

    max_length: int | None = None

    def __call__(self, mask, keep=None, max_length=None):
        m = _kept(mask, keep)
        L = self.max_length or max_length or mask.shape[1]
        n_seq = (m.sum(1) > 0).sum().clamp(min=1)
        return m / (n_seq * L)


@register("aggregation", "dgpo_token_mean")
@dataclass(frozen=True)
class DGPOTokenMean(Aggregation):
    """DGPO's token normalisation over valid groups (MathForge, arXiv 2601.20614, eq. 6):

        J = (1 / sum_{s valid} sum_i |o_si|) * sum_{s valid} lambda_s sum_i sum_t (clipped surrogate)

    Valid groups are those with non-zero reward std. The paper's code reaches this inside
    TRL's per-device 'bnpo' loss by scaling A with zero_mask_ratio (all tokens / valid
    tokens) and global_balancing_ratio; here the weights are computed once on the whole
    step, so neither ratio is needed.

    Mapping: the protocol only sees (mask, keep, max_length), so validity comes from
    ``keep``: rows with keep=False (zero-variance groups marked by the ``dgpo`` advantage
    with drop_invalid, or removed by the zero_variance filter) get weight 0 and stay out
    of the denominator; every kept token gets 1 / (valid tokens). lambda_s is applied by
    the loop as a row weight (``dgpo_dqw``). With keep=None every row counts, which is
    TRL's plain 'bnpo' (DGPO without its ratio). No valid token: all weights 0 (the paper:
    every A = 0, loss 0). The arithmetic equals ``token_mean``; the separate name records
    the pairing with ``dgpo`` for recipes.
    """

    def __call__(self, mask, keep=None, max_length=None):
        m = mask.to(torch.float64)                                  # [N, T]
        if keep is not None:
            m = m * keep.to(m.dtype)[:, None]                       # invalid rows -> 0
        return m / m.sum().clamp(min=1)
