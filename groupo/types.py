"""Core data types: a task ``Item`` and the per-step ``Batch`` with ragged groups.

Shapes: N = rows (completions) in the step, T = max completion length, K = reward
components. Groups are an index tensor (``group[i]`` = id of the prompt of row i),
never a ``view(-1, G)``, so groups may have unequal sizes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Item:
    """One task item (a prompt with its gold answer).

    question: the plain question text (a template turns it into the model prompt).
    answer:   the gold answer as a string (checked by ``kind``).
    group:    a label used by evaluation to report per-group accuracy (e.g. "n=4").
    kind:     the checker for ``groupo.verify``: number, math, choice, countdown, lego, exact,
              reasoning_gym (scored from ``meta``, groupo.tasks.reasoning_gym).
    meta:     dataset columns, passed to user reward functions as keyword arguments.
    messages: a conversational prompt (TRL's format): ({"role": ..., "content": ...}, ...),
              rendered with the tokenizer's chat template; ``question`` is then its text.
    """

    question: str
    answer: str
    group: str = "all"
    kind: str = "exact"
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    messages: tuple = field(default=(), compare=False, hash=False)


@dataclass
class Batch:
    """Everything the pure-math components of one step may read.

    Only ``rewards`` and ``group`` are required; the machinery fills the rest.
    """

    rewards: torch.Tensor                      # [N] combined scalar reward (weighted sum of components)
    group: torch.Tensor                        # [N] long, group id of each row (ragged allowed)
    reward_components: torch.Tensor | None = None  # [N, K] per-component rewards (NaN = skipped)
    reward_weights: torch.Tensor | None = None     # [K]
    reward_names: tuple[str, ...] = ()
    correct: torch.Tensor | None = None        # [N] float 0/1, task correctness
    lengths: torch.Tensor | None = None        # [N] long, completion lengths in tokens
    truncated: torch.Tensor | None = None      # [N] bool, no EOS before the length limit
    max_length: int | None = None              # L_max used for generation
    completion_mask: torch.Tensor | None = None  # [N, T] float, 1 on real completion tokens
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.rewards.shape[0])

    def select(self, rows: torch.Tensor) -> "Batch":
        """The sub-batch of the given row indices (a long tensor), tensors sliced."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == self.n and f.name != "reward_weights":
                v = v[rows]
            out[f.name] = v
        return Batch(**out)


@dataclass
class AdvantageResult:
    """What every advantage component returns (the public ``compute_advantages`` result)."""

    advantages: torch.Tensor   # [N] float ([N, T] for a per-token advantage: GAE)
    keep: torch.Tensor         # [N] bool, False for rows that must not be trained
    weights: torch.Tensor      # [N] float, per-row (per-question) weights, 1.0 when unused
    metrics: dict[str, float] = field(default_factory=dict)
    returns: torch.Tensor | None = None   # [N, T] value targets of a critic (per-token advantages: GAE)
