"""DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13) as a reward term."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from ...protocols import Shaping
from ...registry import register
from ...types import Batch
from .common import add_term


@register("shaping", "dapo_overlong")
@dataclass(frozen=True)
class DAPOOverlong(Shaping):
    """DAPO soft overlong punishment and overlong filtering (Yu et al., arXiv 2503.14476
    eq. 13 and §3.4; ALGORITHMS.md §1.3), with L = completion length in tokens:

        R_len(L) = 0                                         L <= L_max - L_cache
                 = factor * ((L_max - L_cache) - L) / L_cache  L_max - L_cache < L <= L_max
                 = -factor                                    L > L_max

    added to the reward (verl's ``min(-(L - (L_max - L_cache)) / L_cache * factor, 0)``).
    ``max_length`` 0 uses ``batch.max_length`` (the generation limit). ``factor`` 0 turns
    the penalty off. With components, the penalty is appended as column ``overlong``.

    ``mask_truncated`` (overlong filtering, TRL ``mask_truncated_completions``): sets
    ``extra["keep"] = ~truncated`` (ANDed with an existing ``extra["keep"]``); the loop ANDs
    ``extra["keep"]`` into its keep mask, so truncated rows are not trained. They still
    count in their group's advantage statistics.
    """

    needs_logp: ClassVar[bool] = False

    max_length: int = 0
    cache: int = 4096
    factor: float = 1.0
    mask_truncated: bool = False

    def __post_init__(self):
        if self.max_length < 0:
            raise ValueError(f"max_length must be >= 0 (0 = the batch's generation limit), got {self.max_length}")
        if self.cache < 1:
            raise ValueError(f"cache (L_cache) must be >= 1, got {self.cache}")
        if self.factor < 0:
            raise ValueError(f"factor must be >= 0, got {self.factor}")

    def check_config(self, cfg) -> None:
        """Cross-section check before any model loads: L_cache must fit in L_max."""
        l_max = self.max_length or cfg.generation.max_new_tokens
        if self.cache > l_max:
            raise ValueError(f"shaping.cache={self.cache} exceeds the length limit {l_max} "
                             f"(generation.max_new_tokens or shaping.max_length)")

    def penalty(self, lengths: torch.Tensor, l_max: int) -> torch.Tensor:
        """R_len for lengths [N] (float64)."""
        if self.cache > l_max:
            raise ValueError(f"dapo_overlong: cache {self.cache} exceeds max_length {l_max}")
        length = lengths.to(torch.float64)
        soft = torch.clamp(((l_max - self.cache) - length) / self.cache, max=0.0)
        return self.factor * torch.where(length > l_max, torch.full_like(length, -1.0), soft)

    def __call__(self, batch: Batch) -> Batch:
        extra = dict(batch.extra)
        if self.mask_truncated:
            if batch.truncated is None:
                raise ValueError("dapo_overlong: mask_truncated needs batch.truncated")
            keep = ~batch.truncated.to(torch.bool)
            if "keep" in extra:
                keep = keep & extra["keep"].to(torch.bool)
            extra["keep"] = keep
        if self.factor == 0.0:
            return dataclasses.replace(batch, extra=extra)
        l_max = self.max_length or batch.max_length
        if not l_max:
            raise ValueError("dapo_overlong: set max_length, or provide batch.max_length")
        if batch.lengths is None:
            raise ValueError("dapo_overlong needs batch.lengths")
        return add_term(batch, self.penalty(batch.lengths, int(l_max)), "overlong", 1.0, extra=extra)
