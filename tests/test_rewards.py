"""Rewards: extraction, checkers (with near misses), safety of verify, math pool, components."""
from __future__ import annotations

import math
import os
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groupo.registry import RegistryError, build
from groupo.rewards import RewardSet, checkers, extract_answer, mathpool, verify
from groupo.types import Item

# ------------------------------------------------------------------ extraction

@pytest.mark.parametrize("text, mode, expected", [
    ("think <answer> 42 </answer> bye", "tag", "42"),
    ("<answer>1</answer> then <answer>2</answer>", "tag", "2"),
    ("<answer>cut by the stop string", "tag", "cut by the stop string"),
    ("no tags 5", "tag", None),
    (r"so \boxed{\frac{1}{2}} and \boxed{3}", "boxed", "3"),
    (r"\boxed{a{b}c} text", "boxed", "a{b}c"),
    (r"\boxed{unbalanced", "boxed", None),
    (r"\boxed 7.", "boxed", "7"),
    ("steps <<48/2=24>>\n#### 72\nmore", "hash", "72"),
    ("#### ", "hash", None),
    ("12 apples, then 1,234.5 pears.", "last_number", "1234.5".replace("1234", "1,234")),
    ("5-3", "last_number", "3"),
    ("x = -7.", "last_number", "-7"),
    ("ratio 3/4", "last_number", "3/4"),
    ("none here", "last_number", None),
    (r"<answer>\boxed{9}</answer>", "auto", "9"),
    (r"2 then \boxed{8} #### 9", "auto", "8"),
    ("2 then #### 9", "auto", "9"),
    ("2 then 3", "auto", "3"),
    ("", "auto", None),
])
def test_extract_modes(text, mode, expected):
    assert extract_answer(text, mode) == expected


def test_extract_reads_only_the_tail_and_rejects_bad_mode():
    assert extract_answer("<answer>1</answer>" + " " * 30_000, "tag") is None  # beyond 20,000 chars
    assert extract_answer("7 " + "x" * 30_000, "auto") is None
    with pytest.raises(ValueError, match="last_number"):
        extract_answer("1", "lastnum")


# ------------------------------------------------------------------ checkers

@pytest.mark.parametrize("pred, gold, expected", [
    ("59", "59", 1.0), ("59.0", "59", 1.0), ("$1,234.", "1234", 1.0), ("3/4", "0.75", 1.0),
    (r"\frac{3}{4}", "0.75", 1.0), ("x = 59", "59", 1.0), ("-2", "-2", 1.0), ("0.3333333", "1/3", 1.0),
    ("59.1", "59", 0.0), ("58 or 59", "59", 0.0), ("590", "59", 0.0), ("", "59", 0.0), ("2", "-2", 0.0),
    ("1/0", "0", 0.0), ("0.33", "1/3", 0.0), ("nan", "1", 0.0), ("1e3", "1000", 0.0),
])
def test_number_checker(pred, gold, expected):
    assert checkers.number(pred, gold) == expected


@pytest.mark.parametrize("fn, pred, gold, expected", [
    (checkers.exact, " Paris  France ", "Paris France", 1.0), (checkers.exact, "paris", "Paris", 0.0),
    (checkers.choice, "(B)", "B", 1.0), (checkers.choice, "b", "(B)", 1.0), (checkers.choice, "The answer is: C", "C", 1.0),
    (checkers.choice, r"\text{D}", "D", 1.0), (checkers.choice, "A good guess is (E)", "E", 1.0),
    (checkers.choice, "(B)", "C", 0.0), (checkers.choice, "G", "G", 0.0), (checkers.choice, "nothing", "A", 0.0),
    (checkers.lego, "+1", "+1", 1.0), (checkers.lego, "1", "+1", 1.0), (checkers.lego, "c = -1", "-1", 1.0),
    (checkers.lego, "+1", "-1", 0.0), (checkers.lego, "-1", "+1", 0.0), (checkers.lego, "11", "+1", 0.0),
    (checkers.lego, "+1 or -1", "+1", 0.0),
])
def test_simple_checkers(fn, pred, gold, expected):
    assert fn(pred, gold) == expected


