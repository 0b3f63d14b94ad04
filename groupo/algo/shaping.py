"""Reward shaping (axis ``shaping``): transforms of the rewards before advantages.

Protocol: ``__call__(batch: Batch) -> Batch``, a NEW batch (``dataclasses.replace``) with
transformed ``rewards`` and, where relevant, ``reward_components`` / ``reward_weights`` /
``reward_names``. The input batch, its tensors and its ``extra`` dict are never modified.
Groups are ragged (index based). Class attribute ``needs_logp`` (default False): the loop
then computes ``extra["seq_logp"]`` [N], the length-normalised log-likelihood of each
completion under the rollout (old) policy, before shaping.

Invariant kept where the batch has components: ``rewards`` = nansum(components * weights).
An additive term (DAPO overlong penalty, GCPO length reward) is appended as a new
component column so multi-reward advantages (GDPO) see it too; a multiplicative one
(unlikeliness) scales every component.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from .. import ops
from ..registry import register
from ..types import Batch


def _comp(batch: Batch, who: str):
    """(components [N, K], weights [K], names) of a batch that must have named components."""
    if batch.reward_components is None:
        raise ValueError(f"shaping '{who}' needs batch.reward_components (the per-reward columns)")
    comp = batch.reward_components
    k = comp.shape[1]
    if len(batch.reward_names) != k:
        raise ValueError(f"shaping '{who}': {k} reward components but reward_names={batch.reward_names!r}")
    w = batch.reward_weights if batch.reward_weights is not None else torch.ones(k)
    return comp, w.to(comp.device, comp.dtype), tuple(batch.reward_names)


def _column(batch: Batch, name: str, who: str) -> int:
    _, _, names = _comp(batch, who)
    if name not in names:
        raise ValueError(f"shaping '{who}': no reward component named {name!r}; components: {list(names)}")
    return names.index(name)


def _weighted_sum(comp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_k w_k * comp[:, k] with NaN counted as 0 (RewardSet.combine; all-NaN rows give 0)."""
    return torch.nansum(comp * w, dim=1)


def _add_term(batch: Batch, values: torch.Tensor, name: str, weight: float, **changes) -> Batch:
    """New batch with ``weight * values`` added to rewards, and as a new component column
    ``name`` (made unique) with weight ``weight`` when the batch has components."""
    rewards = changes.pop("rewards", batch.rewards)
    out = {"rewards": rewards + (weight * values).to(rewards.dtype), **changes}
    comp = changes.get("reward_components", batch.reward_components)
    if comp is not None:
        names = tuple(changes.get("reward_names", batch.reward_names))
        k = comp.shape[1]
        w = changes.get("reward_weights", batch.reward_weights)
        w = w if w is not None else torch.ones(k, dtype=comp.dtype)
        label, j = name, 1
        while label in names:
            j += 1
            label = f"{name}_{j}"
        out["reward_components"] = torch.cat([comp, values.to(comp.dtype)[:, None]], dim=1)
        out["reward_weights"] = torch.cat([w, torch.tensor([weight], dtype=w.dtype, device=w.device)])
        out["reward_names"] = names + (label,) if len(names) == k else names
    return dataclasses.replace(batch, **out)


@register("shaping", "none")
@dataclass(frozen=True)
class NoShaping:
    """Identity: a new Batch object holding the same (unmodified) tensors."""

    needs_logp: ClassVar[bool] = False

    def __call__(self, batch: Batch) -> Batch:
        return dataclasses.replace(batch, extra=dict(batch.extra))


@register("shaping", "dapo_overlong")
@dataclass(frozen=True)
class DAPOOverlong:
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
        return _add_term(batch, self.penalty(batch.lengths, int(l_max)), "overlong", 1.0, extra=extra)


