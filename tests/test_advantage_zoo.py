"""Hand-computed numbers for MC-GRPO, NGRPO, GDPO, DGPO (+DQW, token mean), A-GRAE,
REINFORCE++ and VGPO (ALGORITHMS.md §2-§6, §15; algorithms_examples.py), float64, exact eps."""
import math

import pytest
import torch

import groupo
import groupo.algo.weighting  # noqa: F401  (registers uniform, dgpo_dqw)
from groupo.algo.advantage.common import batch_whiten
from groupo.registry import RegistryError, build, names
from groupo.types import Batch

ZOO = ["mc_grpo", "ngrpo", "gdpo", "dgpo", "agrae", "reinforce_pp", "vgpo"]
LOCAL = ["mc_grpo", "ngrpo", "dgpo", "vgpo"]   # per-group only: no batch-wide statistic


def res(rewards, group, method, **kw):
    return groupo.compute_advantages(torch.tensor(rewards, dtype=torch.float64), torch.tensor(group), method, **kw)


def adv(rewards, group, method, **kw):
    return res(rewards, group, method, **kw).advantages.tolist()


def close(a, b, tol=1e-6):
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert abs(x - y) < tol, (a, b)


# ---- MC-GRPO (§2 e): lower median b, MAD + 1e-3, first row equal to b is the pivot (keep False)
@pytest.mark.parametrize("r,a,keep", [
    ([1, 0, 0], [1000, 0, 0], [1, 0, 1]),            # b 0, MAD median[1,0,0]=0 -> s .001; 1/.001
    ([1, 1, 0], [0, 0, -1000], [0, 1, 1]),           # b 1, pivot row 0 (first 1)
    ([0, 0, 0], [0, 0, 0], [0, 1, 1]),               # all equal: A 0, pivot still dropped
    # b .5, |dev| [.3,.4,0,.1,.5] -> MAD .3, s .301; -.3/.301, .4/.301, 0, -.1/.301, .5/.301
    ([0.2, 0.9, 0.5, 0.4, 1.0], [-0.996678, 1.328904, 0, -0.332226, 1.661130], [1, 1, 0, 1, 1]),
    ([1, 1, 1, 0, 0], [0, 0, 0, -1000, -1000], [0, 1, 1, 1, 1]),
])
def test_mc_grpo_worked(r, a, keep):
    out = res(r, [0] * len(r), "mc_grpo")
    close(out.advantages.tolist(), a)
    assert out.keep.tolist() == [bool(k) for k in keep]
    assert out.weights.tolist() == [1.0] * len(r)


def test_mc_grpo_options():
    # GSM multiplier: [1000,0,0] has 1 non-zero of 3 -> x3 = 3000, then the pivot (row 1) is dropped
    out = res([1, 0, 0], [0] * 3, "mc_grpo", gsm_multiplier=True)
    assert out.advantages.tolist() == [3000.0, 0.0, 0.0] and out.keep.tolist() == [True, False, True]
    # mad_fallback: MAD 0 -> divide by 1
    assert adv([1, 0, 0], [0] * 3, "mc_grpo", mad_fallback=True) == [1.0, 0.0, 0.0]
    # control: mean 1/3, std sqrt(1/3)=.577350; (2/3)/.577450=1.154501, (-1/3)/.577450=-.577250;
    # first row with the smallest |r| (row 1) is dropped
    out = res([1, 0, 0], [0] * 3, "mc_grpo", mode="mean_control")
    close(out.advantages.tolist(), [1.154501, -0.577250, -0.577250])
    assert out.keep.tolist() == [True, False, True]
    with pytest.raises(RegistryError, match="mad_eps"):
        res([1, 0], [0, 0], "mc_grpo", mad_eps=0.0)
    with pytest.raises(RegistryError, match="mode"):
        res([1, 0], [0, 0], "mc_grpo", mode="mean")