@pytest.mark.parametrize("expr, expected", [
    ("3*5+7", 1.0), ("(7 + 5*3)", 1.0), ("7+3*5 = 22", 1.0), ("5*3+7", 1.0), ("7 - -3*5", 1.0),
    ("3*5+7+0", 0.0),            # 0 is not a given number
    ("3*5+7*1", 0.0),            # extra number
    ("3*7+1", 0.0),              # wrong value and numbers
    ("5*5-3", 0.0),              # 5 used twice, 7 unused
    ("3*5", 0.0),                # 7 unused
    ("3**5+7", 0.0),             # power is not allowed
    ("(3+5)//7", 0.0), ("3.0*5+7", 0.0), ("3*5+7.5", 0.0),
    ("__import__('os').system('true')", 0.0),
    ("7/(5-5)+3", 0.0),          # division by zero -> 0 (and 5 twice)
    ("(" * 5000 + "3" + ")" * 5000 + "*5+7", 0.0),
    ("-" * 199 + "3*5+7", 0.0),
])
def test_countdown_checker(expr, expected):
    assert checkers.countdown(expr, "22|3,5,7") == expected


def test_countdown_checker_details():
    assert checkers.countdown("7/(5-3)*4", "14|3,5,7,4") == 1.0      # exact fractions
    assert checkers.countdown("7/2", {"target": 3, "numbers": [7, 2]}) == 0.0  # 3.5 != 3
    assert checkers.countdown("(10-1)/3", "3|10,1,3") == 1.0
    assert checkers.countdown("20*19*18*17*16*15*14*13*12*11*10*9*8*7", "1|20") == 0.0
    t = time.perf_counter()
    checkers.countdown("9" * 199, "1|2")
    checkers.countdown("((((((((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))))))))", "1|1")
    assert time.perf_counter() - t < 0.5


# ------------------------------------------------------------------ verify

def test_verify_by_kind():
    assert verify("12+7+40=<answer>59</answer>", "59", "number") == 1.0
    assert verify("12+7+40=<answer>59.1</answer>", "59", "number") == 0.0
    assert verify("so the total is 59", "59", "number") == 1.0
    assert verify("b=+a so c is <answer>-1</answer>", "-1", "lego") == 1.0
    assert verify("<answer>+1</answer>", "-1", "lego") == 0.0
    assert verify("I pick (C) because", "C", "choice") == 1.0
    assert verify("think\n(3+5)*7 - 34 ... no\n3*5+7", "22|3,5,7", "countdown") == 1.0
    assert verify("<answer>5*5-3</answer>", "22|3,5,7", "countdown") == 0.0
    assert verify("<answer>Paris</answer>", "Paris", "exact") == 1.0
    assert verify("<answer>59</answer>", "59", "number", mode="boxed") == 0.0


def test_verify_unknown_kind_is_a_programmer_error():
    with pytest.raises(ValueError, match="valid kinds: number, math, choice, countdown, lego"):
        verify("1", "1", "numeric")


HOSTILE = [
    "__import__('os').system('echo pwned')", "<answer>__import__('os')</answer>", "\x00" * 100, "a\x00<answer>1\x00</answer>",
    "x" * 1_000_000, "9" * 1_000_000, "(" * 10_000 + ")" * 10_000, "{" * 10_000, "[" * 10_000 + "1",
    "<answer>1</answer>" * 5_000, "<answer>" * 10_000, "</answer>" * 10_000, r"\boxed{" * 10_000,
    r"\boxed{9^{9^{9^{9}}}}", "$" + r"\sqrt{" * 500 + "2" + "}" * 500 + "$", "<answer>" + "(" * 300 + "1" + ")" * 300 + "</answer>",
    "<answer>99**99**99**99</answer>", "<answer>1e308*1e308</answer>", "\ud800", "#### " + "1," * 100_000,
    "\\" * 10_000, "1/" * 10_000 + "0", "<answer>" + "-" * 100_000 + "1</answer>", "\n" * 100_000,
]
_strings = st.one_of(st.text(max_size=200), st.sampled_from(HOSTILE),
                     st.tuples(st.sampled_from(HOSTILE), st.text(max_size=20)).map("".join))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_strings, min_size=1, max_size=4), st.sampled_from(["number", "choice", "countdown", "lego", "exact"]))
def test_verify_never_raises_on_hostile_strings(completions, kind):
    gold = {"number": "59", "choice": "B", "countdown": "22|3,5,7", "lego": "+1", "exact": "x"}[kind]
    for c in completions:
        t = time.perf_counter()
        score = verify(c, gold, kind)
        assert 0.0 <= score <= 1.0 and time.perf_counter() - t < 1.0


def test_verify_math_on_hostile_strings_is_bounded():
    t = time.perf_counter()
    scores = mathpool.math_equal_many(HOSTILE + [None, 123], ["1"] * (len(HOSTILE) + 2), timeout=3.0)
    assert all(s in (0.0, 1.0) for s in scores)
    assert time.perf_counter() - t < 25
    assert verify(None, "1", "math") == 0.0 and verify(b"1", "1", "number") == 0.0


