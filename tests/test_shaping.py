"""Reward shaping components: hand-computed numbers from ALGORITHMS.md §1.3, §4, §9, §13."""
import dataclasses

import pytest
import torch

import groupo
from groupo.algo.shaping.common import group_ranks
from groupo.registry import RegistryError, build, names
from groupo.types import Batch

D = torch.float64


def close(a, b, tol=1e-6):
    a, b = list(a), list(b)
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert abs(x - y) < tol, (a, b)


def snapshot(batch):
    """Deep copy of every tensor (and the extra dict) to check that the input is not modified."""
    out = {}
    for f in dataclasses.fields(batch):
        v = getattr(batch, f.name)
        out[f.name] = v.clone() if isinstance(v, torch.Tensor) else (dict(v) if isinstance(v, dict) else v)
    return out


def assert_unchanged(batch, snap):
    for k, v in snap.items():
        cur = getattr(batch, k)
        if isinstance(v, torch.Tensor):
            assert torch.equal(torch.nan_to_num(cur, nan=-7.0), torch.nan_to_num(v, nan=-7.0)), k
        elif isinstance(v, dict):
            assert cur.keys() == v.keys() and all(cur[x] is v[x] for x in v), k
        else:
            assert cur == v, k


def comp_batch(cols, names_, weights, group, **kw):
    comp = torch.tensor(cols, dtype=torch.float32).T.contiguous()          # [N, K]
    w = torch.tensor(weights, dtype=torch.float32)
    return Batch(rewards=torch.nansum(comp * w, 1), group=torch.tensor(group), reward_components=comp,
                 reward_weights=w, reward_names=tuple(names_), **kw)


# ---- DAPO soft overlong punishment (§1.3 e): L_max 20480, L_cache 4096
def test_dapo_overlong_numbers():
    lengths = torch.tensor([16000, 16384, 18432, 20480, 20481])
    b = Batch(rewards=torch.ones(5, dtype=D), group=torch.zeros(5, dtype=torch.long), lengths=lengths,
              max_length=20480)
    snap = snapshot(b)
    out = build("shaping", "dapo_overlong")(b)                  # max_length 0 -> batch.max_length
    # 16000, 16384 <= 16384: 0;  (16384 - 18432)/4096 = -0.5;  (16384 - 20480)/4096 = -1;  > L_max: -1
    close(out.rewards.tolist(), [1.0, 1.0, 0.5, 0.0, 0.0])
    assert_unchanged(b, snap)
    assert "keep" not in out.extra and out.reward_components is None
    out = build("shaping", "dapo_overlong", {"max_length": 20480, "factor": 0.5})(dataclasses.replace(b, max_length=None))
    close(out.rewards.tolist(), [1.0, 1.0, 0.75, 0.5, 0.5])


def test_dapo_overlong_components_and_filtering_ragged():
    # L_max 10, cache 4: soft zone 6 < L <= 10; lengths [3, 8, 10, 6, 9] -> [0, -0.5, -1, 0, -0.75]
    b = comp_batch([[1, 0, 1, 1, 0], [0.5, 0.5, 0.0, 0.0, 1.0]], ["correct", "format"], [1.0, 0.2],
                   [4, 1, 4, 1, 4], lengths=torch.tensor([3, 8, 10, 6, 9]), max_length=10,
                   truncated=torch.tensor([False, False, True, False, True]),
                   extra={"keep": torch.tensor([True, True, True, False, True])})
    snap = snapshot(b)
    out = build("shaping", "dapo_overlong", {"cache": 4, "mask_truncated": True})(b)
    # base = correct + 0.2 * format = [1.1, 0.1, 1, 1, 0.2]
    close(out.rewards.tolist(), [1.1, -0.4, 0.0, 1.0, -0.55])
    assert out.reward_names == ("correct", "format", "overlong")
    close(out.reward_components[:, 2].tolist(), [0, -0.5, -1, 0, -0.75])
    close(torch.nansum(out.reward_components * out.reward_weights, 1).tolist(), out.rewards.tolist())
    assert out.extra["keep"].tolist() == [True, True, False, False, False]   # ~truncated AND existing keep
    assert_unchanged(b, snap)
    with pytest.raises(ValueError, match="truncated"):
        build("shaping", "dapo_overlong", {"mask_truncated": True, "factor": 0.0})(Batch(torch.ones(2), torch.zeros(2)))
    with pytest.raises(RegistryError, match="cache"):
        build("shaping", "dapo_overlong", {"cache": 0})


