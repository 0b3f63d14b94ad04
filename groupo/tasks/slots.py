"""``SlottedTask``: a ``GeneratedTask`` whose draws are spread over *slots*, not levels.

A slot is any hashable tuple, e.g. ``("relation", 2, "B")`` or ``("skill=a", 3)``.
``generate(rng, slot)`` makes one item for it. Eval items are spread evenly over
``eval_slots()`` and the training pool over ``train_slots()`` with the same
round-robin ``GeneratedTask._spread`` (so any eval prefix is balanced over slots, and a
slot listed twice gets twice the share); ``sample_train`` picks a training slot
uniformly. Eval hygiene is the base protocol's: eval items are unique by normalised
question and no training draw has an eval question (TASKS.md §1.5).

Used by tasks whose eval distribution differs from training by more than a level
number: ``omega_chains`` (train on skills, test on their composition) and
``ineqmath_latex`` (subtask x level x relation label, so that classes are balanced).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .base import MAX_TRAIN_TRIES, GeneratedTask, TaskError, normalize_question


@dataclass(frozen=True)
class SlottedTask(GeneratedTask):
    """Subclasses write ``train_slots()``, ``eval_slots()`` and ``generate(rng, slot)``."""

    def train_slots(self) -> list[tuple]:  # pragma: no cover - abstract
        raise NotImplementedError

    def eval_slots(self) -> list[tuple]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _name(self) -> str:
        return getattr(self, "component_name", type(self).__name__)

    def _build_eval(self):
        out = self._spread(random.Random(f"groupo-eval-{self._name()}-{self.seed}"), self.eval_slots(),
                           self.eval_size, set())
        if self.eval_size > 0 and not out:
            raise TaskError(f"{self._name()}: could not generate any eval item")
        return out

    def _build_pool(self, size: int, seed: int):
        return self._spread(random.Random(f"groupo-pool-{self._name()}-{self.seed}-{seed}"), self.train_slots(),
                            size, set(self.eval_keys))

    def sample_train(self, rng: random.Random):
        keys, slots = self.eval_keys, self.train_slots()
        for _ in range(MAX_TRAIN_TRIES):
            item = self.generate(rng, rng.choice(slots))
            if normalize_question(item.question) not in keys:
                return item
        raise TaskError(f"{self._name()}: no training item outside the eval set after {MAX_TRAIN_TRIES} tries "
                        f"(the training item space is too small; lower eval_size or change levels)")
