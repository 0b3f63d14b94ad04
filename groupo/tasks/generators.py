"""Procedural tasks written for this project (TASKS.md §0 (a)/(b), §4.2, §5.1).

* ``arithmetic``: chain sums ``"12+7+40="`` -> ``"59"`` (the idea of reasoning-gym's
  ``chain_sum``, TASKS.md §0; our own compact surface form for tiny models).
* ``lego``: LEGO chains over Z2 = {+1, -1} (Zhang et al. 2022, "Unveiling Transformers
  with LEGO", arXiv 2206.04301; TASKS.md §4.2): a root clause ``x=+1`` and clauses
  ``y=+x`` / ``y=-x``, shuffled. Deviations: a compact ``;``-separated character-level
  form and a single queried variable (RLVR use, TASKS.md §4.2 "For RLVR with an LM")
  instead of the paper's per-variable classification.
* ``countdown``: TinyZero's Countdown (Jiayi-Pan/TinyZero, TASKS.md §5.1), generated
  offline: a random expression over the numbers with + - * / evaluated with exact
  ``Fraction`` arithmetic; kept when it is a positive integer <= ``max_target``, so
  every item is solvable (using every number once, as TinyZero's reward demands).

Countdown gold format: ``"TARGET|N1,N2,..."`` (e.g. ``"22|3,5,7"``), numbers in the
order shown in the question; ``groupo.rewards.checkers.countdown`` parses it. One
witness expression is kept in ``Item.meta["solution"]``.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Literal
from fractions import Fraction

from ..registry import register
from ..types import Item
from .base import GeneratedTask, TaskError, check_levels


@register("task", "arithmetic")
@dataclass(frozen=True)
class Arithmetic(GeneratedTask):
    """Chain sums of ``level`` terms, each in 0..max_value; group ``terms=N``."""

    levels: tuple[int, ...] = (2, 3)
    eval_levels: tuple[int, ...] = (2, 3)
    max_value: int = 99

    def __post_init__(self):
        super().__post_init__()
        check_levels("levels", self.levels, 2)
        check_levels("eval_levels", self.eval_levels, 2)
        if isinstance(self.max_value, bool) or not isinstance(self.max_value, int) or self.max_value < 1:
            raise TaskError(f"max_value must be an integer >= 1, got {self.max_value!r}")

    def generate(self, rng: random.Random, level: int) -> Item:
        terms = [rng.randint(0, self.max_value) for _ in range(level)]
        return Item("+".join(map(str, terms)) + "=", str(sum(terms)), f"terms={level}", "number")

    def describe(self) -> str:
        return (f"arithmetic: chain sums of {_levels(self.levels)} terms in 0..{self.max_value} "
                f"(eval: {_levels(self.eval_levels)} terms, {self.eval_size} items, seed {self.seed})")


@register("task", "lego")
@dataclass(frozen=True)
class Lego(GeneratedTask):
    """LEGO chains of ``level`` variables (arXiv 2206.04301); group ``n=N``.

    Surface form: ``"b=-a;a=+1;c=+b;?c"``, answer ``"+1"`` or ``"-1"``. ``query="last"``
    asks for the end of the chain (n-1 hops, the hardest variable); ``"random"`` any.
    ``distractors`` adds that many independent chains of the same length, their clauses
    shuffled in with the queried chain (the paper's multi-chain variant). With one chain and
    ``query="last"`` the answer is the parity of all minus signs in the question, a shortcut
    that distractor chains remove (docs/demo.md).
    """

    levels: tuple[int, ...] = (2, 3, 4, 5)
    eval_levels: tuple[int, ...] = (4, 5)
    query: Literal["last", "random"] = "last"
    distractors: int = 0

    def __post_init__(self):
        super().__post_init__()
        check_levels("levels", self.levels, 1, 26)
        check_levels("eval_levels", self.eval_levels, 1, 26)
        if self.distractors < 0 or (self.distractors + 1) * max(self.levels + self.eval_levels) > 26:
            raise TaskError(f"distractors={self.distractors}: all chains together need at most 26 variables")

    def generate(self, rng: random.Random, level: int) -> Item:
        pool = rng.sample(string.ascii_lowercase, level * (1 + self.distractors))
        clauses: list[str] = []
        for c in range(1 + self.distractors):  # chain 0 is the queried one
            names = pool[c * level:(c + 1) * level]  # chain order
            vals = [rng.choice((1, -1))]
            clauses.append(f"{names[0]}={'+1' if vals[0] > 0 else '-1'}")
            for i in range(1, level):
                sign = rng.choice((1, -1))
                vals.append(sign * vals[-1])
                clauses.append(f"{names[i]}={'+' if sign > 0 else '-'}{names[i - 1]}")
            if c == 0:
                names0, values = names, vals
        names = names0
        rng.shuffle(clauses)
        q = level - 1 if self.query == "last" else rng.randrange(level)
        question = ";".join(clauses) + ";?" + names[q]
        return Item(question, "+1" if values[q] > 0 else "-1", f"n={level}", "lego")

    def describe(self) -> str:
        return (f"lego: Z2 chains of {_levels(self.levels)} variables, query {self.query} "
                f"(eval: {_levels(self.eval_levels)}, {self.eval_size} items, seed {self.seed})")


@register("task", "countdown")
@dataclass(frozen=True)
class Countdown(GeneratedTask):
    """Countdown with ``level`` numbers in 1..max_number and a target in 1..max_target;
    group ``nums=N``; gold ``"TARGET|N1,N2,..."``."""

    levels: tuple[int, ...] = (3,)
    eval_levels: tuple[int, ...] = (3,)
    max_number: int = 20
    max_target: int = 100

    def __post_init__(self):
        super().__post_init__()
        check_levels("levels", self.levels, 2, 8)
        check_levels("eval_levels", self.eval_levels, 2, 8)
        for name in ("max_number", "max_target"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TaskError(f"{name} must be an integer >= 1, got {v!r}")

    def generate(self, rng: random.Random, level: int) -> Item:
        for _ in range(1000):
            nums = [rng.randint(1, self.max_number) for _ in range(level)]
            for _ in range(20):
                found = _random_expression(rng, nums)
                if found is None:
                    continue
                value, expr = found
                if value.denominator == 1 and 1 <= value <= self.max_target:
                    target = int(value)
                    question = (f"Using {' '.join(map(str, nums))} make {target} "
                                f"with + - * / ( ), each number once.")
                    gold = f"{target}|{','.join(map(str, nums))}"
                    return Item(question, gold, f"nums={level}", "countdown", {"solution": expr})
        raise TaskError("countdown: could not generate a solvable item (max_target too small?)")

    def describe(self) -> str:
        return (f"countdown: {_levels(self.levels)} numbers in 1..{self.max_number}, target <= "
                f"{self.max_target} (eval: {_levels(self.eval_levels)}, {self.eval_size} items, seed {self.seed})")


_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _random_expression(rng: random.Random, nums: list[int]) -> tuple[Fraction, str] | None:
    """Combine the numbers pairwise at random into one expression (a random binary
    tree), with exact arithmetic. Returns (value, text) or None on division by zero.
    Parentheses are added only where precedence or (left-)associativity needs them."""
    nodes = [(Fraction(n), str(n), 3) for n in nums]  # (value, text, precedence)
    while len(nodes) > 1:
        i, j = rng.sample(range(len(nodes)), 2)
        (a, ta, pa), (b, tb, pb) = nodes[i], nodes[j]
        op = rng.choice("+-*/")
        if op == "/" and b == 0:
            return None
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else a}[op]
        p = _PREC[op]
        left = f"({ta})" if pa < p else ta
        right = f"({tb})" if pb < p or (pb == p and op in "-/") else tb
        nodes = [n for k, n in enumerate(nodes) if k not in (i, j)] + [(value, f"{left}{op}{right}", p)]
    return nodes[0][0], nodes[0][1]


def _levels(levels) -> str:
    return ",".join(map(str, levels))
