"""Stateful samplers (curriculum, prompt_gdro, equitable), the difficulty classifier and
rollout allocation (fixed, rollout_gdro): worked numbers from ALGORITHMS.md §11."""
import json
import math
import random

import pytest

from groupo.data.allocation import RolloutGDRO, sqrt_rule, to_arms
from groupo.data.difficulty import Classifier, bucket, ema_step, ema_value, estimate, prompt_key, rebin
from groupo.registry import build, names
from groupo.tasks.base import normalize_question
from groupo.types import Item


def task(**kw):
    return build("task", "arithmetic", {"levels": [2, 3], "eval_levels": [2, 3], "eval_size": 50, **kw})


def test_registered():
    assert {"curriculum", "prompt_gdro", "equitable"} <= set(names("sampler"))
    assert {"fixed", "rollout_gdro"} <= set(names("allocation"))


# -- worked numbers -------------------------------------------------------------------
def test_square_root_rule_worked_example_e():
    p = [0.05, 0.5, 0.95]
    sigma = [math.sqrt(x * (1 - x)) for x in p]
    assert sigma == pytest.approx([0.217945, 0.5, 0.217945], abs=1e-6)
    f = [0.2, 0.5, 0.3]
    n = sqrt_rule(sigma, f, 8)
    assert n == pytest.approx([4.857084, 11.142916, 4.857084], abs=1e-6)
    assert sum(a * b for a, b in zip(f, n)) == pytest.approx(8)
    arms = to_arms(n, 4, 32)
    assert arms == [5, 11, 5]
    assert sum(a * b for a, b in zip(f, arms)) == pytest.approx(8.0)
    assert sqrt_rule([0.0, 0.0], [0.5, 0.5], 8) == [8.0, 8.0]   # p̄ in {0,1}: degenerate
    assert to_arms([0.0, 99.0], 4, 32) == [4, 32]


def test_ema_bias_correction_by_hand():
    m, n = ema_step(0.0, 0, 0.5, 0.9)
    assert m == pytest.approx(0.05) and ema_value(m, n, 0.9) == pytest.approx(0.5)
    m, n = ema_step(m, n, 0.7, 0.9)
    assert m == pytest.approx(0.115) and ema_value(m, n, 0.9) == pytest.approx(0.605263, abs=1e-6)
    assert ema_value(0.0, 0, 0.9) is None


def test_hysteresis_and_bins():
    assert [bucket(p) for p in (0.0, 0.1, 0.125, 0.4, 0.7, 0.9, 1.0)] == [0, 0, 1, 2, 3, 4, 4]
    assert rebin(None, 0.40) == 2
    for p in (0.33, 0.375, 0.5, 0.66, 0.674):  # within h=0.05 of [.375, .625): stays
        assert rebin(2, p) == 2
    assert rebin(2, 0.32) == 1 and rebin(2, 0.68) == 3 and rebin(2, 0.0) == 0
    assert rebin(0, 0.0) == 0 and rebin(4, 1.0) == 4


def test_hysteresis_classifier_exact():
    cls = Classifier()
    st = cls.init_state()
    cls.observe(st, "x", [1, 1, 0, 0, 0])           # 0.40 -> bin 2
    assert st["bin"]["x"] == 2 and st["pk"]["x"] == pytest.approx(0.4)
    cls.observe(st, "x", [1, 1, 0, 0, 0, 0])        # 0.333 (below .375 by < h): stays
    assert st["bin"]["x"] == 2
    cls.observe(st, "x", [1] + [0] * 3)             # 0.25: crosses by > h -> bin 1
    assert st["bin"]["x"] == 1
    cls.observe(st, "x", [1, 1, 0, 0, 0])           # 0.40 from bin 1: .40 < .375 + .05 -> stays
    assert st["bin"]["x"] == 1
    assert estimate([1, 0, 0, 0], k=2) == pytest.approx(0.5)   # unbiased pass@2: 1 - C(3,2)/C(4,2)
    assert estimate([], k=1) is None


# -- task pool ---------------------------------------------------------------------------
def test_train_pool_distinct_seeded_no_eval():
    t = task()
    pool = t.train_pool(300, 0)
    keys = [normalize_question(it.question) for it in pool]
    assert len(pool) == 300 and len(set(keys)) == 300
    assert not set(keys) & t.eval_keys
    assert {it.group for it in pool} == {"terms=2", "terms=3"}
    assert [it.question for it in task().train_pool(300, 0)] == [it.question for it in pool]
    assert [it.question for it in t.train_pool(300, 1)] != [it.question for it in pool]


def test_jsonl_train_pool(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"question": f"q{i}", "answer": str(i)}) + "\n" for i in range(40)))
    t = build("task", "jsonl", {"path": str(p), "eval_fraction": 0.25})
    assert t.train_pool(0, 0) == t.train_items()
    sub = t.train_pool(10, 3)
    assert len(sub) == 10 and set(sub) <= set(t.train_items())
    assert not {normalize_question(i.question) for i in sub} & t.eval_keys


# -- samplers ------------------------------------------------------------------------------
def fake_correct(items, rate):
    """Deterministic results: prompt i of a group with success ``rate(item)`` over 8 samples."""
    return [[1.0 if j < round(8 * rate(it)) else 0.0 for j in range(8)] for it in items]