def test_mc_grpo_even_ragged_and_singleton():
    # group 4 (rows 0,2,4,6) [.1,.4,.3,.9]: sorted [.1,.3,.4,.9], lower median .3 (row 4);
    #   |dev| [.2,.1,0,.6] -> lower median .1, s .101: -.2/.101=-1.980198, .1/.101=.990099, 0, .6/.101=5.940594
    # group 1 (rows 1,3,5) [.3,.9,.1]: b .3, |dev| [0,.6,.2] -> MAD .2, s .201: 0, .6/.201=2.985075, -.2/.201=-.995025
    # group 8 (row 7) singleton: A 0 and it is its own pivot
    r = [0.1, 0.3, 0.4, 0.9, 0.3, 0.1, 0.9, 0.7]
    g = [4, 1, 4, 1, 4, 1, 4, 8]
    out = res(r, g, "mc_grpo")
    close(out.advantages.tolist(), [-1.980198, 0, 0.990099, 2.985075, 0, -0.995025, 5.940594, 0])
    assert out.keep.tolist() == [True, False, True, True, False, True, True, False]


# ---- NGRPO (§3 e): aug = r ++ [r_max]*k, (r - mean(aug)) / (std_unbiased(aug) + 1e-6)
@pytest.mark.parametrize("r,a", [
    ([0, 0, 0, 0], [-0.447213] * 4),                       # aug mean .2, std .447214; -.2/.447215
    ([1, 0, 0, 1], [0.730295, -1.095443, -1.095443, 0.730295]),   # mean .6, std .547723
    ([1, 0, 0, 0], [1.095443, -0.730295, -0.730295, -0.730295]),  # mean .4, std .547723
    ([1, 1, 1, 1], [0, 0, 0, 0]),                          # aug constant -> exactly 0
])
def test_ngrpo_worked(r, a):
    close(adv(r, [0] * 4, "ngrpo"), a)


def test_ngrpo_ragged_k_and_singleton():
    # group 3 [1,0] (rows 0,2): aug [1,0,1] mean 2/3, std sqrt((1/9+4/9+1/9)/2)=sqrt(1/3)=.577350
    #   (1/3)/.577351 = .577349, (-2/3)/.577351 = -1.154699 ; group 0 [1,1,1] (rows 1,3,4): all r_max -> 0
    # group 5 singleton: 0 (library), r with singleton_raw (verl)
    r, g = [1, 1, 0, 1, 1, 0.0], [3, 0, 3, 0, 0, 5]
    assert adv(r, g, "ngrpo") == pytest.approx([0.577349, 0, -1.154699, 0, 0, 0], abs=1e-6)
    assert adv([0.0], [0], "ngrpo", singleton_raw=True) == [0.0]
    assert adv([0.3], [0], "ngrpo", singleton_raw=True) == [0.3]
    # k=2: [0,0] -> aug [0,0,1,1] mean .5, std sqrt(1/3)=.577350; -.5/.577351 = -.866024
    close(adv([0, 0], [0, 0], "ngrpo", k=2), [-0.866024, -0.866024])
    with pytest.raises(RegistryError):
        res([1, 0], [0, 0], "ngrpo", k=-1)


# ---- GDPO (§4 e): per-reward group z-score (eps 1e-4), weighted sum, batch z-score (eps 1e-4)
def test_gdpo_worked():
    R = [[1, 1], [0, 1], [0, 0], [1, 1]]                   # correctness c, format f
    close(adv(R, [0] * 4, "gdpo"), [0.769054, -0.206077, -1.332031, 0.769054])
    # collapse demo: A (0,0),(0,1); B (0,0),(1,1): GRPO on the sums gives +-.707 for both
    R2 = [[0, 0], [0, 1], [0, 0], [1, 1]]
    close(adv(R2, [0, 0, 1, 1], "gdpo"), [-0.547680, 0.547680, -1.095360, 1.095360])