# ---- Unlikeliness (§9 e): G=4, r=[1,1,0,1], l=[-0.2,-0.9,-0.5,-0.4], beta 0.25
def _unlikely(offset, r, lp, group):
    b = Batch(rewards=torch.tensor(r, dtype=D), group=torch.tensor(group), extra={"seq_logp": torch.tensor(lp, dtype=D)})
    snap = snapshot(b)
    out = build("shaping", "unlikeliness", {"rank_offset": offset})(b)
    assert_unchanged(b, snap)
    return out


def test_unlikeliness_code_convention():
    # ascending ranks [3,0,1,2] -> factors 1 - 0.25 * rank / 4 = [0.8125, 1, 0.9375, 0.875]
    out = _unlikely(0, [1, 1, 0, 1], [-0.2, -0.9, -0.5, -0.4], [0] * 4)
    close(out.rewards.tolist(), [0.8125, 1.0, 0.0, 0.875])
    a = groupo.compute_advantages(out.rewards, out.group, "grpo", eps=1e-6).advantages
    close(a.tolist(), [0.309304, 0.721709, -1.477785, 0.446772])


def test_unlikeliness_paper_convention():
    # rank_offset 1: factors 1 - 0.25 * (rank + 1) / 4 = [0.75, 0.9375, 0.875, 0.8125]
    out = _unlikely(1, [1, 1, 0, 1], [-0.2, -0.9, -0.5, -0.4], [0] * 4)
    close(out.rewards.tolist(), [0.75, 0.9375, 0.0, 0.8125])
    a = groupo.compute_advantages(out.rewards, out.group, "grpo", eps=1e-6).advantages
    close(a.tolist(), [0.294883, 0.737208, -1.474416, 0.442325])


def test_unlikeliness_ragged_and_components():
    # the spec's group (rows 0, 2, 4, 5) interleaved with a group of 2 (rows 1, 3) and a singleton (row 6)
    r = [1, 1, 1, 1, 0, 1, 1]
    lp = [-0.2, -0.3, -0.9, -0.1, -0.5, -0.4, -3.0]
    g = [0, 8, 0, 8, 0, 0, 5]
    out = _unlikely(0, r, lp, g)
    # group 8: ranks [0, 1] -> factors [1, 1 - 0.25/2 = 0.875]; singleton: rank 0 -> 1
    close(out.rewards.tolist(), [0.8125, 1.0, 1.0, 0.875, 0.0, 0.875, 1.0])
    # components scaled by the same factor; stable ties: equal l ranked in row order
    b = comp_batch([[1, 1, 1], [0.5, 0.5, 0.5]], ["correct", "format"], [1, 1], [2, 2, 2],
                   extra={"seq_logp": torch.tensor([-0.4, -0.4, -0.4])})
    out = build("shaping", "unlikeliness")(b)
    close(out.reward_components[:, 1].tolist(), [0.5, 0.5 * (1 - 0.25 / 3), 0.5 * (1 - 0.5 / 3)])
    close(out.rewards.tolist(), [1.5, 1.5 * (1 - 0.25 / 3), 1.5 * (1 - 0.5 / 3)])


def test_group_ranks_and_missing_logp():
    assert group_ranks(torch.tensor([0.5, 0.1, 0.5, 0.3, 0.2]), torch.tensor([1, 0, 1, 1, 0])).tolist() == [1, 0, 2, 0, 1]
    with pytest.raises(ValueError, match="seq_logp"):
        build("shaping", "unlikeliness")(Batch(torch.ones(2), torch.zeros(2, dtype=torch.long)))
    assert build("shaping", "unlikeliness").needs_logp is True
    assert getattr(build("shaping", "none"), "needs_logp", False) is False