def test_latex_bomb_returns_within_timeout():
    t = time.perf_counter()
    assert verify(r"\boxed{9^{9^{9^{9}}}}", "1", "math", timeout=3.0) == 0.0
    assert time.perf_counter() - t < 3.0 + 1.5


def test_canary_completions_are_never_executed(tmp_path):
    canary, proof = tmp_path / "canary", tmp_path / "proof"
    payloads = [
        "__import__('os').system('touch {p}')",
        "open('{p}', 'w').write('x')",
        "__import__('pathlib').Path('{p}').touch()",
        "exec(\"open('{p}','w')\")",
    ]
    exec(payloads[2].format(p=proof))  # the payloads are real: executed, they create the file
    assert proof.exists()
    for payload in payloads:
        code = payload.format(p=canary)
        for text in (code, f"<answer>{code}</answer>", f"\\boxed{{{code}}}", f"The answer is ${code}$", f"#### {code}"):
            for kind in ("number", "choice", "countdown", "lego", "exact", "math"):
                assert verify(text, "1|1" if kind == "countdown" else "1", kind) == 0.0
    assert not canary.exists()


# ------------------------------------------------------------------ math pool

@pytest.mark.parametrize("pred, gold, expected", [
    ("The answer is \\boxed{0.5}", "\\frac{1}{2}", 1.0), ("<answer>3</answer>", "3", 1.0),
    ("$\\frac{\\sqrt{2}}{2}$", "\\sqrt{2}/2", 1.0), ("$(x+1)^2$", "$x^2+2x+1$", 1.0),
    ("\\boxed{0.33}", "\\frac13", 0.0), ("I think 3, final answer 4", "3", 0.0), ("\\boxed{}", "5", 0.0),
])
def test_math_verify_equivalences(pred, gold, expected):
    # a generous bound: the default (5 s, 1 s inside math-verify) made the symbolic case fail once on
    # a loaded machine; the time bound itself is tested with the hanging inputs
    assert verify(pred, gold, "math", timeout=30.0) == expected


def _sleepy_work(job, pred, gold, inner):
    if mathpool._worker_queue is not None:
        mathpool._worker_queue.put(job)
    if pred == "SLEEP":
        time.sleep(120)  # stands for a computation the alarm cannot interrupt
    if pred == "CRASH":
        os._exit(3)
    return 1.0


@pytest.mark.parametrize("bad", ["SLEEP", "CRASH"])
def test_pool_is_killed_and_recreated(monkeypatch, bad):
    mathpool.shutdown()
    monkeypatch.setattr(mathpool, "_work", _sleepy_work)
    before, t = mathpool.timeouts, time.perf_counter()
    out = mathpool.math_equal_many(["a", bad, "b", "c", "d"], ["1"] * 5, timeout=1.0)
    assert out == [1.0, 0.0, 1.0, 1.0, 1.0]
    assert mathpool.timeouts == before + (bad == "SLEEP")
    assert time.perf_counter() - t < 10
    monkeypatch.undo()
    mathpool.shutdown()
    assert mathpool.math_equal("0.5", "\\frac{1}{2}") == 1.0


def _report_warm(job, pred, gold, inner):
    if mathpool._worker_queue is not None:
        mathpool._worker_queue.put(job)
    return float("sympy.physics.units" in sys.modules)


def test_workers_warm_up_before_their_first_item(monkeypatch):
    """A worker's first symbolic comparison imports parts of sympy (0.4-0.5 s, over half the 1 s
    inner limit, which once scored a correct symbolic answer 0 on a loaded machine): each worker
    pays it at start, outside every item's budget."""
    import multiprocessing

    mathpool.shutdown()
    monkeypatch.setattr(mathpool, "_context", lambda: multiprocessing.get_context("spawn"))   # nothing inherited
    monkeypatch.setattr(mathpool, "_work", _report_warm)
    assert mathpool.math_equal_many(["1", "2"], ["1", "2"], timeout=30.0) == [1.0, 1.0]
    monkeypatch.undo()
    mathpool.shutdown()


# ------------------------------------------------------------------ components

def test_correct_component_batches_math_and_other_kinds():
    items = [Item("1+1=", "2", kind="number"), Item("half?", "\\frac{1}{2}", kind="math"),
             Item("q", "-1", kind="lego"), Item("half?", "\\frac{1}{2}", kind="math")]
    comp = build("reward", "correct", {})
    assert comp(["<answer>2</answer>", "\\boxed{0.5}", "+1", "\\boxed{2}"], items) == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="2 completions but 4 items"):
        comp(["a", "b"], items)
    with pytest.raises(RegistryError, match="extract"):
        build("reward", "correct", {"extract": "xml"})