def test_gdpo_ragged_nan_weights_and_k1():
    # c only (f is constant in both groups -> contributes 0). group 7 rows 0,2,4 c [1,0,0]:
    #   z [1.154501,-.577250,-.577250]; group 2 rows 1,3 c [1,0]: z [.707007,-.707007]
    # pre mean 0, std sqrt((1.332873+2*.333218+2*.499859)/4) = .865885 -> pre/.865985
    R = [[1, 1], [1, 0], [0, 1], [0, 0], [0, 1]]
    g = [7, 2, 7, 2, 7]
    want = [1.333165, 0.816420, -0.666583, -0.816420, -0.666583]
    close(adv(R, g, "gdpo"), want)
    R_nan = [[1, float("nan")], [1, 0], [0, 1], [0, 0], [0, 1]]   # NaN -> 0 before the statistics
    assert adv(R_nan, g, "gdpo") != want                          # f of group 7 is now [0,1,1]: it varies
    close(adv(R_nan, g, "gdpo"), adv([[1, 0], [1, 0], [0, 1], [0, 0], [0, 1]], g, "gdpo"), 1e-12)
    # reward_weights [1, 0] drop f; reward_components None = K=1 on the scalar rewards
    b = Batch(rewards=torch.tensor([1.0, 1, 0, 0, 0]), group=torch.tensor(g),
              reward_components=torch.tensor(R, dtype=torch.float64), reward_weights=torch.tensor([1.0, 0.0]))
    close(build("advantage", "gdpo", {})(b).advantages.tolist(), want)
    # K=1 on [1,0,0,1]: z = .5/.577450 = .865875; batch std .865875*sqrt(4/3) = .999826; z/.999926 = .865939
    close(adv([1, 0, 0, 1], [0] * 4, "gdpo"), [0.865939, -0.865939, -0.865939, 0.865939])
    with pytest.raises(ValueError, match="lengths"):
        res([1, 0], [0, 0], "gdpo", batch_norm="token")


def test_token_whitening():
    # x [1,-1], lengths [1,3]: mu (1-3)/4 = -.5, var (1*1.5^2 + 3*.5^2)/(4-1) = 1 -> (x+.5)/sqrt(1+1e-8)
    b = Batch(rewards=torch.zeros(2), group=torch.tensor([0, 1]), lengths=torch.tensor([1, 3]))
    close(batch_whiten(torch.tensor([1.0, -1.0], dtype=torch.float64), b, "token", 0.0).tolist(), [1.5, -0.5])


# ---- DGPO (§5 e): G (r - mean) / (sum|r - mean| + 1e-4); zero-variance groups invalid
def test_dgpo_worked_and_ragged():
    close(adv([1, 0, 0, 1], [0] * 4, "dgpo"), [0.99995, -0.99995, -0.99995, 0.99995])      # 4*.5/2.0001
    close(adv([1, 0, 0, 0], [0] * 4, "dgpo"), [1.999867, -0.666622, -0.666622, -0.666622])  # 4*.75/1.5001
    # group 7 [1,0,0]: 3*(2/3)/(4/3+1e-4) = 1.499888, 3*(-1/3)/1.333433 = -.749944
    # group 2 [1,0]: 2*.5/1.0001 = .9999 ; group 5 [1,1] and singleton 9: invalid -> 0, keep False
    out = res([1, 1, 0, 0, 0, 1, 1, 3], [7, 2, 7, 7, 2, 5, 5, 9], "dgpo")
    close(out.advantages.tolist(), [1.499888, 0.9999, -0.749944, -0.749944, -0.9999, 0, 0, 0])
    assert out.keep.tolist() == [True] * 5 + [False] * 3
    assert out.metrics["dgpo/valid_groups"] == 2.0
    assert res([1, 1], [0, 0], "dgpo", drop_invalid=False).keep.tolist() == [True, True]
    assert adv([1, 0, 0, 0], [0] * 4, "dgpo", scale_rewards=False) == [0.75, -0.25, -0.25, -0.25]


