"""``chains``: resolve a chain of variable updates step by step (the proving ground's task).

    question  "c=b-3;a=14;b=a+7;?c"          (clauses shuffled: the order must be found)
    trace     "a=14;b=14+7=21;c=21-3=18;"     (Item.meta["trace"]: one resolved step per clause)
    answer    "18"

Level L = number of update clauses after the root assignment (so L additions/subtractions of a
digit 1-9, every intermediate value in 0..99). The answer is the queried variable's value: two
digits, so a guess is right about once in a hundred (pass@k stays meaningful at large k), and the
trace grows with L (answers vary in length with difficulty). ``distractors`` adds independent
chains whose clauses are shuffled in (they must be ignored). Like LEGO (arXiv 2206.04301), the
difficulty is the number of hops; unlike LEGO's ±1 signs, a two-digit value has no parity
shortcut. Gold answers are checked with the ``number`` checker; the trace is for supervised
pre-training (``warmstart.target: "{trace}<answer>{answer}</answer>"``) and never for rewards.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass

from ..registry import register
from ..types import Item
from .base import GeneratedTask, TaskError, check_levels


@register("task", "chains")
@dataclass(frozen=True)
class Chains(GeneratedTask):
    """Step-by-step chains of L digit updates over values 0..99; group ``L=N``; ``meta["trace"]``."""

    levels: tuple[int, ...] = (1, 2, 3, 4)
    eval_levels: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    distractors: int = 0         # independent chains shuffled in (ignored by the answer)
    shuffle: bool = True         # clauses in random order (False: in resolution order)

    def __post_init__(self):
        super().__post_init__()
        check_levels("levels", self.levels, 1, 12)
        check_levels("eval_levels", self.eval_levels, 1, 12)
        if self.distractors < 0 or (self.distractors + 1) * (max(self.levels + self.eval_levels) + 1) > 26:
            raise TaskError(f"distractors={self.distractors}: all chains together need at most 26 variables")

    @staticmethod
    def chain(rng: random.Random, names: list[str]) -> tuple[list[str], list[str], int]:
        """(clauses, resolved steps, final value) of one chain over ``names`` (root first)."""
        value = rng.randint(0, 99)
        clauses, steps = [f"{names[0]}={value}"], [f"{names[0]}={value}"]
        for prev, name in zip(names, names[1:]):
            d = rng.randint(1, 9)
            ops = [op for op in "+-" if 0 <= (value + d if op == "+" else value - d) <= 99]
            op = rng.choice(ops)
            new = value + d if op == "+" else value - d
            clauses.append(f"{name}={prev}{op}{d}")
            steps.append(f"{name}={value}{op}{d}={new}")
            value = new
        return clauses, steps, value

    def generate(self, rng: random.Random, level: int) -> Item:
        n = level + 1
        pool = rng.sample(string.ascii_lowercase, n * (1 + self.distractors))
        clauses, trace, answer = [], "", 0
        for c in range(1 + self.distractors):         # chain 0 is the queried one
            cl, steps, value = self.chain(rng, pool[c * n:(c + 1) * n])
            clauses += cl
            if c == 0:
                trace, answer, target = ";".join(steps) + ";", value, pool[n - 1]
        if self.shuffle:
            rng.shuffle(clauses)
        question = ";".join(clauses) + f";?{target}"
        return Item(question, str(answer), f"L={level}", "number", {"trace": trace})

    def describe(self) -> str:
        return (f"chains: {', '.join(map(str, self.levels))} steps (eval {', '.join(map(str, self.eval_levels))}), "
                f"{self.distractors} distractor chains, seed {self.seed}")
