"""CISPO: clipped importance-sampling-weight policy optimisation (MiniMax-M1, arXiv 2506.13585).

Per-token objectives: ``__call__(logp, old_logp, adv, mask) -> (loss_tok [N, T], metrics
{name: [N, T]})``, loss = negated objective.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...protocols import Objective
from ...registry import register


@register("objective", "cispo")
@dataclass(frozen=True)
class CISPO(Objective):
    """CISPO (MiniMax-M1, arXiv 2506.13585, §3.1: the CISPO objective and its clipped IS weight):

        r_{i,t} = pi(o_{i,t}) / pi_old(o_{i,t}),   r^_{i,t} = clip(r_{i,t}, 1 - eps_low, 1 + eps_high)
        loss_{i,t} = -sg(r^_{i,t}) * A_i * logp_{i,t}

    REINFORCE with a clipped, stop-gradient importance weight: every token keeps the gradient
    -r^ * A * grad logp (PPO's clip zeroes the gradient of clipped tokens; here only the
    weight is capped). The paper normalises by the step's token count: pair it with
    ``token_mean`` (the recipe does; TRL's ``cispo`` loss does too).

    Defaults and deviations:
    - ``eps_low`` None: no lower bound, as the paper (it sets eps_low^IS large) and TRL
      (``clamp(ratio, max=epsilon_high)``). ``eps_high`` 4.0: the cap 1 + 4 = 5, TRL's
      recommended ``epsilon_high=5.0`` (ScaleRL, arXiv 2510.13786), which TRL uses as the
      absolute cap. verl's ``cispo`` clips at [1 - clip_ratio_low, 1 + clip_ratio_high], both
      0.2 by default; ``eps_low=0.2, eps_high=0.2`` reproduces it.
    - The loss value is -r^ * A * logp, as in verl and TRL (not a ratio-valued surrogate);
      only its gradient matters. verl also clamps log r to +-20 before exp; r is detached and
      capped above, so the clamp changes nothing here except for r < e^-20 with a lower bound.
    - The paper's token mask M_{i,t} (its unified form) is not offered.
    """

    zero_advantage_no_gradient: ClassVar[bool] = True   # A = 0: loss 0 and gradient 0

    eps_low: float | None = None
    eps_high: float = 4.0

    def __post_init__(self):
        if self.eps_low is not None and not 0.0 <= self.eps_low <= 1.0:
            raise ValueError(f"eps_low must be in [0, 1] or null (no lower bound), got {self.eps_low}")
        if self.eps_high < 0:
            raise ValueError(f"eps_high must be >= 0, got {self.eps_high}")

    def __call__(self, logp, old_logp, adv, mask):
        a = adv.to(logp.dtype)[:, None]                                     # [N, 1]
        ratio = torch.exp(logp.detach() - old_logp)                          # [N, T], no gradient
        low = None if self.eps_low is None else 1.0 - self.eps_low
        weight = torch.clamp(ratio, min=low, max=1.0 + self.eps_high)
        loss = -weight * a * logp
        clipped = (weight != ratio).to(logp.dtype)
        return loss, {"clip/frac": clipped, "ratio/mean": ratio}
