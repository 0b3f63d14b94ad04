"""Evaluation sets with group labels for studies (issue: OMEGA-style splits, IneqMath format).

* ``omega_compositional``: OMEGA's compositional generalisation (Sun et al., arXiv 2506.18880):
  train on two skills separately, test on their composition. Skill ``a`` is addition
  (``"3+4="`` -> ``7``), skill ``b`` is a LEGO-style sign chain (``"a=+1;b=-a;?b"`` -> ``-1``,
  arXiv 2206.04301), and the composition is a chain whose values are sums
  (``"a=3+4;b=a+2;?b"`` -> ``9``). Levels: 1 = skill a, 2 = skill b, 3 = composed; group
  labels ``skill=a``, ``skill=b``, ``composed``. Default: train on (1, 2), evaluate on (3,),
  or on (1, 2, 3) to see the single skills beside the composition.
  OMEGA's *explorative* split (train on low difficulty, test on higher) is the ``levels`` /
  ``eval_levels`` pair of every built-in generator (e.g. ``lego`` levels [1,2,3], eval_levels
  [4,5,6] is LEGO length extrapolation); *transformative* is not built.
* ``ineqmath``: IneqMath-format problems (Sheng et al., arXiv 2506.07927) generated from
  inequalities whose answers are known in closed form, scored offline. Two subtasks:
  bound estimation (level 1, group ``bound``): "find the largest constant C such that ...
  for all positive reals", answered as ``C = X`` (a number, checked by the ``number``
  checker on the value after ``=``); relation prediction (level 2, group ``relation``):
  the strongest relation that holds between two expressions for all admissible values,
  chosen among (A) <= (B) >= (C) = (D) < (E) > (F) none of the above (``choice`` checker).
  Our generators: AM-GM in two and three variables, x + k/x, and (a+b)(m/a+n/b) (Cauchy-
  Schwarz), with random coefficients chosen so the answers are integers; relation items
  compare such an expression with a constant at, below or above its minimum, so the answer
  is >= (equality attainable), > (strict) or none (item spaces: 275 bound and 210 relation
  problems, so keep eval_size around 200 to leave training items). ``majority_baseline(items)`` is the
  accuracy of always giving the most common answer, reported beside accuracy as IneqMath does.
  Deviation: IneqMath's problems are human-written olympiad inequalities judged by LLMs; ours
  are templated so that the offline checkers are exact.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from ..registry import register
from ..types import Item
from .base import GeneratedTask, TaskError, check_levels

RELATIONS = "(A) A <= B   (B) A >= B   (C) A = B   (D) A < B   (E) A > B   (F) none of the above"


def majority_baseline(items: list[Item]) -> float:
    """Accuracy of always answering the most common gold answer (per group, like IneqMath)."""
    if not items:
        return 0.0
    hits = 0
    for g in {it.group for it in items}:
        answers = Counter(it.answer for it in items if it.group == g)
        hits += answers.most_common(1)[0][1]
    return hits / len(items)


@register("task", "omega_compositional")
@dataclass(frozen=True)
class OmegaCompositional(GeneratedTask):
    """OMEGA-style compositional split over addition and sign chains (see the module docstring)."""

    levels: tuple[int, ...] = (1, 2)
    eval_levels: tuple[int, ...] = (3,)
    max_value: int = 20
    chain: int = 3

    def __post_init__(self):
        super().__post_init__()
        check_levels("levels", self.levels, 1, 3)
        check_levels("eval_levels", self.eval_levels, 1, 3)
        if self.chain < 2 or self.chain > 20 or self.max_value < 1:
            raise TaskError(f"chain must be in 2..20 and max_value >= 1, got {self.chain}, {self.max_value}")

    def generate(self, rng: random.Random, level: int) -> Item:
        names = rng.sample("abcdefghijklmnopqrstuvwxyz", self.chain)
        if level == 1:
            a, b = rng.randint(0, self.max_value), rng.randint(0, self.max_value)
            return Item(f"{a}+{b}=", str(a + b), "skill=a", "number")
        if level == 2:
            sign = rng.choice([1, -1])
            clauses, value = [f"{names[0]}={'+' if sign > 0 else '-'}1"], sign
            for prev, cur in zip(names, names[1:]):
                s = rng.choice([1, -1])
                value *= s
                clauses.append(f"{cur}={'+' if s > 0 else '-'}{prev}")
            rng.shuffle(clauses)
            return Item(";".join(clauses) + f";?{names[-1]}", f"{value:+d}", "skill=b", "lego")
        a, b = rng.randint(0, self.max_value), rng.randint(0, self.max_value)
        clauses, value = [f"{names[0]}={a}+{b}"], a + b
        for prev, cur in zip(names, names[1:]):
            k = rng.randint(0, self.max_value)
            value += k
            clauses.append(f"{cur}={prev}+{k}")
        rng.shuffle(clauses)
        return Item(";".join(clauses) + f";?{names[-1]}", str(value), "composed", "number")


def _bound(rng: random.Random) -> tuple[str, int]:
    kind = rng.randrange(4)
    if kind == 0:                                     # p a^2 + q b^2 >= 2 sqrt(pq) ab
        p, q = rng.randint(1, 12) ** 2, rng.randint(1, 12) ** 2
        return f"{p}a^2 + {q}b^2 >= C ab", 2 * int(math.isqrt(p * q))
    if kind == 1:                                     # x + k/x >= 2 sqrt(k)
        m = rng.randint(1, 30)
        return f"x + {m * m}/x >= C", 2 * m
    if kind == 2:                                     # (a+b)(m/a + n/b) >= (sqrt m + sqrt n)^2
        s, t = rng.randint(1, 9), rng.randint(1, 9)
        return f"(a + b)({s * s}/a + {t * t}/b) >= C", (s + t) ** 2
    k = rng.randint(1, 20)                            # k(a^3 + b^3 + c^3) >= 3k abc
    return f"{k}(a^3 + b^3 + c^3) >= C abc", 3 * k


@register("task", "ineqmath")
@dataclass(frozen=True)
class IneqMath(GeneratedTask):
    """IneqMath-format bound and relation problems with exact offline answers (see the module docstring)."""

    levels: tuple[int, ...] = (1, 2)
    eval_levels: tuple[int, ...] = (1, 2)

    def __post_init__(self):
        super().__post_init__()
        check_levels("levels", self.levels, 1, 2)
        check_levels("eval_levels", self.eval_levels, 1, 2)

    def generate(self, rng: random.Random, level: int) -> Item:
        if level == 1:
            ineq, c = _bound(rng)
            vars_ = "x" if ineq.startswith("x") else ("a, b, c" if "c^3" in ineq else "a, b")
            q = (f"Find the largest constant C such that {ineq} holds for all positive reals {vars_}. "
                 f"Answer in the form C = X.")
            return Item(q, str(c), "bound", "number")
        m = rng.randint(1, 30)
        k = m * m
        shift = rng.choice([-3, -2, -1, 0, 0, 0, 1, 2, 3])
        const = 2 * m + shift
        # min over x > 0 of x + k/x is 2m (at x = m): const below -> A > B; equal -> A >= B; above -> none
        answer = "E" if shift < 0 else ("B" if shift == 0 else "F")
        q = (f"Let A = x + {k}/x and B = {const}. Which relation holds for all positive reals x? "
             f"{RELATIONS}. Answer with the letter.")
        return Item(q, answer, "relation", "choice")

    def majority_baseline(self, items=None) -> float:
        return majority_baseline(list(items if items is not None else self.eval_items()))