def test_dgpo_dqw_weights():
    dqw = build("weighting", "dgpo_dqw", {})                 # T = 2
    # accuracies .25, .5, .75 valid, 4th group zero-std: lambda = 3 softmax(-acc/2) = [1.127270, .994812, .877918], 1
    r = torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1])
    g = torch.arange(4).repeat_interleave(4)
    perm = torch.tensor([5, 0, 15, 9, 1, 12, 3, 7, 2, 14, 4, 11, 6, 13, 8, 10])   # non-contiguous rows
    w = dqw(Batch(rewards=r[perm], group=g[perm]), None)
    lam = [1.127270, 0.994812, 0.877918, 1.0]
    close(w.tolist(), [lam[i] for i in g[perm].tolist()])
    assert w.dtype == torch.float64 and abs(sum(lam[:3]) - 3) < 1e-5
    # batch.correct is preferred: correct [1,0 | 0,0]; rewards vary in both groups (both valid);
    # group 1 accuracy 0 is treated as 1 (code detail): D = [-.5, -1] -> 2 softmax([-.25, -.5])
    b = Batch(rewards=torch.tensor([1.0, 0.2, 0.5, 0.1]), group=torch.tensor([0, 0, 1, 1]),
              correct=torch.tensor([1.0, 0, 0, 0]))
    e = math.exp(-0.25) / (math.exp(-0.25) + math.exp(-0.5))
    close(dqw(b, None).tolist(), [2 * e] * 2 + [2 * (1 - e)] * 2)
    # no valid group: all ones; uniform is ones
    assert dqw(Batch(rewards=torch.ones(3), group=torch.tensor([0, 0, 1])), None).tolist() == [1.0] * 3
    assert build("weighting", "uniform", {})(b, None).tolist() == [1.0] * 4
    with pytest.raises(RegistryError):
        build("weighting", "dgpo_dqw", {"temperature": 0.0})


def test_dgpo_token_mean_over_valid_groups():
    # §5 e: group 1 valid, lengths [10,30]; group 2 zero-std, lengths [20,40] (keep False)
    # -> every valid token weighs 1/40 (= token mean over all 100 tokens * zero_mask_ratio 2.5)
    mask = torch.zeros(4, 40, dtype=torch.float64)
    for i, L in enumerate([10, 30, 20, 40]):
        mask[i, :L] = 1
    out = res([1, 0, 1, 1], [0, 0, 1, 1], "dgpo")
    w = build("aggregation", "dgpo_token_mean", {})(mask, out.keep, 40)
    assert torch.allclose(w, mask * out.keep[:, None] / 40.0)
    assert float(w.sum()) == pytest.approx(1.0)
    assert torch.allclose(build("aggregation", "dgpo_token_mean", {})(mask, None, 40), mask / 100.0)
    assert float(build("aggregation", "dgpo_token_mean", {})(mask, torch.zeros(4, dtype=torch.bool)).sum()) == 0.0


# ---- A-GRAE (§6 e): hard/easy mix by mu_B, positives x min(1, mu_B/alpha)
def test_agrae_worked():
    # p = mu_B = .5: GRPO A .866024 -> .5*A/(.707108) and .5*A/(.292894), mixed .5/.5 then x min(1,.5)
    close(adv([1, 0, 0, 1], [0] * 4, "agrae"), [0.522690, -1.045380, -1.045380, 0.522690])
    close(adv([1, 0, 0, 1], [0] * 4, "agrae", scale=False), [0.301776, -0.603552, -0.603552, 0.301776])
    out = res([1, 0, 0, 1, 1, 0, 0, 0], [0] * 4 + [1] * 4, "agrae")            # mu_B = (.5+.25)/2
    close(out.advantages.tolist(), [0.432612, -1.153633, -1.153633, 0.432612, 0.562498, -0.499998, -0.499998, -0.499998])
    assert out.metrics["agrae/mu_b"] == 0.375


