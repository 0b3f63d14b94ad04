"""Checker fuzz campaign (docs/reliability.md): hostile and malformed completions never
crash, never execute, stay within a time bound, never score near misses, and the gold still
scores 1; a hung math worker is killed, replaced, scored 0 and counted.

The default run tries 400 inputs per checker (150 for math) plus hypothesis properties and
regression tests (about 30 s on 2 shared cores); `make test-slow` runs 10,000 per checker."""
from __future__ import annotations

import os
import random
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groupo.registry import build
from groupo.rewards import checkers, mathpool
from fuzz.fuzzing import (HANG, KINDS, MINUS, bomb, campaign, canary_dir, cases, failures,
                                    inject_hangs, injections, random_text, wrap)
from groupo.rewards.verify import verify
from groupo.types import Item

MATH_TIMEOUT = 3.0
# per call: math = the budget, plus killing a hung pool and starting a new one (fork + import);
# the other checkers read at most 20,000 characters and cap their own input
BOUND_S = {"math": MATH_TIMEOUT + 4.0}
OTHER_BOUND_S = 1.0
GOLDS = {"number": "59", "choice": "B", "countdown": "22|3,5,7", "lego": "+1", "exact": "Paris", "math": "\\frac{3}{7}"}
FAST = [k for k in KINDS if k != "math"]
_hyp = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture
def canary():
    with canary_dir() as path:
        yield path


def _check(row, n, bound_s):
    assert row["inputs"] == n
    assert row["crashes"] == 0 and row["out_of_range"] == 0, row["examples"]
    assert row["executions"] == 0, row["examples"]
    assert row["near_misses"] > 0 and row["false_positives"] == 0, row["examples"]
    assert row["true_positives"] == row["positives_expected"] > 0, row["examples"]
    assert row["worst_s"] < bound_s, row["by_category"]
    assert failures(row) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_short(kind, canary):
    n = 150 if kind == "math" else 400
    row = campaign(kind, n, seed=1, canary=canary, timeout=MATH_TIMEOUT)
    _check(row, n, BOUND_S.get(kind, OTHER_BOUND_S))


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_long(kind, canary):
    row = campaign(kind, 10_000, seed=0, canary=canary, timeout=5.0)
    _check(row, 10_000, 5.0 + 4.0 if kind == "math" else 2.0)


def test_hung_math_worker_is_killed_replaced_scored_0_and_counted(canary):
    before = mathpool.pool_stats()
    row = campaign("math", 20, seed=3, canary=canary, timeout=2.0, hang_every=10)
    assert row["hangs_injected"] == 2 == row["hangs_scored_0"] == row["timeouts"], row["examples"]
    assert row["pool_restarts"] >= 2 and failures(row) == 0, row["examples"]
    assert row["by_category"]["hang"][1] < 2.0 + 4.0
    after = mathpool.pool_stats()
    assert after["timeouts"] - before["timeouts"] == 2
    assert verify("\\boxed{0.5}", "\\frac{1}{2}", "math") == 1.0      # the real worker is back


def test_canary_would_be_seen(canary):
    """The execution check can fail: running a payload for real creates the canary."""
    payloads = injections(canary)
    exec(payloads[1])  # noqa: S102 - our own string, to prove the detector works
    assert os.path.exists(canary)
    os.unlink(canary)
    for kind in KINDS:
        for p in payloads:
            score = verify(wrap(random.Random(p), p), GOLDS[kind], kind)
            assert score == 0.0 or any(c.isdigit() for c in p) and 0.0 <= score <= 1.0
    assert not os.path.exists(canary)


@pytest.mark.parametrize("kind", KINDS)
def test_every_case_shape(kind):
    """All true-positive formats score 1 and all near misses 0, over many generated golds."""
    rng = random.Random(f"shapes-{kind}")
    for _ in range(6 if kind == "math" else 150):
        gold, oks, near = cases(kind, rng)
        assert near
        for ok in oks:
            assert verify(ok, gold, kind) == 1.0, (gold, ok)
        for miss in near:
            assert verify(miss, gold, kind) == 0.0, (gold, miss)


# ------------------------------------------------------------------ hypothesis properties

_FORMATS = ["<answer>{}</answer>", "\\boxed{{{}}}", "#### {}", "The answer is {}.", "{}", "<answer>x = {}</answer>",
            "<answer>{}", "12+7+40=\n<answer>{}</answer>"]


@_hyp
@given(st.integers(-10 ** 15, 10 ** 15), st.integers(-10 ** 6, 10 ** 6).filter(bool), st.sampled_from(_FORMATS),
       st.sampled_from(MINUS))
def test_number_property_gold_plus_minus_and_sign(g, d, fmt, minus):
    assert verify(fmt.format(g), str(g), "number") == 1.0
    assert verify(fmt.format(g + d), str(g), "number") == 0.0
    if g > 0:
        assert verify(fmt.format(f"{minus}{g}"), str(g), "number") == 0.0
        assert verify(fmt.format(f"{minus}{g}"), str(-g), "number") == 1.0