def test_format_component():
    fmt = build("reward", "format", {})
    items = [Item("q", "1")] * 4
    assert fmt([" <answer>1</answer>\n", "<answer>\n2\n</answer>", "x <answer>1</answer>", "<answer></answer>"], items) == [1.0, 1.0, 0.0, 0.0]
    think = build("reward", "format", {"pattern": r"<think>.*</think>"})
    assert think(["<think>a\nb</think> 3", "no"], items[:2]) == [1.0, 0.0]
    with pytest.raises(RegistryError, match="regular expression"):
        build("reward", "format", {"pattern": "("})


USER_REWARD = '''
def reward(completions, prompts=None, answer=None, **kwargs):
    assert prompts is None or len(prompts) == len(completions)
    return [None if c == "skip" else float(c.strip() == a) + 0.5 * (kwargs["level"][i] == 2)
            for i, (c, a) in enumerate(zip(completions, answer))]

def named_only(completions, question):
    return [float(len(q)) for q in question]

def wrong_length(completions, **kw):
    return [1.0]

def not_numbers(completions, **kw):
    return ["high"] * len(completions)
'''


def test_python_reward_with_trl_signature(tmp_path):
    path = tmp_path / "my_reward.py"
    path.write_text(USER_REWARD)
    items = [Item("q1", "4", meta={"level": 1}), Item("q22", "5", meta={"level": 2}), Item("q3", "6", meta={"level": 1})]
    comp = build("reward", "python", {"path": str(path)})
    assert comp(["4", "5", "skip"], items, prompts=["p1", "p2", "p3"]) == [1.0, 1.5, None]
    assert build("reward", "python", {"path": str(path), "function": "named_only"})(["a", "b", "c"], items) == [2.0, 3.0, 2.0]
    with pytest.raises(ValueError, match=r"wrong_length returned 1 values for 3 completions"):
        build("reward", "python", {"path": str(path), "function": "wrong_length"})(["a", "b", "c"], items)
    with pytest.raises(ValueError, match="non-numeric value 'high' at index 0"):
        build("reward", "python", {"path": str(path), "function": "not_numbers"})(["a", "b", "c"], items)
    with pytest.raises(RegistryError, match="no function 'rewards'"):
        build("reward", "python", {"path": str(path), "function": "rewards"})
    with pytest.raises(RegistryError, match="missing.py: reward file not found"):
        build("reward", "python", {"path": str(tmp_path / "missing.py")})


def test_reward_set_nan_semantics(tmp_path):
    path = tmp_path / "r.py"
    path.write_text("def reward(completions, **kw):\n    return [None if c.startswith('skip') else 0.5 for c in completions]\n")
    rs = RewardSet([{"name": "correct"}, {"name": "format", "weight": 0.1},
                    {"name": "python", "path": str(path), "weight": 2.0, "label": "mine"},
                    {"name": "format", "weight": 0.5, "pattern": "5"}])
    assert rs.names == ["correct", "format", "mine", "format_2"]
    assert torch.equal(rs.weights, torch.tensor([1.0, 0.1, 2.0, 0.5]))
    items = [Item("q", "5", kind="number")] * 3
    comps = rs(["<answer>5</answer>", "skip 4", "4"], items, prompts=["p"] * 3)
    assert comps.shape == (3, 4) and comps.dtype == torch.float32
    assert math.isnan(comps[1, 2]) and comps[0].tolist() == [1.0, 1.0, 0.5, 1.0]
    total = rs.combine(comps)
    assert torch.allclose(total, torch.tensor([1.0 + 0.1 + 1.0 + 0.5, 0.0, 1.0]))  # NaN counts as 0 in row 1
    all_nan = rs.combine(torch.tensor([[float("nan")] * 4, [float("nan"), 1.0, float("nan"), 0.0]]))
    assert math.isnan(all_nan[0]) and all_nan[1].item() == pytest.approx(0.1)


def test_reward_set_spec_errors():
    with pytest.raises(RegistryError, match="non-empty list"):
        RewardSet([])
    with pytest.raises(RegistryError, match=r"rewards\[1\]: expected a mapping with a 'name'"):
        RewardSet([{"name": "correct"}, {"weight": 1.0}])
    with pytest.raises(RegistryError, match=r"unknown reward 'corect'.*did you mean 'correct'"):
        RewardSet([{"name": "corect"}])
    with pytest.raises(RegistryError, match=r"rewards\[0\].weight"):
        RewardSet([{"name": "correct", "weight": "high"}])
    with pytest.raises(RegistryError, match=r"unknown parameter 'rewards\[0\].patern'"):
        RewardSet([{"name": "format", "patern": "x"}])
    assert RewardSet(["correct"]).names == ["correct"]
