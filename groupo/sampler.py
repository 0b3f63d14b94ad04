"""Prompt samplers (axis ``sampler``): which task items each step trains on.

A sampler is a frozen dataclass (its hyperparameters); its mutable state is a plain
dict the loop owns and saves in checkpoints, so a resumed run draws the same prompts.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .registry import register
from .types import Item


@register("sampler", "uniform")
@dataclass(frozen=True)
class Uniform:
    """Draw each prompt independently from the task's training distribution."""

    def init_state(self) -> dict:
        return {}

    def __call__(self, task, rng: random.Random, n: int, state: dict) -> list[Item]:
        return [task.sample_train(rng) for _ in range(n)]

    def update(self, state: dict, items: list[Item], correct: list[list[float]]) -> None:
        """Observe the step's results: every prompt generated (all refill rounds) and the
        0/1 correctness of each of its completions. Stateful samplers update ``state``
        (a JSON-serialisable dict saved in checkpoints)."""
