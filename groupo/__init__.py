"""groupo: group-relative policy optimization (GRPO and its variants) for RL
post-training of language models with verifiable rewards.

Public API (kept stable):
    compute_advantages(rewards, group, method, **params) -> AdvantageResult
    verify(completion, gold, kind) -> float in [0, 1]
"""
from __future__ import annotations

import os

# OpenMP threads that wait for work sleep instead of spinning: on a shared small machine a
# spinning 2-thread step was measured 1.4x slower than a sleeping one (docs/performance.md).
# Only effective when groupo is imported before torch (the CLI); a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from .types import AdvantageResult, Batch, Item

__version__ = "0.1.0"
__all__ = ["compute_advantages", "verify", "AdvantageResult", "Batch", "Item", "__version__"]


def compute_advantages(rewards, group, method: str = "grpo", **params) -> AdvantageResult:
    """Group-relative advantages for ``rewards`` ([N] or [N, K] for multi-reward methods)
    with ragged group ids ``group`` ([N] long). ``method`` is a registered advantage
    name (``groupo list advantage``); ``params`` are that component's fields."""
    from .registry import build

    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    group = torch.as_tensor(group, dtype=torch.long)
    if rewards.shape[0] != group.shape[0]:
        raise ValueError(f"rewards has {rewards.shape[0]} rows but group has {group.shape[0]}")
    if rewards.dim() == 2:
        batch = Batch(rewards=rewards.sum(1), group=group, reward_components=rewards,
                      reward_weights=torch.ones(rewards.shape[1], dtype=torch.float64))
    else:
        batch = Batch(rewards=rewards, group=group)
    return build("advantage", method, params)(batch)


def verify(completion: str, gold, kind: str) -> float:
    """Check a model completion against the gold answer; see ``groupo.rewards.verify``."""
    from .rewards.verify import verify as _verify

    return _verify(completion, gold, kind)