# ---- GCPO group contrastive masking (§13 e)
def test_gcpo_mask_cases():
    # group 0 (spec): aux [1,1,0,0], acc [1,1,0,1]: acc+ 1.0, acc- 0.5 -> M = +1 (aux rows keep +1)
    # group 1: aux [1,1,0,0], acc [0,0,1,1]: acc- - acc+ = 1 > 0.1 -> M = -1 (aux rows get -1)
    # group 2: aux [1,0,1,0], acc [1,0,1,0]... acc+ 1, acc- 0 -> +1; group 3: aux [1,0], acc [1,1] -> diff 0 -> M = 0
    acc = [1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 1, 1]
    aux = [1, 1, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0]
    g = [0] * 4 + [1] * 4 + [2] * 4 + [3] * 2
    b = comp_batch([acc, aux], ["correct", "python"], [1, 1], g, correct=torch.tensor(acc, dtype=torch.float32))
    snap = snapshot(b)
    out = build("shaping", "gcpo", {"w_len": 0.0})(b)
    assert_unchanged(b, snap)
    close(out.reward_components[:, 1].tolist(), [1, 1, 0, 0, -1, -1, 0, 0, 1, 0, 1, 0, 0, 0])
    close(out.rewards.tolist(), [2, 2, 0, 1, -1, -1, 1, 1, 2, 0, 2, 0, 1, 1])
    assert out.reward_names == ("correct", "python")


def test_gcpo_eta_ragged_length_and_weights():
    # rows interleaved: group 5 = rows [0, 2, 3] (aux 1, 0, 0; acc 1, 1, 0): acc+ 1, acc- 0.5 -> +1
    # group 6 = rows [1, 4] (aux 1, 1): all use aux -> M = 0
    acc = [1, 1, 1, 0, 1]
    aux = [1, 1, 0, 0, 1]
    b = comp_batch([acc, aux], ["correct", "python"], [1, 0.5], [5, 6, 5, 5, 6],
                   correct=torch.tensor(acc, dtype=torch.float32), lengths=torch.tensor([10, 60, 30, 25, 50]),
                   max_length=100)
    out = build("shaping", "gcpo")(b)          # eta 0.1, w_len 0.5, target 0.5 * 100 = 50
    # aux column [1, 0, 0, 0, 0]; R_len = min(L/50, 1) on correct rows = [0.2, 1, 0.6, 0 (wrong), 1]
    close(out.reward_components[:, 1].tolist(), [1, 0, 0, 0, 0])
    close(out.reward_components[:, 2].tolist(), [0.2, 1, 0.6, 0, 1])
    assert out.reward_names[2] == "gcpo_length" and abs(float(out.reward_weights[2]) - 0.5) < 1e-9
    # rewards = acc + 0.5 * masked aux + 0.5 * R_len = [1.6, 1.5, 1.3, 0, 1.5]
    close(out.rewards.tolist(), [1.6, 1.5, 1.3, 0.0, 1.5])
    close(torch.nansum(out.reward_components * out.reward_weights, 1).tolist(), out.rewards.tolist())
    # eta 0.6 > acc+ - acc- = 0.5 -> M = 0 everywhere
    out = build("shaping", "gcpo", {"eta": 0.6, "w_len": 0.0})(b)
    close(out.reward_components[:, 1].tolist(), [0] * 5)
    with pytest.raises(ValueError, match="no reward component named 'code'"):
        build("shaping", "gcpo", {"aux": "code"})(b)