@_hyp
@given(st.sampled_from(["+1", "-1"]), st.sampled_from(_FORMATS + ["c = {}", "b=-a;a=+1;?b\nb={}"]),
       st.sampled_from(MINUS))
def test_lego_property_off_by_sign(gold, fmt, minus):
    bad = "-1" if gold == "+1" else "+1"
    assert verify(fmt.format(gold), gold, "lego") == 1.0
    assert verify(fmt.format(bad), gold, "lego") == 0.0
    if gold == "+1":
        assert verify(fmt.format(f"{minus}1"), gold, "lego") == 0.0


@_hyp
@given(st.sampled_from("ABCDEF"), st.sampled_from("ABCDEF"),
       st.sampled_from(["<answer>{}</answer>", "<answer>({})</answer>", "\\boxed{{{}}}", "The answer is ({}).",
                        "(A) 1 (B) 2 (C) 3 (D) 4 (E) 5 (F) 6\n<answer>{}</answer>"]))
def test_choice_property(gold, pick, fmt):
    assert verify(fmt.format(pick), gold, "choice") == float(gold == pick)


@_hyp
@given(st.lists(st.integers(1, 60), min_size=2, max_size=5), st.lists(st.sampled_from("+-*/"), min_size=4, max_size=4),
       st.integers(0, 100))
def test_countdown_property(nums, ops, extra):
    expr, value = str(nums[0]), Fraction(nums[0])
    for n, op in zip(nums[1:], ops):
        expr = f"({expr}){op}{n}"
        value = {"+": value + n, "-": value - n, "*": value * n, "/": value / n}[op]
    if value.denominator != 1:
        return
    gold = f"{value}|{','.join(map(str, nums))}"
    assert verify(f"<answer>{expr}</answer>", gold, "countdown") == 1.0
    assert verify(f"<answer>({expr})+{extra}-{extra}</answer>", gold, "countdown") == 0.0   # numbers not given
    assert verify(f"<answer>{expr}+{nums[0]}-{nums[0]}</answer>", gold, "countdown") == 0.0  # reused
    assert verify(f"<answer>{expr}+1</answer>", gold, "countdown") == 0.0
    assert verify(f"<answer>{expr.replace(ops[0], '**', 1)}</answer>", gold, "countdown") == 0.0


_hostile = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.sampled_from(list("0123456789-+*/^().=<>{}[]$#\\ \n\x00\u2212\uff11\u200b\u202e\u0301")),
            max_size=400),
    st.randoms(use_true_random=False).map(bomb),
    st.randoms(use_true_random=False).map(random_text),
    st.tuples(st.randoms(use_true_random=False).map(bomb), st.sampled_from(["<answer>59</answer>", "\\boxed{B}", "+1"]))
    .map("".join),
)


@settings(_hyp, max_examples=200)
@given(_hostile, st.sampled_from(FAST))
def test_hostile_text_property(text, kind):
    t = time.perf_counter()
    score = verify(text, GOLDS[kind], kind)
    assert type(score) is float and 0.0 <= score <= 1.0
    assert time.perf_counter() - t < OTHER_BOUND_S


# ------------------------------------------------------------------ the batched reward path

def test_correct_component_on_a_hostile_batch(canary):
    """What training calls: the ``correct`` component over a mixed batch (math in one pool batch)."""
    rng = random.Random(9)
    payloads = [p for p in injections(canary) if not any(c.isdigit() for c in p)]
    comp = build("reward", "correct", {"timeout": MATH_TIMEOUT})
    completions, items, expected = [], [], []
    for kind in KINDS:
        for _ in range(4):
            gold, oks, near = cases(kind, rng)
            for text, want in ((rng.choice(oks), 1.0), (rng.choice(near), 0.0),
                               (wrap(rng, rng.choice(payloads)), 0.0), (wrap(rng, bomb(rng)), None)):
                completions.append(text)
                items.append(Item("q", gold, kind=kind))
                expected.append(want)
    t = time.perf_counter()
    scores = comp(completions, items)
    assert time.perf_counter() - t < 60
    assert all(type(s) is float and 0.0 <= s <= 1.0 for s in scores)
    assert [s for s, w in zip(scores, expected) if w is not None] == [w for w in expected if w is not None]
    assert not os.path.exists(canary)


# ------------------------------------------------------------------ regressions (bugs the campaign found)

