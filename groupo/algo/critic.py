"""Critics (axis ``critic``): the value function of PPO with GAE. ``none`` (the default: no value
model) and ``value`` (a value model trained next to the policy, with the clipped value loss).
The value model itself is machinery (groupo/train/critic.py); the maths here is its loss."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..protocols import Critic
from ..registry import register


@register("critic", "none")
@dataclass(frozen=True)
class NoCritic(Critic):
    """No value model (every group-relative advantage needs none)."""

    def __call__(self, values, old_values, returns):
        raise RuntimeError("critic 'none' has no value loss")


@register("critic", "value")
@dataclass(frozen=True)
class ValueCritic(Critic):
    """A learned value function V(s_t) for GAE (PPO, Schulman et al., arXiv 1707.06347, eq. 9's
    squared-error term L^VF; InstructGPT, arXiv 2203.02155, initialises its value model from a
    pretrained one, its reward model), trained with verl 0.9's clipped value loss (``compute_value_loss``,
    after OpenAI's baselines ppo2):

        V_clip = clip(V, V_old - c, V_old + c),
        loss_t = 0.5 * max((V - R)^2, (V_clip - R)^2),   c = ``cliprange_value``,

    R the GAE returns and V_old the values before the update; averaged over the step's
    completion tokens (verl's critic ``loss_agg_mode=token-mean``; here over the whole step, so
    1 or k micro-batches and 1 or W processes give the same gradient).

    The model (groupo/train/critic.py): a copy of the policy's architecture (its decoder, without
    the output head) with a scalar head nn.Linear(hidden, 1), initialised from ``path`` or else
    from the policy's initial weights (``model.path``; the warm-started weights when there was a
    warm start, as for the KL reference). The head starts at zero (weight and bias): the first
    values are exactly 0, so step 1's advantages are the whitened returns and no random draw is
    spent on it (runs without a critic keep their random streams); the head's gradient is not 0,
    so it leaves zero at the first update and the body trains from the second. Its own AdamW
    (``lr``, ``weight_decay``, betas and eps of ``train``), gradient clipping at ``grad_clip``,
    no learning-rate schedule; the first ``warmup_steps`` steps train only the critic (verl's
    ``critic_warmup``). Checkpoints keep its weights (``critic.safetensors``) and optimizer.

    Deviations from verl: the head is zero-initialised (verl's token-classification head gets
    the model's random init); the loss is averaged over the whole step's tokens (verl: per
    micro-batch, scaled by its share of the mini-batch). ``cliprange_value`` null: the plain
    0.5 (V - R)^2. Not supported with ``train.parallel=fsdp`` (refused).
    """

    active: ClassVar[bool] = True

    path: str = ""                      # value model's initial weights (empty: the policy's initial weights)
    lr: float = 1.0e-5                  # AdamW learning rate of the value model (verl critic.optim.lr)
    cliprange_value: float | None = 0.5   # clip of V around V_old in the value loss (verl); null: unclipped
    warmup_steps: int = 0               # the first N steps train only the critic (verl critic_warmup)
    grad_clip: float = 1.0              # gradient-norm clip of the value model (0 = off)
    weight_decay: float = 0.0           # AdamW decoupled weight decay of the value model

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.cliprange_value is not None and self.cliprange_value <= 0:
            raise ValueError(f"cliprange_value must be > 0 (null: no clip), got {self.cliprange_value}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("warmup_steps, grad_clip and weight_decay must be >= 0")

    def check_config(self, cfg) -> None:
        if cfg.train.parallel == "fsdp":
            raise ValueError("critic.name=value is not supported with train.parallel=fsdp (the value model is not "
                             "sharded); use train.parallel=ddp")
        if not cfg.advantage.needs_values:
            raise ValueError(f"critic.name=value trains a value model that advantage "
                             f"'{cfg.advantage.component_name}' does not use (advantage.name=gae does)")

    def __call__(self, values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor
                 ) -> tuple[torch.Tensor, dict]:
        """Per-token value loss [N, T] and per-token metrics (``critic/clip_frac``: the clipped
        branch is the larger one)."""
        old, ret = old_values.to(values.dtype), returns.to(values.dtype)
        unclipped = (values - ret) ** 2                                          # [N, T]
        if self.cliprange_value is None:
            return 0.5 * unclipped, {"critic/values": values.detach()}
        c = self.cliprange_value
        clipped = (torch.clamp(values, old - c, old + c) - ret) ** 2               # [N, T]
        return 0.5 * torch.maximum(unclipped, clipped), {
            "critic/clip_frac": (clipped > unclipped).to(values.dtype), "critic/values": values.detach()}