# ---- GDPO conditioning (§4): easy counts only when hard >= threshold
def test_condition_hand_case_ragged():
    # correct [1, 0, 1, 0, 1], length [0.8, 0.9, nan, 0.3, 0.6], weights [1, 0.5], groups ragged
    b = comp_batch([[1, 0, 1, 0, 1], [0.8, 0.9, float("nan"), 0.3, 0.6]], ["correct", "length"], [1, 0.5],
                   [3, 0, 3, 3, 0])
    snap = snapshot(b)
    out = build("shaping", "condition", {"easy": "length", "hard": "correct"})(b)
    assert_unchanged(b, snap)
    # length -> [0.8, 0, nan, 0, 0.6]; rewards = correct + 0.5 * length (nan as 0) = [1.4, 0, 1, 0, 1.3]
    close(out.rewards.tolist(), [1.4, 0.0, 1.0, 0.0, 1.3])
    assert torch.isnan(out.reward_components[2, 1])
    # threshold 0.5 on a partial-credit hard reward; NaN hard is not met
    b = comp_batch([[0.4, 0.5, float("nan")], [1, 1, 1]], ["hard", "easy"], [2, 1], [0, 0, 1])
    out = build("shaping", "condition", {"easy": "easy", "hard": "hard", "threshold": 0.5})(b)
    close(out.rewards.tolist(), [0.8, 2.0, 0.0])
    with pytest.raises(RegistryError, match="same component"):
        build("shaping", "condition", {"easy": "a", "hard": "a"})
    with pytest.raises(RegistryError, match="needs parameter"):
        build("shaping", "condition", {"easy": "a"})
    with pytest.raises(ValueError, match="reward_components"):
        build("shaping", "condition", {"easy": "a", "hard": "b"})(Batch(torch.ones(2), torch.zeros(2)))


def test_none_is_identity_new_batch():
    b = comp_batch([[1, 0]], ["correct"], [1], [0, 0], extra={"x": 1})
    out = build("shaping", "none")(b)
    assert out is not b and out.extra is not b.extra and torch.equal(out.rewards, b.rewards)


MINIMAL = {
    "condition": {"easy": "format", "hard": "correct"},
    "gcpo": {"aux": "python"},
    "dapo_overlong": {"cache": 8, "mask_truncated": True},
}


@pytest.mark.parametrize("name", names("shaping"))
def test_every_shaping_component_runs_on_random_ragged_batch(name):
    g = torch.Generator().manual_seed(1)
    n = 11
    group = torch.tensor([3, 0, 3, 7, 0, 3, 7, 7, 0, 3, 12])            # sizes 4, 3, 3, 1, rows interleaved
    comp = torch.stack([torch.randint(0, 2, (n,), generator=g).float(),
                        torch.randint(0, 2, (n,), generator=g).float(),
                        torch.rand(n, generator=g)], 1)
    comp[4, 2] = float("nan")
    w = torch.tensor([1.0, 0.5, 0.2])
    b = Batch(rewards=torch.nansum(comp * w, 1), group=group, reward_components=comp, reward_weights=w,
              reward_names=("correct", "python", "format"), correct=comp[:, 0].clone(),
              lengths=torch.randint(1, 33, (n,), generator=g), truncated=torch.rand(n, generator=g) > 0.7,
              max_length=32, completion_mask=torch.ones(n, 32),
              extra={"seq_logp": -torch.rand(n, generator=g, dtype=D), "tok_entropy": torch.rand(n, 32, generator=g)})
    snap = snapshot(b)
    out = build("shaping", name, MINIMAL.get(name, {}))(b)
    assert_unchanged(b, snap)
    assert isinstance(out, Batch) and out is not b and out.n == n
    assert torch.isfinite(out.rewards).all() and torch.equal(out.group, group)
    if out.reward_components is not None:
        assert out.reward_components.shape[1] == len(out.reward_names) == out.reward_weights.shape[0]
        close(torch.nansum(out.reward_components * out.reward_weights, 1).tolist(), out.rewards.tolist(), 1e-5)
    res = groupo.compute_advantages(out.rewards, out.group, "grpo")
    assert torch.isfinite(res.advantages).all()