@pytest.mark.parametrize("pred, gold, expected", [
    ("<answer>\u221259</answer>", "59", 0.0), ("<answer>\u221259</answer>", "-59", 1.0),    # U+2212 minus
    ("The answer is \u221259.", "59", 0.0), ("The answer is \u221259.", "-59", 1.0),       # last-number path
    ("\\boxed{\u201359}", "59", 0.0), ("#### \uff0d59", "-59", 1.0),
    ("<answer>-(59)</answer>", "59", 0.0), ("<answer>negative 59</answer>", "59", 0.0),
    ("<answer>-\\left(59\\right)</answer>", "59", 0.0), ("<answer>x-59</answer>", "59", 0.0),
    ("<answer>-+59</answer>", "59", 0.0), ("<answer>\\sqrt{59}</answer>", "59", 0.0),
    ("<answer>59!</answer>", "59", 0.0), ("<answer>59\u00b2</answer>", "59", 0.0),
    ("<answer>59^{2}</answer>", "59", 0.0), ("<answer>x = 59</answer>", "59", 1.0),
    ("<answer>59^\\circ</answer>", "59", 1.0), ("<answer>$59</answer>", "59", 1.0),
    ("<answer>1234568</answer>", "1234567", 0.0), ("<answer>9905597</answer>", "9905598", 0.0),     # gold +-1, large
    ("<answer>1234567.5</answer>", "1234567", 0.0), ("<answer>1,234,567</answer>", "1234567", 1.0),
    ("<answer>0.3333333</answer>", "1/3", 1.0), ("<answer>0.33</answer>", "1/3", 0.0),
    ("<answer>0.75</answer>", "3/4", 1.0),
])
def test_regression_number_sign_and_tolerance(pred, gold, expected):
    assert verify(pred, gold, "number") == expected


@pytest.mark.parametrize("pred, gold, expected", [
    ("c = \u22121", "+1", 0.0), ("c = \u22121", "-1", 1.0), ("<answer>\u20131</answer>", "+1", 0.0),
])
def test_regression_lego_unicode_minus(pred, gold, expected):
    assert verify(pred, gold, "lego") == expected


@pytest.mark.parametrize("pred, gold, expected", [
    ("\\boxed{2}", "2\\sqrt{3}", 0.0), ("\\boxed{\\sqrt{12}}", "2\\sqrt{3}", 1.0),        # gold read as its leading 2
    ("\\boxed{2}", "2^{10}", 0.0), ("\\boxed{1024}", "2^{10}", 1.0),
    ("\\boxed{10}", "10^{6}", 0.0), ("\\boxed{1000000}", "10^{6}", 1.0),
    ("\\boxed{2\\pi}", "2\\pi", 1.0), ("\\boxed{2}", "2\\pi", 0.0), ("\\boxed{5}", "5 apples", 1.0),
    ("<answer>\u2212\\frac{3}{7}</answer>", "\\frac{3}{7}", 0.0),                          # U+2212 minus dropped
    ("<answer>\u2212\\frac{3}{7}</answer>", "-\\frac{3}{7}", 1.0),
    ("The answer is $C = 1.5$", "$C = \\frac{3}{2}$", 1.0),
])
def test_regression_math(pred, gold, expected):
    assert verify(pred, gold, "math") == expected


def test_regression_math_cold_pool_does_not_charge_the_import():
    """A fresh pool imports math_verify in the worker initializer: with a 1 s budget, every cold
    item used to time out (and every timeout made the next pool cold again)."""
    mathpool.shutdown()
    before = mathpool.pool_stats()
    assert mathpool.math_equal_many(["\\boxed{3}", "\\boxed{0.5}"], ["3", "\\frac{1}{2}"], timeout=1.0) == [1.0, 1.0]
    assert mathpool.pool_stats() == before


def test_regression_hung_last_item_kills_its_worker():
    """A hung item that was the last one pending used to be scored 0 without killing its worker:
    the process ran on (a real runaway computation burns a core) and the pool shrank."""
    with inject_hangs():
        assert mathpool.math_equal("\\boxed{1}", "1", timeout=2.0) == 1.0
        pids = list(mathpool._pool._processes)
        before, t = mathpool.pool_stats(), time.perf_counter()
        assert mathpool.math_equal(HANG, "1", timeout=1.0) == 0.0
        assert time.perf_counter() - t < 1.0 + 3.0
        after = mathpool.pool_stats()
        assert after["timeouts"] == before["timeouts"] + 1 and after["pool_restarts"] == before["pool_restarts"] + 1
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert mathpool.math_equal("\\boxed{1}", "1", timeout=2.0) == 1.0


def test_int_string_limit_never_escapes():
    """Python 3.11 refuses int<->str conversions past 4,300 digits (ValueError)."""
    huge = "9" * 5000
    for kind in KINDS:
        for text in (huge, f"<answer>{huge}</answer>", f"\\boxed{{{huge}}}", f"#### {huge}", f"{huge}/7",
                     f"\\frac{{{huge}}}{{3}}", f"<answer>{huge[:199]}</answer>", "1" + "0" * 4300):
            assert verify(text, GOLDS[kind], kind) == 0.0
    assert verify("1", 10 ** 5000, "number") == 0.0                        # a (trusted) gold past the limit
    assert checkers.number("9" * 199, "9" * 199) == 1.0                     # below the 200-character cap: exact
