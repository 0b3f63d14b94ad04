"""groupo: group-relative policy optimization (GRPO and its variants) for RL
post-training of language models with verifiable rewards.

Public API (kept stable):
    compute_advantages(rewards, group, method, **params) -> AdvantageResult
    verify(completion, gold, kind) -> float in [0, 1]
"""
from __future__ import annotations

import os


def _wait_policy() -> str | None:
    """OpenMP's wait policy for this process, decided once, before torch loads OpenMP.
    Measured with the bench's 1M-model step at 2 threads on the 2-core machine
    (docs/performance.md): idle machine, default spin 0.23 s vs PASSIVE 0.39-0.43 s;
    one core busy with another process, default spin 0.99-1.40 s vs PASSIVE 0.38 s. So:
    sleep (PASSIVE) when other processes are using more than half a core
    (``cpu_load.busy_cores``: the 1-minute load average, checked by a short measurement
    when it says busy, since it lags a finished job by minutes), else keep OpenMP's default.
    A user's OMP_WAIT_POLICY wins. Only effective when groupo is imported before torch (the
    CLI does)."""
    if "OMP_WAIT_POLICY" in os.environ:
        return None
    from .cpu_load import busy_cores

    return "PASSIVE" if busy_cores() > 0.5 else None


WAIT_POLICY = _wait_policy()
if WAIT_POLICY:
    os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY

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