def test_agrae_ragged_override_edges():
    # groups [1,0,0] (p 1/3) and [1,0] (p .5), non-contiguous: mu_B = (1/3 + 1/2)/2 = 5/12 (over groups)
    out = res([1, 1, 0, 0, 0], [7, 2, 7, 2, 7], "agrae")
    close(out.advantages.tolist(), [0.505629, 0.380198, -0.606755, -0.912475, -0.606755])
    # mu_b field replaces the batch mean: mu_b=1 -> pure "hard" term, no suppression: .5*.866024/.707108
    close(adv([1, 0, 0, 1], [0] * 4, "agrae", mu_b=1.0)[:2], [0.612371, -0.612371])
    # all-equal, singleton and out-of-range rewards: finite, A = 0 where Â = 0
    assert adv([1, 1, 0, 0, 2.0], [0, 0, 1, 1, 2], "agrae") == [0.0] * 5
    assert all(math.isfinite(a) for a in adv([-1, 3, 2, -2], [0, 0, 1, 1], "agrae"))
    with pytest.raises(RegistryError, match="mu_b"):
        res([1, 0], [0, 0], "agrae", mu_b=1.5)


# ---- REINFORCE++-baseline: x = r - group mean, then (x - batch mean) / (batch std + 1e-6)
def test_reinforce_pp():
    # x [.5,-.5,-.5,.5,.75,-.25,-.25,-.25], mean 0, sum x^2 = 1 + .5625 + .1875 = 1.75, std sqrt(1.75/7) = .5
    close(adv([1, 0, 0, 1, 1, 0, 0, 0], [0] * 4 + [1] * 4, "reinforce_pp"),
          [0.999998, -0.999998, -0.999998, 0.999998, 1.499997, -0.499999, -0.499999, -0.499999])
    # ragged + singleton: x [2/3,1/2,-1/3,-1/3,-1/2,0]; sum x^2 = 7/6, std sqrt(7/30) = .483046
    close(adv([1, 1, 0, 0, 0, 5], [7, 2, 7, 7, 2, 9], "reinforce_pp"),
          [1.380128, 1.035096, -0.690064, -0.690064, -1.035096, 0.0])
    assert adv([3.0], [0], "reinforce_pp") == [0.0]


# ---- VGPO transfer (§15 e): z-score + lam_max*max(0, 1 - std/.5)*(r - .5)
def test_vgpo():
    assert adv([1, 1, 1, 1], [0] * 4, "vgpo") == [0.25] * 4      # std 0: .5*(1-.5)
    assert adv([0, 0, 0, 0], [0] * 4, "vgpo") == [-0.25] * 4
    close(adv([1, 0, 0, 1], [0] * 4, "vgpo"), [0.866024, -0.866024, -0.866024, 0.866024])  # std .577 > .5 -> lam 0
    # [.6,.4]: std sqrt(.02) = .141421, lam .5*(1-.282843) = .358579; .1/.141422 + .358579*.1 = .742960
    close(adv([0.6, 0.4], [0, 0], "vgpo"), [0.742960, -0.742960])
    assert adv([0.9], [3], "vgpo") == pytest.approx([0.2])       # singleton: .5*(.9-.5)


# ---- properties of every new estimator
def _ragged(seed=0, n=13):
    gen = torch.Generator().manual_seed(seed)
    group = torch.tensor([4, 9, 4, 1, 9, 4, 6, 1, 9, 4, 6, 9, 2])[:n]          # sizes 4,4,2,2,1; interleaved
    comps = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    w = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    return Batch(rewards=comps @ w / 3.5, group=group, reward_components=comps, reward_weights=w,
                 correct=(comps[:, 0] > 0.5).to(torch.float64), lengths=torch.randint(1, 20, (n,), generator=gen))


