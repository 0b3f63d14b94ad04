"""``ineqmath_latex``: inequality problems in the IneqMath format, with answers known by construction.

IneqMath (Lu et al. 2025, "Solving Inequality Proofs with Large Language Models", arXiv
2506.07927; TASKS.md §4.3) casts inequality proving as two checkable subtasks:

* **bound estimation** (group ``bound``): "Find the largest (smallest) constant $C$ such
  that ... holds for all positive reals", answered ``The answer is $C=X$``.
* **relation prediction** (group ``relation``): fill the blank in ``LHS ( ) RHS`` with
  ``(A) $\\leq$ (B) $\\geq$ (C) $=$ (D) $<$ (E) $>$ (F) None of the above``.

The IneqMath data itself is CC-BY-SA-4.0 and not reachable offline, so this generator
writes its own problems from textbook templates whose exact answer is known:
AM-GM (two and three variables, ``px + q/x``, ``ax^2 + 2am^3/x``), Cauchy-Schwarz
(Engel form ``(a+b)(u^2/a+v^2/b)`` and ``(pa+qb)^2 <= (p^2+q^2)(a^2+b^2)``),
QM-AM / power mean ``n(a^2+...) >= (a+...)^2``, ``ab <= (a+b)^2/4``, Nesbitt, and
polynomial identities. Coefficients are random but chosen so that the extremal
constant is rational (e.g. ``p = g u^2, q = g v^2`` so ``2 sqrt(pq) = 2guv``), and
every item's ``meta`` holds Python forms of its expressions with an equality point
or witnesses, which the tests use to check each answer exactly with Fractions.

Relation labels follow the IneqMath convention: (B) ``>=`` when LHS >= RHS for all
positive reals *and* equality is attained, (E) ``>`` when the inequality is strict
everywhere, (C) ``=`` for identities, (F) when neither side dominates; (A)/(D) are the
swapped forms. Deviation: IneqMath's relation answers are 69% (B) (TASKS.md §4.3), ours
are balanced over the six options, so the majority-class baseline is about 1/6
(``majority_baseline`` reports it; always report accuracy next to it).

Levels: 1 = one variable ``x > 0``, 2 = two variables ``a, b > 0`` (one template with the
constraint ``a + b = s``), 3 = three variables ``a, b, c > 0``.

Answers and checking: relation gold is IneqMath's ``"(B) $\\geq$"`` with kind ``choice``
(the letter is compared). Bound gold is ``"$C = \\frac{3}{2}$"`` with kind ``math``
(math-verify, which accepts ``The answer is $C=1.5$``, ``C = 3/2``, ``\\boxed{\\frac32}``;
TASKS.md §2), or with ``bound_kind: number`` the plain value ``"3/2"`` (checker
``number``: the answer span must hold exactly one number, so ``C = 3/2`` and
``$C=1.5$`` pass but ``C=\\frac{3}{2}`` does not). ``meta["value"]`` is the exact value.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Literal
from fractions import Fraction

from ..registry import register
from ..rewards.checkers import choice_letter, parse_number
from ..types import Item
from .base import TaskError, check_levels, normalize_question
from .slots import SlottedTask

RELATIONS = {"A": "$\\leq$", "B": "$\\geq$", "C": "$=$", "D": "$<$", "E": "$>$", "F": "None of the above"}
OPTIONS = "Options: " + " ".join(f"({k}) {v}" for k, v in RELATIONS.items())
# label -> (base relation of (first side, second side), swap the sides?)
_LABEL = {"A": ("ge", True), "B": ("ge", False), "D": ("gt", True), "E": ("gt", False)}
VARS = {1: ("x",), 2: ("a", "b"), 3: ("a", "b", "c")}
BOUND_FORMAT = " State your answer as 'The answer is $C=X$', where X is your calculated bound."
RELATION_FORMAT = "\nState your answer as 'The answer is (Letter) Symbol', for example 'The answer is (A) $\\leq$'."


# -- rendering --------------------------------------------------------------------------
def poly(*terms: tuple[int, str, str]) -> tuple[str, str]:
    """(LaTeX, Python) of a sum of ``(coef, latex monomial, python monomial)`` terms."""
    tex, py = "", []
    for c, tm, pm in terms:
        if c == 0:
            continue
        body = str(abs(c)) if not tm else (tm if abs(c) == 1 else f"{abs(c)}{tm}")
        tex += ("-" if c < 0 else "") + body if not tex else (" - " if c < 0 else " + ") + body
        py.append(f"({c})" if not pm else f"({c})*{pm}")
    return tex or "0", " + ".join(py) or "0"


def scaled(m: int, tex: str, py: str) -> tuple[str, str]:
    """``m(...)``; ``m = 1`` leaves the expression as it is."""
    return (tex, py) if m == 1 else (f"{m}({tex})", f"{m}*({py})")


def frac_tex(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"\\frac{{{v.numerator}}}{{{v.denominator}}}"


def _sq(v: str) -> tuple[str, str]:
    return f"{v}^2", f"{v}**2"


def _cube(v: str) -> tuple[str, str]:
    return f"{v}^3", f"{v}**3"


def _pt(**kw) -> dict:
    return {k: str(Fraction(v)) for k, v in kw.items()}


def _amgm_pair(rng: random.Random) -> tuple[int, int, int, int, int]:
    """p = g u^2, q = g v^2, so min of p s + q/s (s > 0) is 2 guv at s = v/u."""
    g, u, v = rng.randint(1, 4), rng.randint(1, 6), rng.randint(1, 6)
    return g * u * u, g * v * v, g, u, v


# -- bound templates: each returns (statement, C, direction, python f, vars, point, domain) -----
# C = min of f over the domain (direction "largest": f >= C) or max (direction "smallest": f <= C).
def _b_x_amgm(rng):
    p, q, g, u, v = _amgm_pair(rng)
    lhs, py = poly((p, "x", "x"))[0], f"{p}*x + {q}/x"
    return (f"{lhs} + \\frac{{{q}}}{{x}} \\geq C", Fraction(2 * g * u * v), "largest", py, _pt(x=Fraction(v, u)), {})


def _b_x_cubic(rng):
    a, m = rng.randint(1, 6), rng.randint(1, 5)
    return (f"{poly((a, 'x^2', ''))[0]} + \\frac{{{2 * a * m ** 3}}}{{x}} \\geq C", Fraction(3 * a * m * m),
            "largest", f"{a}*x**2 + {2 * a * m ** 3}/x", _pt(x=m), {})


def _b_x_ratio(rng):
    p, k = rng.randint(1, 9), rng.randint(1, 9)
    num = poly((p, "x", ""))[0]
    return (f"\\frac{{{num}}}{{x^2 + {k * k}}} \\leq C", Fraction(p, 2 * k), "smallest",
            f"{p}*x/(x**2 + {k * k})", _pt(x=k), {})


def _b_ab_amgm(rng):
    p, q, g, u, v = _amgm_pair(rng)
    lhs = poly((p, *_sq("a")), (q, *_sq("b")))
    return (f"{lhs[0]} \\geq C ab", Fraction(2 * g * u * v), "largest", f"({lhs[1]})/(a*b)", _pt(a=v, b=u), {})


def _b_ab_engel(rng):
    u, v = rng.randint(1, 9), rng.randint(1, 9)
    return (f"(a + b)\\left(\\frac{{{u * u}}}{{a}} + \\frac{{{v * v}}}{{b}}\\right) \\geq C", Fraction((u + v) ** 2),
            "largest", f"(a + b)*({u * u}/a + {v * v}/b)", _pt(a=u, b=v), {})


def _b_ab_cs(rng):
    p, q = rng.randint(1, 9), rng.randint(1, 9)
    side = poly((p, "a", "a"), (q, "b", "b"))
    return (f"({side[0]})^2 \\leq C(a^2 + b^2)", Fraction(p * p + q * q), "smallest",
            f"({side[1]})**2/(a**2 + b**2)", _pt(a=p, b=q), {})


def _b_ab_sum(rng):
    u, v, s = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
    stmt = f"\\frac{{{u * u}}}{{a}} + \\frac{{{v * v}}}{{b}} \\geq C \\text{{ whenever }} a + b = {s}"
    return (stmt, Fraction((u + v) ** 2, s), "largest", f"{u * u}/a + {v * v}/({s} - a)",
            _pt(a=Fraction(s * u, u + v)), {"a": s})


def _b_ab_prod(rng):
    k = rng.randint(1, 20)
    return (f"{poly((k, 'ab', ''))[0]} \\leq C(a + b)^2", Fraction(k, 4), "smallest", f"{k}*a*b/(a + b)**2",
            _pt(a=1, b=1), {})


def _b_abc_qm(rng):
    k = rng.randint(1, 30)
    tex, py = scaled(k, "a^2 + b^2 + c^2", "a**2 + b**2 + c**2")
    return (f"{tex} \\geq C(a + b + c)^2", Fraction(k, 3), "largest", f"{py}/(a + b + c)**2", _pt(a=1, b=1, c=1), {})


def _b_abc_amgm(rng):
    k = rng.randint(1, 30)
    tex, py = scaled(k, "a^3 + b^3 + c^3", "a**3 + b**3 + c**3")
    return (f"{tex} \\geq C abc", Fraction(3 * k), "largest", f"({py})/(a*b*c)", _pt(a=1, b=1, c=1), {})


def _b_abc_nesbitt(rng):
    k = rng.randint(1, 30)
    tex = "\\frac{a}{b + c} + \\frac{b}{c + a} + \\frac{c}{a + b}"
    py = "a/(b + c) + b/(c + a) + c/(a + b)"
    tex, py = (tex, py) if k == 1 else (f"{k}\\left({tex}\\right)", f"{k}*({py})")
    return (f"{tex} \\geq C", Fraction(3 * k, 2), "largest", py, _pt(a=1, b=1, c=1), {})


def _b_abc_engel(rng):
    u, v, w = rng.randint(1, 6), rng.randint(1, 6), rng.randint(1, 6)
    tex = f"(a + b + c)\\left(\\frac{{{u * u}}}{{a}} + \\frac{{{v * v}}}{{b}} + \\frac{{{w * w}}}{{c}}\\right)"
    return (f"{tex} \\geq C", Fraction((u + v + w) ** 2), "largest",
            f"(a + b + c)*({u * u}/a + {v * v}/b + {w * w}/c)", _pt(a=u, b=v, c=w), {})


def _b_abc_cs(rng):
    p, q, r = rng.randint(1, 6), rng.randint(1, 6), rng.randint(1, 6)
    side = poly((p, "a", "a"), (q, "b", "b"), (r, "c", "c"))
    return (f"({side[0]})^2 \\leq C(a^2 + b^2 + c^2)", Fraction(p * p + q * q + r * r), "smallest",
            f"({side[1]})**2/(a**2 + b**2 + c**2)", _pt(a=p, b=q, c=r), {})


def _b_abc_sym(rng):
    k = rng.randint(1, 30)
    tex, py = scaled(k, "ab + bc + ca", "a*b + b*c + c*a")
    return (f"{tex} \\leq C(a + b + c)^2", Fraction(k, 3), "smallest", f"{py}/(a + b + c)**2",
            _pt(a=1, b=1, c=1), {})


BOUND_TEMPLATES = {
    1: (_b_x_amgm, _b_x_cubic, _b_x_ratio),
    2: (_b_ab_amgm, _b_ab_engel, _b_ab_cs, _b_ab_sum, _b_ab_prod),
    3: (_b_abc_qm, _b_abc_amgm, _b_abc_nesbitt, _b_abc_engel, _b_abc_cs, _b_abc_sym),
}


# -- relation templates: (first side, second side) with a known base relation -------------
# Each returns (lhs (tex, py), rhs (tex, py), info) where info holds an equality point
# ("ge"), nothing ("gt", "eq") or two witnesses of opposite sign ("none").
def _rel_level1(rng, base):
    if base in ("eq", "gt") and (base == "eq" or rng.random() < 0.5):
        p, q = rng.randint(1, 9), rng.randint(1, 9)
        d = rng.randint(1, p + q - 1) if base == "gt" else 0
        lhs = (f"(x + {p})(x + {q})", f"(x + {p})*(x + {q})")
        return lhs, poly((1, *_sq("x")), (p + q - d, "x", "x"), (p * q, "", "")), {}
    p, q, g, u, v = _amgm_pair(rng)
    best = 2 * g * u * v
    c = {"ge": best, "gt": rng.randint(1, best - 1) if best > 1 else None, "none": best + rng.randint(1, 9)}[base]
    if c is None:
        return None
    lhs = (f"{poly((p, 'x', 'x'))[0]} + \\frac{{{q}}}{{x}}", f"{p}*x + {q}/x")
    info = {"ge": {"point": _pt(x=Fraction(v, u))}, "gt": {},
            "none": {"witness": [_pt(x=Fraction(v, u)), _pt(x=c + 1)]}}[base]
    return lhs, (str(c), str(c)), info


def _rel_level2(rng, base):
    if base in ("eq", "gt") and (base == "eq" or rng.random() < 0.5):
        p, q, r, s = (rng.randint(1, 7) for _ in range(4))
        d = rng.randint(1, p * s + q * r - 1) if base == "gt" else 0
        lhs = (f"({poly((p, 'a', 'a'), (q, 'b', 'b'))[0]})({poly((r, 'a', 'a'), (s, 'b', 'b'))[0]})",
               f"({p}*a + {q}*b)*({r}*a + {s}*b)")
        return lhs, poly((p * r, *_sq("a")), (p * s + q * r - d, "ab", "a*b"), (q * s, *_sq("b"))), {}
    p, q, g, u, v = _amgm_pair(rng)
    best = 2 * g * u * v
    c = {"ge": best, "gt": rng.randint(1, best - 1) if best > 1 else None, "none": best + rng.randint(1, 9)}[base]
    if c is None:
        return None
    info = {"ge": {"point": _pt(a=v, b=u)}, "gt": {},
            "none": {"witness": [_pt(a=v, b=u), _pt(a=c + 1, b=1)]}}[base]
    return poly((p, *_sq("a")), (q, *_sq("b"))), poly((c, "ab", "a*b")), info


def _rel_level3(rng, base):
    m = rng.randint(1, 9)
    fam = rng.choice(("qm", "sym", "cube"))
    if base == "eq":
        if rng.random() < 0.5:
            p, q, r = (rng.randint(1, 6) for _ in range(3))
            lhs = (f"({poly((p, 'a', 'a'), (q, 'b', 'b'), (r, 'c', 'c'))[0]})^2", f"({p}*a + {q}*b + {r}*c)**2")
            return lhs, poly((p * p, *_sq("a")), (q * q, *_sq("b")), (r * r, *_sq("c")), (2 * p * q, "ab", "a*b"),
                             (2 * q * r, "bc", "b*c"), (2 * p * r, "ca", "c*a")), {}
        return (scaled(m, "(a + b + c)(a^2 + b^2 + c^2 - ab - bc - ca)",
                       "(a + b + c)*(a**2 + b**2 + c**2 - a*b - b*c - c*a)"),
                scaled(m, "a^3 + b^3 + c^3 - 3abc", "a**3 + b**3 + c**3 - 3*a*b*c"), {})
    one = _pt(a=1, b=1, c=1)
    if fam == "qm":  # k S2 vs S1^2: k = 3 ">=", k > 3 ">", k = 2 neither
        k = {"ge": 3, "gt": rng.randint(4, 9), "none": 2}[base]
        lhs = scaled(k * m, "a^2 + b^2 + c^2", "a**2 + b**2 + c**2")
        rhs = ("(a + b + c)^2", "(a + b + c)**2") if m == 1 else (f"{m}(a + b + c)^2", f"{m}*(a + b + c)**2")
        tiny = _pt(a=1, b=Fraction(1, 10), c=Fraction(1, 10))
        return lhs, rhs, {"ge": {"point": one}, "gt": {}, "none": {"witness": [one, tiny]}}[base]
    if fam == "sym":  # p S2 vs q (ab+bc+ca): p = q ">=", p > q ">", q in (p, 4p] neither
        q = rng.randint(1, 9)
        p = {"ge": q, "gt": q + rng.randint(1, 9), "none": max(1, q // rng.randint(2, 4))}[base]
        if base == "none" and p == q:
            q = p + 1
        eps = Fraction(1, 10 * q)
        lhs = scaled(p, "a^2 + b^2 + c^2", "a**2 + b**2 + c**2")
        rhs = scaled(q, "ab + bc + ca", "a*b + b*c + c*a")
        return lhs, rhs, {"ge": {"point": one}, "gt": {}, "none": {"witness": [one, _pt(a=1, b=eps, c=eps)]}}[base]
    k = {"ge": 3 * m, "gt": rng.randint(1, 3 * m - 1), "none": 3 * m + rng.randint(1, 9)}[base]  # cube: m S3 vs k abc
    eps = Fraction(1, 10 * k)
    lhs = scaled(m, "a^3 + b^3 + c^3", "a**3 + b**3 + c**3")
    return lhs, poly((k, "abc", "a*b*c")), {"ge": {"point": one}, "gt": {},
                                            "none": {"witness": [one, _pt(a=1, b=eps, c=eps)]}}[base]


RELATION_TEMPLATES = {1: _rel_level1, 2: _rel_level2, 3: _rel_level3}


def _given(level: int) -> str:
    names = VARS[level]
    if len(names) == 1:
        return "Let $x$ be a positive real number."
    return f"Let ${', '.join(names)}$ be positive real numbers."


def answer_key(item: Item) -> str:
    """What a constant answer must match to score on ``item``: the letter of a choice
    item, the exact value of a numeric one, else the whitespace-normalised answer."""
    if item.kind == "choice":
        return choice_letter(item.answer) or normalize_question(item.answer)
    value = item.meta.get("value") if isinstance(item.meta, dict) else None
    v = parse_number(str(value if value is not None else item.answer))
    return f"{item.group}:{v}" if v is not None else normalize_question(item.answer)


def majority_baseline(items) -> float:
    """Accuracy of always giving the most common answer (TASKS.md §1.5, §4.3: report it
    next to accuracy; IneqMath's own relation answers are 69% (B))."""
    items = list(items)
    if not items:
        return 0.0
    return Counter(answer_key(it) for it in items).most_common(1)[0][1] / len(items)


@register("task", "ineqmath_latex")
@dataclass(frozen=True)
class IneqMath(SlottedTask):
    """IneqMath-format inequalities (arXiv 2506.07927) with exact answers: ``bound``
    (largest/smallest C, gold ``$C = X$``) and ``relation`` (choice A-F, balanced).

    ``subtasks``: which of ``bound``, ``relation``; ``levels``/``eval_levels``: 1 (one
    variable), 2 (two), 3 (three); ``bound_kind``: ``math`` or ``number`` checker for
    bounds; ``answer_format``: append IneqMath's "State your answer as ..." sentence.
    """

    levels: tuple[int, ...] = (1, 2, 3)
    eval_levels: tuple[int, ...] = (1, 2, 3)
    subtasks: tuple[str, ...] = ("bound", "relation")
    bound_kind: Literal["math", "number"] = "math"
    answer_format: bool = True

    def __post_init__(self):
        super().__post_init__()
        check_levels("levels", self.levels, 1, 3)
        check_levels("eval_levels", self.eval_levels, 1, 3)
        if not isinstance(self.subtasks, (tuple, list)) or not self.subtasks or \
                any(s not in ("bound", "relation") for s in self.subtasks):
            raise TaskError(f"subtasks must be a non-empty list of 'bound', 'relation'; got {self.subtasks!r}")

    def _slots(self, levels) -> list[tuple]:
        """Per level: six relation slots (one per label) and six bound slots, interleaved."""
        out = []
        for lv in levels:
            for label in RELATIONS:
                out += [(s, lv, label if s == "relation" else None) for s in self.subtasks]
        return out

    def train_slots(self) -> list[tuple]:
        return self._slots(self.levels)

    def eval_slots(self) -> list[tuple]:
        return self._slots(self.eval_levels)

    def majority_baseline(self, items=None) -> float:
        """Accuracy of a constant answer on ``items`` (default: this task's eval items)."""
        return majority_baseline(self.eval_items() if items is None else items)

    def generate(self, rng: random.Random, slot) -> Item:
        subtask, level, label = slot
        return self._bound(rng, level) if subtask == "bound" else self._relation(rng, level, label)

    def _bound(self, rng: random.Random, level: int) -> Item:
        template = rng.choice(BOUND_TEMPLATES[level])
        stmt, value, direction, py, point, domain = template(rng)
        names = ", ".join(VARS[level])
        question = (f"{_given(level)} Find the {direction} constant $C$ such that the following inequality holds "
                    f"for all ${names}$: ${stmt}$." + (BOUND_FORMAT if self.answer_format else ""))
        gold = f"$C = {frac_tex(value)}$" if self.bound_kind == "math" else str(value)
        meta = {"subtask": "bound", "level": level, "template": template.__name__.lstrip("_"), "value": str(value),
                "direction": direction, "py": py, "vars": list(VARS[level]), "point": point, "domain": domain}
        return Item(question, gold, "bound", self.bound_kind, meta)

    def _relation(self, rng: random.Random, level: int, label: str) -> Item:
        base, swap = _LABEL.get(label, ("eq" if label == "C" else "none", rng.random() < 0.5))
        made = None
        while made is None:
            made = RELATION_TEMPLATES[level](rng, base)
        (lt, lp), (rt, rp), info = made
        if swap:
            (lt, lp), (rt, rp) = (rt, rp), (lt, lp)
        question = (f"{_given(level)} Consider the following inequality: ${lt} \\quad (\\quad) \\quad {rt}$. "
                    f"Determine the correct inequality relation to fill in the blank.\n{OPTIONS}"
                    + (RELATION_FORMAT if self.answer_format else ""))
        meta = {"subtask": "relation", "level": level, "label": label, "lhs_py": lp, "rhs_py": rp,
                "vars": list(VARS[level]), **info}
        return Item(question, f"({label}) {RELATIONS[label]}", "relation", "choice", meta)

    def describe(self) -> str:
        return (f"ineqmath_latex: {'+'.join(self.subtasks)} inequalities (levels {','.join(map(str, self.levels))}; "
                f"eval levels {','.join(map(str, self.eval_levels))}, {self.eval_size} items, seed {self.seed})")
