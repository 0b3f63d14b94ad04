"""Tests for groupo.eval.metrics: pass@k vs brute force, maj@k cases, summarize."""
from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groupo.eval.metrics import maj_at_k, natural_key, pass_at_k, summarize


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 11))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_pass_at_k_matches_closed_form(data):
    n = data.draw(st.integers(1, 200))
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_pass_at_k_edges_and_stability():
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c < k
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # huge n: binomials overflow floats, the product form does not
    v = pass_at_k(100_000, 1, 1000)
    assert v == pytest.approx(0.01) and math.isfinite(v)
    assert 0.0 <= pass_at_k(10_000, 5000, 5000) <= 1.0
    # monotone in k and c
    assert pass_at_k(20, 4, 2) < pass_at_k(20, 4, 5) < pass_at_k(20, 4, 10)
    assert pass_at_k(20, 2, 5) < pass_at_k(20, 6, 5)


@pytest.mark.parametrize("n,c,k", [(3, 1, 4), (0, 0, 1), (5, 1, 0), (5, 6, 2), (5, -1, 2)])
def test_pass_at_k_invalid(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_maj_at_k_cases():
    # clear majority, correct
    assert maj_at_k(["4", "4", "5"], [True, True, False], 3) == 1.0
    # clear majority, wrong
    assert maj_at_k(["5", "4", "5"], [False, True, False], 3) == 0.0
    # only the first k count: first 2 are a tie -> earliest ("4") wins
    assert maj_at_k(["4", "5", "5", "5"], [True, False, False, False], 2) == 1.0
    assert maj_at_k(["4", "5", "5", "5"], [True, False, False, False], 4) == 0.0
    # tie 2-2: earliest first occurrence wins
    assert maj_at_k(["7", "3", "3", "7"], [False, True, True, False], 4) == 0.0
    assert maj_at_k(["3", "7", "7", "3"], [True, False, False, True], 4) == 1.0
    # None never wins, even when most common
    assert maj_at_k([None, None, "2"], [False, False, True], 3) == 1.0
    assert maj_at_k([None, "9", None, None], [False, False, False, False], 4) == 0.0
    # all None -> 0 (even if flagged correct)
    assert maj_at_k([None, None], [True, True], 2) == 0.0
    # k = 1 is the correctness of the first answered sample
    assert maj_at_k(["1", "2"], [True, False], 1) == 1.0
    assert maj_at_k([None, "2"], [False, True], 1) == 0.0


def test_maj_at_k_invalid():
    with pytest.raises(ValueError):
        maj_at_k(["1"], [True], 2)
    with pytest.raises(ValueError):
        maj_at_k(["1", "2"], [True], 1)
    with pytest.raises(ValueError):
        maj_at_k(["1"], [True], 0)


def test_natural_key():
    names = ["n=10", "n=9", "b", "n=2", "a", "n=100"]
    assert sorted(names, key=natural_key) == ["a", "b", "n=2", "n=9", "n=10", "n=100"]


def _rec(group, correct, answers=None):
    if answers is None:
        answers = ["x" if c else "y" for c in correct]
    return {"group": group, "correct": correct, "answers": answers}


def test_summarize_ragged_groups():
    records = [
        _rec("n=10", [True, True, False, False]),      # acc .5
        _rec("n=9", [True, True, True, True]),         # acc 1
        _rec("n=9", [False, False, False, True]),      # acc .25
        _rec("n=9", [True, False, True, False]),       # acc .5
        _rec("n=2", [False, False, False, False]),     # acc 0
        _rec("n=2", [True, True, True, False]),        # acc .75
    ]
    s = summarize(records, ks=(1, 2, 4, 8))
    assert list(s) == ["n", "accuracy", "pass@k", "maj@k", "per_group", "worst_group", "group_gap"]
    assert s["n"] == 6
    assert s["accuracy"] == pytest.approx((0.5 + 1 + 0.25 + 0.5 + 0 + 0.75) / 6)
    assert list(s["per_group"]) == ["n=2", "n=9", "n=10"]
    assert s["per_group"]["n=2"] == {"n": 2, "accuracy": pytest.approx(0.375)}
    assert s["per_group"]["n=9"] == {"n": 3, "accuracy": pytest.approx(1.75 / 3)}
    assert s["per_group"]["n=10"] == {"n": 1, "accuracy": pytest.approx(0.5)}
    assert s["worst_group"] == {"group": "n=2", "accuracy": pytest.approx(0.375)}
    assert s["group_gap"] == pytest.approx(1.75 / 3 - 0.375)
    # k=8 exceeds the 4 samples per item -> not reported
    assert list(s["pass@k"]) == [1, 2, 4] and list(s["maj@k"]) == [1, 2, 4]
    assert s["pass@k"][1] == pytest.approx(s["accuracy"])
    exp4 = sum(pass_at_k(4, sum(r["correct"]), 4) for r in records) / 6
    assert s["pass@k"][4] == pytest.approx(exp4)  # 5 of 6 items have a correct sample
    assert s["pass@k"][4] == pytest.approx(5 / 6)
    # maj@4: winners "x" for acc>.5, tie->first occurrence
    exp_maj = [maj_at_k(r["answers"], r["correct"], 4) for r in records]
    assert s["maj@k"][4] == pytest.approx(sum(exp_maj) / 6)
    json.dumps(s)  # JSON serializable


def test_summarize_greedy_and_sample_count_mismatch():
    recs = [_rec("a", [True]), _rec("a", [False]), _rec("b", [True]), _rec("b", [True], [None])]
    s = summarize(recs)
    assert s["accuracy"] == pytest.approx(0.75)
    assert s["pass@k"] == {1: pytest.approx(0.75)}
    assert s["maj@k"] == {1: pytest.approx(0.5)}  # the None answer counts as wrong
    assert s["worst_group"]["group"] == "a" and s["group_gap"] == pytest.approx(0.5)
    # ragged sample counts: only ks every item supports
    s2 = summarize([_rec("a", [True, False, True]), _rec("a", [False])], ks=(1, 2))
    assert list(s2["pass@k"]) == [1]


def test_summarize_without_answers_and_ties():
    recs = [{"group": "g2", "correct": [True]}, {"group": "g1", "correct": [True]}]
    s = summarize(recs)
    assert s["maj@k"] == {} and s["pass@k"] == {1: 1.0}
    assert s["worst_group"]["group"] == "g1" and s["group_gap"] == 0.0


def test_summarize_empty_and_invalid():
    s = summarize([])
    assert s["n"] == 0 and s["accuracy"] is None and s["per_group"] == {}
    assert s["worst_group"] == {"group": None, "accuracy": None} and s["group_gap"] is None
    with pytest.raises(ValueError):
        summarize([{"group": "a", "correct": []}])
    with pytest.raises(ValueError):
        summarize([{"group": "a", "correct": [True, False], "answers": ["1"]}])
