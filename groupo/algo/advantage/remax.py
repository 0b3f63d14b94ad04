"""ReMax: REINFORCE with the reward of the greedy completion as the baseline (arXiv 2310.10505)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...protocols import Advantage
from ...registry import register
from ...types import AdvantageResult, Batch
from .common import float_rewards, result


@register("advantage", "remax")
@dataclass(frozen=True)
class ReMax(Advantage):
    """ReMax (Li et al., "ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method
    for Aligning Large Language Models", arXiv 2310.10505, Algorithm 1: the gradient estimator
    g(θ) = Σ_t ∇_θ log π_θ(a_t | x, a_<t) · (r(x, a_1:T) - r(x, ā_1:T))): REINFORCE whose
    baseline is the reward of the prompt's greedy completion ā (argmax decoding of the current
    policy),

        A_i = r(x, a_i) - r(x, ā(x)),

    the same A_i on every token of row i. It is verl's ``compute_remax_outcome_advantage``
    (returns = reversed cumulative sum of the token rewards, minus the baseline on every
    response token) for an outcome reward on the last token: r - b on every token.

    The loop (``needs_greedy``) generates one greedy completion per prompt with the rollout
    backend, ``generation.max_new_tokens`` and temperature 0 (argmax, drawing nothing from the
    sampling generators, so the sampled rows are those of a run without it), scores it with the
    run's reward functions and passes the weighted total as ``batch.extra["greedy_reward"]``
    (one value per group id); the greedy rows are never trained on.

    Deviations: the paper samples one completion per prompt; any ``generation.group_size`` works
    here (each row gets the same baseline). The shaping step (if any) changes the sampled rows'
    rewards, not the greedy baseline. A greedy reward that is None/NaN from every reward
    function counts as 0 (as the sampled rows' rewards do in the batch). Pair it with the
    ``reinforce`` objective (the paper's on-policy gradient) or ``ppo_clip``; the recipe
    ``remax`` uses ``reinforce``.
    """

    needs_greedy: ClassVar[bool] = True

    def check_config(self, cfg) -> None:
        if cfg.rollout.overlap:
            raise ValueError("advantage.name=remax takes its greedy baseline from the current weights; "
                             "rollout.overlap=true samples the rows with the previous ones: set rollout.overlap=false")

    def __call__(self, batch: Batch) -> AdvantageResult:
        greedy = batch.extra.get("greedy_reward")
        if greedy is None:
            raise ValueError("advantage 'remax' needs batch.extra['greedy_reward'] (one greedy-completion reward "
                             "per group id; the training loop fills it)")
        r = float_rewards(batch)
        base = greedy.to(torch.float64)[batch.group]                   # [N] baseline of each row's prompt
        adv = r - torch.nan_to_num(base)
        return result(adv, metrics={"remax/baseline_mean": float(base.mean()) if base.numel() else 0.0})
