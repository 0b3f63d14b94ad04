"""The scoring step of a training step: rewards -> advantages -> token weights, pure tensor math.

    batch (rewards, groups, lengths, ...)  --shaping-->  shaped batch  --advantage-->  A [N], keep [N]
    row weights = advantage weights x question weights (weighting) x replay weight (replayed rows)
    token weights [N, T] = aggregation(mask, keep) x row weights  [x truncated IS weights (vLLM)]

No model, no I/O: the loop computes what the components need from the model first (old-policy
log-probs and entropies in ``batch.extra`` when ``shaping.needs_logp``/``needs_entropy``) and then
calls ``score``. With several processes every rank scores the whole batch (the weights are
normalised on the global batch) and trains its own rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..algo.tis import truncated_is_weights
from ..types import Batch


@dataclass
class Scored:
    batch: Batch                  # the batch after shaping
    advantages: torch.Tensor      # [N] (float64), or [N, T] from a per-token advantage (GAE)
    keep: torch.Tensor            # [N] bool, rows that are trained
    row_weights: torch.Tensor     # [N] per-row loss weights
    token_weights: torch.Tensor   # [N, T], 0 on padding and on rows not trained
    metrics: dict = field(default_factory=dict)
    returns: torch.Tensor | None = None   # [N, T] the critic's targets (per-token advantages)

    @property
    def row_advantages(self) -> torch.Tensor:
        """One advantage per row [N]: the advantage, or a per-token one's mean over the row's tokens."""
        return row_view(self.advantages, self.batch.completion_mask)


def row_view(adv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """[N] advantages as they are; [N, T] ones -> their mean over each row's completion tokens."""
    if adv.dim() == 1:
        return adv
    m = mask.to(adv.dtype)[:, : adv.shape[1]]
    return (adv * m).sum(1) / m.sum(1).clamp(min=1)


def score(batch: Batch, mask: torch.Tensor, components, max_length: int, labels: list[str] | None = None,
          replayed: torch.Tensor | None = None, old_logp: torch.Tensor | None = None,
          sampler_logp: torch.Tensor | None = None, tis_cap: float = 0.0) -> Scored:
    """Score one step's rows. ``mask`` [N, T] completion mask; ``components``: the run's
    components by section (shaping, advantage, weighting, replay, aggregation); ``labels`` [N]:
    each row's task group label (per-group metrics); ``replayed`` [N] bool: rows from the replay
    buffer; ``old_logp``/``sampler_logp`` [N, T] with ``tis_cap`` > 0: truncated importance
    weights for a sampler that is not the training forward."""
    names = batch.reward_names
    batch = components["shaping"](batch)
    res = components["advantage"](batch)
    keep = res.keep & batch.extra.get("keep", torch.ones_like(res.keep))
    row_w = res.weights * components["weighting"](batch, res)                        # [N]
    rw = components["replay"].replay_weight
    if replayed is not None and rw != 1.0:
        row_w = row_w * torch.where(replayed, rw, 1.0).to(row_w.dtype)
    weights = components["aggregation"](mask.cpu(), keep, max_length) * row_w[:, None]   # [N, T]
    rows_kept = keep if keep.any() else torch.ones_like(keep)
    a = res.advantages[rows_kept]
    if a.dim() == 2:        # per-token advantages: statistics over the completion tokens of the kept rows
        a = a[mask.cpu()[rows_kept][:, : a.shape[1]] > 0]
    m = {"adv/mean": float(a.mean()), "adv/std": float(a.std()) if a.numel() > 1 else 0.0,
         "adv/abs_mean": float(a.abs().mean()), **res.metrics, **_shaped_metrics(batch, names)}
    row_adv = row_view(res.advantages, mask.cpu())                                   # [N]
    if tis_cap > 0 and sampler_logp is not None and old_logp is not None:
        isw = truncated_is_weights(old_logp, sampler_logp.to(old_logp.device), mask.to(old_logp.device), tis_cap)
        weights = weights * isw[:, : weights.shape[1]].cpu()
        m["tis/mean_weight"] = float(isw.sum() / mask.sum().clamp(min=1))
    for label in sorted(set(labels or [])):      # update magnitude per difficulty (DGPO's argument)
        rows = torch.tensor([x == label for x in labels]) & keep
        if rows.any():
            m[f"adv/abs/group/{label}"] = float((row_adv[rows] * row_w[rows]).abs().mean())
    return Scored(batch, res.advantages, keep, row_w, weights, m, res.returns)


def _shaped_metrics(batch: Batch, names) -> dict:
    """Mean of the rewards after shaping and of each component the shaping added."""
    m = {"reward/shaped/mean": float(batch.rewards.float().mean())}
    if batch.reward_components is not None:
        for k, name in enumerate(batch.reward_names):
            if name not in names:
                m[f"reward/{name}/mean"] = float(batch.reward_components[:, k].float().nanmean())
    return m
