"""Reward shaping (axis ``shaping``): transforms of the rewards before advantages.

Protocol: ``__call__(batch: Batch) -> Batch``, a NEW batch (``dataclasses.replace``) with
transformed ``rewards`` and, where relevant, ``reward_components`` / ``reward_weights`` /
``reward_names``. The input batch, its tensors and its ``extra`` dict are never modified.
Groups are ragged (index based). ``needs_logp`` (``groupo.protocols.Shaping``): the loop
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

from ... import ops
from ...protocols import Shaping
from ...registry import register
from ...types import Batch


def components_of(batch: Batch, who: str):
    """(components [N, K], weights [K], names) of a batch that must have named components."""
    if batch.reward_components is None:
        raise ValueError(f"shaping '{who}' needs batch.reward_components (the per-reward columns)")
    comp = batch.reward_components
    k = comp.shape[1]
    if len(batch.reward_names) != k:
        raise ValueError(f"shaping '{who}': {k} reward components but reward_names={batch.reward_names!r}")
    w = batch.reward_weights if batch.reward_weights is not None else torch.ones(k)
    return comp, w.to(comp.device, comp.dtype), tuple(batch.reward_names)


def column(batch: Batch, name: str, who: str) -> int:
    _, _, names = components_of(batch, who)
    if name not in names:
        raise ValueError(f"shaping '{who}': no reward component named {name!r}; components: {list(names)}")
    return names.index(name)


def weighted_sum(comp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_k w_k * comp[:, k] with NaN counted as 0 (RewardSet.combine; all-NaN rows give 0)."""
    return torch.nansum(comp * w, dim=1)


def add_term(batch: Batch, values: torch.Tensor, name: str, weight: float, **changes) -> Batch:
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
class NoShaping(Shaping):
    """Identity: a new Batch object holding the same (unmodified) tensors."""

    needs_logp: ClassVar[bool] = False

    def __call__(self, batch: Batch) -> Batch:
        return dataclasses.replace(batch, extra=dict(batch.extra))


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
