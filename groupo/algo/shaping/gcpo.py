"""GCPO (GeometryZero): group-contrastive auxiliary reward and a length reward (arXiv 2506.07160)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from ... import ops
from ...protocols import Shaping
from ...registry import register
from ...types import Batch
from .common import components_of, column, add_term


@register("shaping", "gcpo")
@dataclass(frozen=True)
class GCPO(Shaping):
    """Group Contrastive Policy Optimization's reward (GeometryZero, arXiv 2506.07160;
    ALGORITHMS.md §13): the auxiliary-construction reward counts only where it helps
    within the group, plus a length reward.

    ``aux`` names the reward component R_aux (e.g. a ``python`` or tag detector; a row
    "uses aux" when R_aux >= ``aux_threshold``). Per (ragged) group, O+ = rows using aux,
    O- = the others, acc+ / acc- = mean accuracy over each (``acc`` "" = ``batch.correct``,
    else a named component; NaN counts 0):
        M = +1 if acc+ - acc- > eta;  -1 if acc- - acc+ > eta;  0 otherwise or if O+ or O- is empty.
    The aux column becomes M * R_aux (it keeps its configured weight; the paper's is 1),
    and ``w_len * R_len`` is added, R_len = min(|o_i| / len_target, 1), only on correct rows
    (acc >= 1) when ``len_only_correct``; ``len_target`` 0 = 0.5 * max_length. The length
    reward is appended as component ``gcpo_length``.

    [INFERRED] (our design, not verified against the paper or its code): the masking rule
    (from the abstract and third-party summaries), eta = 0.1, the form of R_len,
    w_len = 0.5, L_target = 0.5 * L_max, the aux/accuracy thresholds.
    """

    needs_logp: ClassVar[bool] = False

    aux: str = "python"
    acc: str = ""
    eta: float = 0.1
    aux_threshold: float = 0.5
    w_len: float = 0.5
    len_target: int = 0
    len_only_correct: bool = True

    def __post_init__(self):
        if not self.aux:
            raise ValueError("gcpo: aux must name a reward component")
        if self.aux == self.acc:
            raise ValueError("gcpo: aux and acc must be different components")
        if self.eta < 0:
            raise ValueError(f"gcpo: eta must be >= 0, got {self.eta}")
        if self.len_target < 0:
            raise ValueError(f"gcpo: len_target must be >= 0 (0 = half of max_length), got {self.len_target}")

    def accuracy(self, batch: Batch) -> torch.Tensor:
        if self.acc:
            col = batch.reward_components[:, column(batch, self.acc, "gcpo")]
        elif batch.correct is not None:
            col = batch.correct
        else:
            raise ValueError("gcpo needs batch.correct, or acc naming an accuracy component")
        return torch.nan_to_num(col.to(torch.float64), nan=0.0)

    def mask(self, uses_aux: torch.Tensor, acc: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """M per row (float64 [N], the value of the row's group)."""
        on = uses_aux.to(torch.float64)
        n_on, n_all = ops.group_sum(on, group), ops.count(group)
        n_off = n_all - n_on
        acc_on = ops.group_sum(acc * on, group) / n_on.clamp(min=1)
        acc_off = ops.group_sum(acc * (1 - on), group) / n_off.clamp(min=1)
        d = acc_on - acc_off
        m = (d > self.eta).to(torch.float64) - (-d > self.eta).to(torch.float64)
        return torch.where((n_on > 0) & (n_off > 0), m, torch.zeros_like(m))

    def __call__(self, batch: Batch) -> Batch:
        comp, w, _ = components_of(batch, "gcpo")
        k = column(batch, self.aux, "gcpo")
        r_aux = comp[:, k].to(torch.float64)
        acc = self.accuracy(batch)
        m = self.mask(torch.nan_to_num(r_aux, nan=0.0) >= self.aux_threshold, acc, batch.group)
        new_aux = m * r_aux                                               # NaN stays NaN
        delta = float(w[k]) * (torch.nan_to_num(new_aux) - torch.nan_to_num(r_aux))
        comp2 = comp.clone()
        comp2[:, k] = new_aux.to(comp.dtype)
        rewards = batch.rewards + delta.to(batch.rewards.dtype)
        extra = dict(batch.extra)
        if self.w_len == 0.0:
            return dataclasses.replace(batch, rewards=rewards, reward_components=comp2, extra=extra)
        if batch.lengths is None:
            raise ValueError("gcpo: the length reward needs batch.lengths (or set w_len: 0)")
        target = self.len_target or (0.5 * batch.max_length if batch.max_length else 0)
        if not target:
            raise ValueError("gcpo: set len_target, or provide batch.max_length")
        r_len = torch.clamp(batch.lengths.to(torch.float64) / target, max=1.0)
        if self.len_only_correct:
            r_len = r_len * (acc >= 1.0).to(torch.float64)
        return add_term(batch, r_len, "gcpo_length", self.w_len, rewards=rewards,
                         reward_components=comp2, extra=extra)