@pytest.mark.parametrize("name", ["curriculum", "prompt_gdro", "equitable"])
def test_state_roundtrip_and_no_eval_leak(name):
    t = task()
    s = build("sampler", name, {"pool_size": 200})
    state = s.init_state()
    rng = random.Random(1)
    acc = {"terms=2": 0.9, "terms=3": 0.3}
    for _ in range(6):
        items = s(t, rng, 16, state)
        assert len(items) == 16
        assert not {normalize_question(i.question) for i in items} & t.eval_keys
        s.update(state, items, fake_correct(items, lambda it: acc[it.group]))
    saved = json.loads(json.dumps(state))
    assert saved == state
    r1, r2 = random.Random(7), random.Random(7)
    a = s(t, r1, 16, state)
    b = s(task(), r2, 16, saved)   # a fresh task instance too
    assert [i.question for i in a] == [i.question for i in b]


def test_curriculum_advances_with_replay():
    t = task()
    s = build("sampler", "curriculum", {"pool_size": 200, "min_steps": 3, "advance_at": 0.8, "replay": 0.25})
    state = s.init_state()
    rng = random.Random(0)
    items = s(t, rng, 32, state)
    assert {i.group for i in items} == {"terms=2"}
    for _ in range(2):
        s.update(state, items, fake_correct(items, lambda it: 1.0))
    assert state["stage"] == 0          # min_steps not reached
    s.update(state, items, fake_correct(items, lambda it: 1.0))
    assert state["stage"] == 1 and state["acc"] is None
    items = s(t, rng, 200, state)
    groups = [i.group for i in items]
    assert groups.count("terms=3") > groups.count("terms=2") > 0   # replay of the easier group
    s.update(state, items, fake_correct(items, lambda it: 0.1))
    assert state["stage"] == 1


def test_prompt_gdro_prefers_hard_bin():
    t = task()
    s = build("sampler", "prompt_gdro", {"pool_size": 200, "eta": 5.0})
    state = s.init_state()
    rng = random.Random(0)
    acc = {"terms=2": 1.0, "terms=3": 0.0}
    for _ in range(12):
        items = s(t, rng, 32, state)
        s.update(state, items, fake_correct(items, lambda it: acc[it.group]))
    L = s.losses(state)
    assert L[0] == pytest.approx(1.0) and L[4] == pytest.approx(0.0)
    items = s(t, rng, 64, state)
    seen = [i for i in items if prompt_key(i) in state["cls"]["bin"]]
    hard = sum(i.group == "terms=3" for i in seen)
    assert hard > len(seen) - hard
    # bias-corrected intensive mean: only bins that received samples were updated
    assert all(n >= 0 for n in state["n"]) and state["n"][-1] >= 1


def test_equitable_favours_lagging_group():
    t = task()
    s = build("sampler", "equitable", {"pool_size": 200, "min_share": 0.1})
    state = s.init_state()
    rng = random.Random(0)
    for step in range(8):
        items = s(t, rng, 40, state)
        acc = {"terms=2": 0.9, "terms=3": min(0.1 + 0.05 * step, 1.0)}   # group 3 lags but learns
        s.update(state, items, fake_correct(items, lambda it: acc[it.group]))
    shares = s.shares(state, ["terms=2", "terms=3"])
    assert shares["terms=3"] > 0.6 and shares["terms=2"] >= 0.1 - 1e-9
    items = s(t, rng, 40, state)
    assert sum(i.group == "terms=3" for i in items) > sum(i.group == "terms=2" for i in items)
    assert s.counts({"a": 0.5, "b": 0.3, "c": 0.2}, 4) == {"a": 2, "b": 1, "c": 1}


# -- allocation -----------------------------------------------------------------------------
def test_fixed_allocation():
    a = build("allocation", "fixed", {})
    assert a([Item("q", "1")] * 3, 8, a.init_state()) == [8, 8, 8]


def test_rollout_gdro_budget_on_average():
    pool = task().train_pool(300, 0)
    a = build("allocation", "rollout_gdro", {"n_min": 2, "n_max": 32})
    state = a.init_state()
    rng = random.Random(0)
    p_true = {prompt_key(it): rng.choice([0.0, 0.05, 0.3, 0.5, 0.8, 1.0]) for it in pool}
    means = []
    for _ in range(60):
        items = rng.sample(pool, 24)
        sizes = a(items, 8, state)
        assert all(2 <= n <= 32 for n in sizes)
        means.append(sum(sizes) / len(sizes))
        correct = [[1.0 if rng.random() < p_true[prompt_key(it)] else 0.0 for _ in range(n)]
                   for it, n in zip(items, sizes)]
        a.update(state, items, correct)
    assert sum(means[10:]) / len(means[10:]) == pytest.approx(8.0, rel=0.05)
    assert json.loads(json.dumps(state)) == state
    # uncertain prompts get more rollouts than solved/unsolvable ones
    items = [it for it in pool if prompt_key(it) in state["cls"]["bin"]]
    sizes = dict(zip(map(prompt_key, items), a(items, 8, state)))
    mid = [sizes[k] for k in sizes if state["cls"]["pk"][k] == 0.5]
    ext = [sizes[k] for k in sizes if state["cls"]["pk"][k] in (0.0, 1.0)]
    assert mid and ext and min(mid) > max(ext)


def test_rollout_gdro_validation():
    with pytest.raises(Exception):
        build("allocation", "rollout_gdro", {"n_min": 9, "n_max": 4})
    assert RolloutGDRO()([], 8, RolloutGDRO().init_state()) == []
