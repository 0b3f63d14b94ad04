"""MaxMin-RLHF as an advantage component (axis ``advantage``, name ``maxmin``).

Chakraborty et al., "MaxMin-RLHF: Alignment with Diverse Human Preferences",
arXiv 2402.08925 (ICML 2024); ALGORITHMS.md §12.

What is from the paper:
* U user groups, each with its own reward r_u; the policy objective is egalitarian,
  max_pi min_u F_u(pi) with F_u(pi) = E[r_u] - beta KL(pi || pi_ref).
* Each iteration estimates F_u on the current rollouts, picks u_min = argmin_u F_u and
  takes one policy step on r_{u_min} only. The KL term is shared by all u, so the argmin
  of the batch-mean reward suffices (§12 b).

What is our design ([INFERRED] in §12, or our choice):
* The "user groups" are the batch's reward components (``batch.reward_components``
  [N, K], labelled by ``batch.reward_names``); ``groups`` picks labels, empty = all.
  The paper's EM over annotators that learns the U reward models is not here: the
  reward functions are given.
* GRPO transfer [INFERRED]: the step's advantage is the GRPO group z-score
  A_i = (r_i - mean_g r) / (std_g r + eps) (unbiased std, eps 1e-4 as TRL) of the
  worst-off group's reward ("hard" mode).
* "soft" mode [INFERRED, a DRO relaxation the paper relates to]: the signal is
  sum_u w_u r_u with w = softmax(-mean_u / tau); tau -> 0 recovers "hard".
* Batch means ignore NaN (a component that returned None for a row); the signal treats
  NaN as 0 (GDPO/TRL convention). A component that is NaN on every row has mean +inf
  for the argmin (it cannot be the worst-off) and weight 0 in soft mode.
* Ties in the argmin pick the lowest index (§12 d). Rewards are not re-scaled: §12 (c)
  warns that the argmin needs scale-calibrated rewards; calibrate them in the reward
  functions (or with their weights, see ``use_weights``).
* ``use_weights``: multiply each component by its ``reward_weights`` entry before
  comparing (off by default: a group's utility is its own reward).
* All-equal groups of the signal (and size-1 groups, unless ``singleton_raw``) get
  A = 0 exactly.
* Without ``reward_components`` the scalar ``rewards`` is the only group (plain GRPO).

Metrics: ``maxmin/<label>/mean`` for each group, ``maxmin/worst`` (index into the
selected groups, hard or soft), and in soft mode ``maxmin/<label>/weight``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ... import ops
from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch


@register("advantage", "maxmin")
@dataclass(frozen=True)
class MaxMin(Advantage):
    groups: tuple[str, ...] = ()
    mode: Literal["hard", "soft"] = "hard"
    tau: float = 1.0
    eps: float = 1e-4
    use_weights: bool = False
    singleton_raw: bool = False

    def __post_init__(self):
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")
        if len(set(self.groups)) != len(self.groups):
            raise ValueError(f"groups has duplicates: {list(self.groups)}")

    def _select(self, batch: Batch) -> tuple[torch.Tensor, list[str]]:
        """Group rewards R [N, U] (NaN kept) and their labels."""
        if batch.reward_components is None:
            if self.groups:
                raise ValueError("maxmin: groups were named but the batch has no reward_components")
            return batch.rewards.to(torch.float64)[:, None], ["reward"]
        R = batch.reward_components.to(torch.float64)  # [N, K]
        K = R.shape[1]
        labels = list(batch.reward_names) if len(batch.reward_names) == K else [f"r{k}" for k in range(K)]
        if self.use_weights and batch.reward_weights is not None:
            R = R * batch.reward_weights.to(torch.float64)[None, :]
        if not self.groups:
            return R, labels
        cols = []
        for name in self.groups:
            if name not in labels:
                raise ValueError(f"maxmin: unknown reward group {name!r}; rewards: {', '.join(labels)}")
            cols.append(labels.index(name))
        return R[:, cols], list(self.groups)

    def __call__(self, batch: Batch) -> AdvantageResult:
        R, labels = self._select(batch)                       # [N, U]
        valid = ~torch.isnan(R)
        cnt = valid.sum(0)                                     # [U]
        sums = torch.where(valid, R, torch.zeros_like(R)).sum(0)
        means = torch.where(cnt > 0, sums / cnt.clamp(min=1), torch.full_like(sums, float("inf")))  # [U]
        worst = int(torch.nonzero(means == means.min())[0, 0])  # lowest index on ties
        R0 = torch.nan_to_num(R, nan=0.0)
        metrics = {f"maxmin/{lab}/mean": float(m) if cnt[u] > 0 else float("nan")
                   for u, (lab, m) in enumerate(zip(labels, means))}
        metrics["maxmin/worst"] = float(worst)
        if self.mode == "hard":
            signal = R0[:, worst]
        else:
            finite = torch.isfinite(means)
            logits = torch.where(finite, -means / self.tau, torch.full_like(means, float("-inf")))
            w = torch.softmax(logits, 0) if bool(finite.any()) else torch.zeros_like(means)  # [U]
            signal = R0 @ w
            for lab, wu in zip(labels, w):
                metrics[f"maxmin/{lab}/weight"] = float(wu)
        grp = batch.group
        adv = (signal - ops.group_mean(signal, grp)) / (ops.group_std(signal, grp) + self.eps)
        flat = ops.all_equal(signal, grp)
        adv = torch.where(flat, torch.zeros_like(adv), adv)
        single = ops.count(grp) <= 1
        adv = torch.where(single, signal if self.singleton_raw else torch.zeros_like(adv), adv)
        n = adv.shape[0]
        return AdvantageResult(advantages=adv, keep=torch.ones(n, dtype=torch.bool),
                               weights=torch.ones(n, dtype=adv.dtype), metrics=metrics)
