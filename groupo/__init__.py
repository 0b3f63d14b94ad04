"""groupo: group-relative policy optimization (GRPO and its variants) for RL post-training of
language models with verifiable rewards.

Public API (kept stable):
    Trainer(recipe=..., model=..., train_dataset=..., reward_funcs=[...], out=..., **overrides).train()
    compute_advantages(rewards, group, method, **params) -> AdvantageResult
    verify(completion, gold, kind) -> float in [0, 1]

Importing groupo has no side effects: it measures nothing, sets no environment variable and
loads no heavy library (torch is imported by the functions that need it). Process settings
(OpenMP's wait policy, threads) are decided by the entry points (``groupo.cli``, ``groupo.runtime``).
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Trainer", "compute_advantages", "verify", "AdvantageResult", "Batch", "Item", "__version__"]


def compute_advantages(rewards, group, method: str = "grpo", **params):
    """Group-relative advantages for ``rewards`` ([N] or [N, K] for multi-reward methods)
    with ragged group ids ``group`` ([N] long). ``method`` is a registered advantage
    name (``groupo list advantage``); ``params`` are that component's fields. Returns an
    ``AdvantageResult`` (``.advantages`` [N], ``.keep`` [N] bool, ``.weights`` [N])."""
    import torch

    from .registry import build
    from .types import Batch

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


def __getattr__(name: str):
    if name in ("AdvantageResult", "Batch", "Item"):     # loaded on first use (they need torch)
        from . import types

        return getattr(types, name)
    if name in ("Trainer", "TrainResult"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'groupo' has no attribute {name!r}")
