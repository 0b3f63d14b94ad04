"""More loss aggregation modes (axis ``aggregation``); protocol as in ``aggregation.py``:
``__call__(mask [N, T], keep [N] or None, max_length) -> token weights w [N, T]`` with
loss = sum(w * loss_tok).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..registry import register


@register("aggregation", "dgpo_token_mean")
@dataclass(frozen=True)
class DGPOTokenMean:
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
