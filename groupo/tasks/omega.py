"""OMEGA-style generalisation splits of the built-in generators.

OMEGA (Sun et al. 2025, "OMEGA: Can LLMs Reason Outside the Box in Math?", arXiv
2506.18880; TASKS.md §4.1) tests three kinds of out-of-distribution generalisation:

* **explorative**: train on low difficulty levels of a template, test on higher ones
  (OMEGA's ``test_out``). The existing generators already do this with ``levels``
  (training) and ``eval_levels`` (evaluation); no extra task is needed::

      task: {name: lego, levels: [1, 2, 3], eval_levels: [4, 5, 6]}    # LEGO length extrapolation
      task: {name: arithmetic, levels: [2, 3], eval_levels: [4, 5]}    # longer chain sums

  Group labels are the eval lengths (``n=4``.. / ``terms=4``..), so per-group accuracy
  is accuracy per extrapolation distance. LEGO's own length-extrapolation setup
  (Zhang et al. 2022, arXiv 2206.04301, TASKS.md §4.2) supervises a prefix of one long
  chain; ours trains on whole short chains, the RLVR analogue.
* **compositional**: train on two skills separately, test on problems that need both
  (OMEGA's ``comp_*`` categories). ``omega_chains`` below.
* **transformative** (a qualitatively new solution strategy) is not generated here.

``omega_chains``: skill A is arithmetic expression evaluation (``"(3+4)*2-5="``),
skill B is LEGO-style variable chains over the integers (``"a=7;c=b;b=-a;?c"``, clauses
shuffled), and their composition is a chain whose clauses do the arithmetic
(``"a=3+4;c=b-5;b=a*2;?c"`` -> 9). A level is the number of operations (A), of
variables (B) or of both (composed: the root clause and every later clause apply one
binary operation, so a composed item of level n does the arithmetic of a skill-A item
of level n along the chain of a skill-B item of level n). Each step is ``prev op k``
or ``k op prev`` with k in 1..max_value and op in + - *, drawn by the same process for
A and for the composition. Answers are integers, checked with ``number``.

Training items come from the two skills only (groups ``skill=a`` and ``skill=b``);
eval items are the composition (group ``composed``) and, with ``eval_skills``, the
two skills too (labelled, and deduplicated against training as usual). Composed
questions can never be drawn for training: their surface form differs from both skills.
Deviation from OMEGA: its compositional skills are competition-math families (e.g. GCD
of polynomials); ours are the project's tiny-model skills.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass

from ..registry import register
from ..types import Item
from .base import TaskError, check_levels
from .slots import SlottedTask

_PREC = {"+": 1, "-": 1, "*": 2}
MAX_ABS = 1000  # multiplication is skipped once |value| exceeds this, so answers stay short


def _steps(rng: random.Random, n: int, max_value: int) -> tuple[int, list[tuple[str, int, bool]]]:
    """A start value and ``n - 1`` further steps (op, k, k_on_left) after the first operation.

    The first operation combines two fresh numbers; each later one combines the running
    value with a fresh k. Returns (first number, [(op, k, k_left), ...]) with n steps in all.
    """
    start = rng.randint(1, max_value)
    steps, value = [], start
    for _ in range(n):
        op = rng.choice("+-*" if abs(value) <= MAX_ABS else "+-")
        k, k_left = rng.randint(1, max_value), rng.random() < 0.5
        steps.append((op, k, k_left))
        value = _apply(value, op, k, k_left)
    return start, steps


def _apply(value: int, op: str, k: int, k_left: bool) -> int:
    a, b = (k, value) if k_left else (value, k)
    return a + b if op == "+" else a - b if op == "-" else a * b


def _combine(left: tuple[str, int], op: str, right: tuple[str, int]) -> tuple[str, int]:
    """Text of ``left op right`` with the minimal parentheses (texts carry precedence)."""
    (lt, lp), (rt, rp), p = left, right, _PREC[op]
    lt = f"({lt})" if lp < p else lt
    rt = f"({rt})" if rp < p or (rp == p and op == "-") else rt
    return f"{lt}{op}{rt}", p


@register("task", "omega_chains")
@dataclass(frozen=True)
class OmegaCompositional(SlottedTask):
    """OMEGA compositional split (arXiv 2506.18880): train on arithmetic (``skill=a``) and
    variable chains (``skill=b``) separately, evaluate on chains whose clauses do
    arithmetic (``composed``); answers checked with ``number``.

    ``levels``: training levels of both skills; ``eval_levels``: levels of the eval items;
    ``eval_skills``: also evaluate the single skills (labelled); ``distractors``: independent
    chains of the same form shuffled into chain questions (B and composed), as in ``lego``.
    """

    levels: tuple[int, ...] = (2, 3)
    eval_levels: tuple[int, ...] = (2, 3)
    max_value: int = 9
    eval_skills: bool = True
    distractors: int = 0

    def __post_init__(self):
        super().__post_init__()
        check_levels("levels", self.levels, 1, 12)
        check_levels("eval_levels", self.eval_levels, 1, 12)
        if isinstance(self.max_value, bool) or not isinstance(self.max_value, int) or self.max_value < 2:
            raise TaskError(f"max_value must be an integer >= 2, got {self.max_value!r}")
        if self.distractors < 0 or (self.distractors + 1) * max(self.levels + self.eval_levels) > 26:
            raise TaskError(f"distractors={self.distractors}: all chains together need at most 26 variables")

    def train_slots(self) -> list[tuple]:
        return [(skill, lv) for lv in self.levels for skill in ("skill=a", "skill=b")]

    def eval_slots(self) -> list[tuple]:
        skills = ("composed", "skill=a", "skill=b") if self.eval_skills else ("composed",)
        return [(skill, lv) for lv in self.eval_levels for skill in skills]

    def generate(self, rng: random.Random, slot) -> Item:
        kind, level = slot
        if kind == "skill=a":
            start, steps = _steps(rng, level, self.max_value)
            text, value = (str(start), 3), start
            for op, k, k_left in steps:
                text = _combine((str(k), 3), op, text) if k_left else _combine(text, op, (str(k), 3))
                value = _apply(value, op, k, k_left)
            return Item(text[0] + "=", str(value), kind, "number", {"level": level})
        names = rng.sample(string.ascii_lowercase, level * (1 + self.distractors))
        clauses, answer = [], None
        for c in range(1 + self.distractors):  # chain 0 is the queried one
            chain = names[c * level:(c + 1) * level]
            value, chain_clauses = self._chain(rng, chain, composed=kind == "composed")
            clauses += chain_clauses
            if c == 0:
                answer, query = value, chain[-1]
        rng.shuffle(clauses)
        return Item(";".join(clauses) + f";?{query}", str(answer), kind, "number", {"level": level})

    def _chain(self, rng: random.Random, chain: list[str], composed: bool) -> tuple[int, list[str]]:
        """(value of the last variable, clauses in chain order) of one chain."""
        if not composed:  # skill B: a number, then copies and negations
            value = rng.randint(1, self.max_value)
            clauses = [f"{chain[0]}={value}"]
            for prev, name in zip(chain, chain[1:]):
                neg = rng.random() < 0.5
                value = -value if neg else value
                clauses.append(f"{name}={'-' if neg else ''}{prev}")
            return value, clauses
        start, steps = _steps(rng, len(chain), self.max_value)
        value, clauses = start, []
        for i, (op, k, k_left) in enumerate(steps):
            prev = str(start) if i == 0 else chain[i - 1]
            rhs = f"{k}{op}{prev}" if k_left else f"{prev}{op}{k}"
            clauses.append(f"{chain[i]}={rhs}")
            value = _apply(value, op, k, k_left)
        return value, clauses

    def describe(self) -> str:
        lv = ",".join(map(str, self.levels))
        ev = ",".join(map(str, self.eval_levels))
        return (f"omega_chains: train skill=a (arithmetic) and skill=b (variable chains) at levels {lv}; "
                f"eval composed chains{' + both skills' if self.eval_skills else ''} at levels {ev} "
                f"({self.eval_size} items, seed {self.seed})")