@pytest.mark.parametrize("method", ZOO)
def test_permuting_rows_permutes_output(method):
    b = _ragged()
    perm = torch.randperm(b.n, generator=torch.Generator().manual_seed(1))
    comp = build("advantage", method, {})
    a, p = comp(b), comp(b.select(perm))
    assert torch.allclose(a.advantages[perm], p.advantages, atol=1e-12)
    assert torch.equal(a.keep[perm], p.keep)                   # distinct rewards: no tie at the median


@pytest.mark.parametrize("method", LOCAL)
def test_ragged_equals_each_group_alone(method):
    b = _ragged()
    comp = build("advantage", method, {})
    full = comp(b)
    for gid in torch.unique(b.group):
        rows = (b.group == gid).nonzero().squeeze(1)
        alone = comp(b.select(rows))
        assert torch.allclose(full.advantages[rows], alone.advantages, atol=1e-12)
        assert torch.equal(full.keep[rows], alone.keep)


@pytest.mark.parametrize("method", ZOO)
def test_all_equal_and_singleton_groups(method):
    # group 0 mixed, group 1 all equal (.3), group 2 a singleton (.8)
    out = res([1, 0, 0, 0.3, 0.3, 0.3, 0.8], [0, 0, 0, 1, 1, 1, 2], method)
    a = out.advantages
    assert torch.isfinite(a).all()
    if method == "vgpo":                                        # anchor term: .5*(r - .5)
        assert a[3:].tolist() == pytest.approx([-0.1] * 3 + [0.15])
    elif method == "ngrpo":   # aug [.3,.3,.3,1]: mean .475, std sqrt((3*.175^2+.525^2)/3)=.35; -.175/.350001
        assert a[3:].tolist() == pytest.approx([-0.499999] * 3 + [0.0], abs=1e-6)
    else:
        assert a[3:].tolist() == [0.0] * 4
    assert res([0.4], [0], method).advantages.isfinite().all()  # a one-row batch


@pytest.mark.parametrize("method", sorted(set(names("advantage")) | set(ZOO)))
def test_every_registered_advantage_on_random_ragged_batch(method):
    b = _ragged(seed=3)
    comp = build("advantage", method, {})
    if comp.needs_greedy:          # ReMax: one greedy reward per group id (the loop fills it)
        b.extra["greedy_reward"] = torch.rand(int(b.group.max()) + 1, generator=torch.Generator().manual_seed(4))
    if comp.needs_values:          # GAE: the critic's values [N, T] over ragged completions
        t = int(b.lengths.max())
        b.completion_mask = (torch.arange(t)[None, :] < b.lengths[:, None]).to(torch.float64)
        b.extra["values"] = torch.randn(b.n, t, generator=torch.Generator().manual_seed(5)) * b.completion_mask
    if comp.needs_sum_pi2:         # OTB: the old policy's token log-probs and sum pi^2 [N, T] over ragged completions
        t = int(b.lengths.max())
        gen = torch.Generator().manual_seed(6)
        b.completion_mask = (torch.arange(t)[None, :] < b.lengths[:, None]).to(torch.float64)
        b.extra["old_logp"] = torch.log(torch.rand(b.n, t, generator=gen) * 0.9 + 0.05)
        b.extra["sum_pi2"] = (torch.rand(b.n, t, generator=gen) * 0.5 + 0.5) * b.completion_mask
    out = comp(b)
    shape = (b.n, int(b.lengths.max())) if comp.per_token else (b.n,)
    assert out.advantages.shape == shape and out.advantages.dtype == torch.float64
    assert out.keep.shape == (b.n,) and out.keep.dtype == torch.bool
    assert out.weights.shape == (b.n,) and out.weights.is_floating_point()
    assert torch.isfinite(out.advantages).all() and torch.isfinite(out.weights).all()
    w = build("weighting", "dgpo_dqw", {})(b, out)
    assert w.shape == (b.n,) and w.dtype == torch.float64 and torch.isfinite(w).all()