def group_ranks(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Ascending rank of x within each row's (ragged) group, long [N]: 0 = smallest.
    Stable: equal values are ranked in row order."""
    idx, g = ops.compact(group)
    order = torch.sort(x, stable=True).indices
    order = order[torch.sort(idx[order], stable=True).indices]      # by group, then x, then row
    pos = torch.empty_like(order)
    pos[order] = torch.arange(order.numel(), device=order.device)
    sizes = torch.bincount(idx, minlength=g)
    start = torch.cumsum(sizes, 0) - sizes
    return pos - start[idx]


@register("shaping", "unlikeliness")
@dataclass(frozen=True)
class Unlikeliness:
    """Unlikeliness reward (He et al., "Rewarding the Unlikely", arXiv 2506.02355;
    ALGORITHMS.md §9): scale each reward down the more likely its sample is in its group,

        r'_i = r_i * (1 - beta_rank * (rank_i + rank_offset) / G_i)

    rank_i = ascending rank of ``extra["seq_logp"]`` (length-normalised log-likelihood under
    the rollout policy) among the G_i rows of its group, 0 = least likely; all rows are
    ranked, correct or not (incorrect rows keep reward 0). ``rank_offset`` 0 is the
    authors' code; 1 is the paper's formula (rank 0 = most likely, factor 1 - beta(G - rank)/G).
    The sort is stable: ties are ranked in row order (the reference argsort is not stable).
    Components, when present, are scaled by the same factor.
    """

    needs_logp: ClassVar[bool] = True

    beta_rank: float = 0.25
    rank_offset: int = 0

    def __post_init__(self):
        if self.rank_offset not in (0, 1):
            raise ValueError(f"rank_offset must be 0 (code) or 1 (paper), got {self.rank_offset}")
        if self.beta_rank < 0:
            raise ValueError(f"beta_rank must be >= 0, got {self.beta_rank}")

    def factors(self, seq_logp: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        rank = group_ranks(seq_logp, group).to(torch.float64)
        return 1.0 - self.beta_rank * (rank + self.rank_offset) / ops.count(group)

    def __call__(self, batch: Batch) -> Batch:
        lp = batch.extra.get("seq_logp")
        if lp is None:
            raise ValueError("shaping 'unlikeliness' needs batch.extra['seq_logp'] ([N] mean token "
                             "log-prob of each completion under the rollout policy)")
        lp = torch.as_tensor(lp)
        if lp.shape != (batch.n,):
            raise ValueError(f"unlikeliness: extra['seq_logp'] must have shape [{batch.n}], got {list(lp.shape)}")
        if torch.isnan(lp).any():
            raise ValueError("unlikeliness: extra['seq_logp'] contains NaN")
        f = self.factors(lp.detach().to(torch.float64), batch.group)
        out = {"rewards": batch.rewards * f.to(batch.rewards.dtype), "extra": dict(batch.extra)}
        if batch.reward_components is not None:
            out["reward_components"] = batch.reward_components * f.to(batch.reward_components.dtype)[:, None]
        return dataclasses.replace(batch, **out)


@register("shaping", "gcpo")
@dataclass(frozen=True)
class GCPO:
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
            col = batch.reward_components[:, _column(batch, self.acc, "gcpo")]
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
        comp, w, _ = _comp(batch, "gcpo")
        k = _column(batch, self.aux, "gcpo")
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
        return _add_term(batch, r_len, "gcpo_length", self.w_len, rewards=rewards,
                         reward_components=comp2, extra=extra)


@register("shaping", "condition")
@dataclass(frozen=True)
class Condition:
    """Reward conditioning (GDPO, arXiv 2601.05242; ALGORITHMS.md §4): the easy reward
    counts only when the hard one is met,

        r_easy' = r_easy * 1[r_hard >= threshold]      (a NaN r_hard is not met)

    e.g. a length or format reward only on correct answers. ``rewards`` is recomputed as
    the weighted sum of the components (NaN counted as 0, like RewardSet.combine).
    A NaN r_easy stays NaN.
    """

    needs_logp: ClassVar[bool] = False

    easy: str
    hard: str
    threshold: float = 1.0

    def __post_init__(self):
        if not self.easy or not self.hard:
            raise ValueError("condition: easy and hard must name reward components")
        if self.easy == self.hard:
            raise ValueError(f"condition: easy and hard are the same component {self.easy!r}")

    def __call__(self, batch: Batch) -> Batch:
        comp, w, _ = _comp(batch, "condition")
        e, h = _column(batch, self.easy, "condition"), _column(batch, self.hard, "condition")
        met = comp[:, h] >= self.threshold                                 # NaN >= t is False
        comp2 = comp.clone()
        comp2[:, e] = comp[:, e] * met.to(comp.dtype)
        rewards = _weighted_sum(comp2, w).to(batch.rewards.dtype)
        return dataclasses.replace(batch, rewards=rewards, reward_components=comp2, extra=dict(batch.extra))
