"""Hand-computed numbers from ALGORITHMS.md §0-§1 (arithmetic in the comments)."""
import math

import pytest
import torch

import groupo
from groupo import ops
from groupo.registry import RegistryError, build
from groupo.types import Batch


def adv(rewards, group, method, **kw):
    return groupo.compute_advantages(torch.tensor(rewards, dtype=torch.float64),
                                     torch.tensor(group), method, **kw).advantages.tolist()


def close(a, b, tol=1e-6):
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert abs(x - y) < tol, (a, b)


# ---- GRPO (§1.1 e): unbiased std, eps 1e-4 (TRL)
def test_grpo_two_of_four():
    # mean .5, unbiased std sqrt(4*.25/3)=0.577350; .5/(0.577350+1e-4) = 0.865875
    close(adv([1, 0, 0, 1], [0, 0, 0, 0], "grpo"), [0.865875, -0.865875, -0.865875, 0.865875])


def test_grpo_eps_and_population_std():
    close(adv([1, 0, 0, 1], [0] * 4, "grpo", eps=1e-6), [0.866024, -0.866024, -0.866024, 0.866024])
    close(adv([1, 0, 0, 1], [0] * 4, "grpo", eps=0.0, unbiased=False), [1, -1, -1, 1])


def test_grpo_one_of_four():
    # mean .25, std sqrt((.5625 + 3*.0625)/3)=0.5; .75/.5001=1.49970, -.25/.5001=-0.49990
    close(adv([1, 0, 0, 0], [0] * 4, "grpo"), [1.4997, -0.4999, -0.4999, -0.4999], 1e-4)


def test_all_equal_group_is_exactly_zero():
    for m in ("grpo", "dr_grpo", "rloo"):
        assert adv([0, 0, 0, 0], [0] * 4, m) == [0.0] * 4
        assert adv([1, 1, 1], [3] * 3, m) == [0.0] * 3


def test_grpo_ragged_groups_and_singleton():
    # group 7: [1,0,0] mean 1/3, std sqrt((4/9+1/9+1/9)/2)=sqrt(1/3)=0.577350
    #   A = (2/3)/0.577450 = 1.154501, (-1/3)/0.577450 = -0.577250
    # group 2: [1,0] mean .5, std sqrt(.5)=0.707107; .5/0.707207 = 0.707007
    # group 9: singleton -> 0 (TRL); raw reward 5 with singleton_raw (verl)
    r, g = [1, 1, 0, 0, 0, 5], [7, 2, 7, 7, 2, 9]
    close(adv(r, g, "grpo"), [1.154501, 0.707007, -0.577250, -0.577250, -0.707007, 0.0])
    assert adv(r, g, "grpo", singleton_raw=True)[-1] == 5.0


def test_grpo_batch_scale():
    # scale=batch: centred per group, divided by the std of all 4 rewards
    r = [1, 0, 1, 1]
    std = torch.tensor(r, dtype=torch.float64).std().item()
    close(adv(r, [0, 0, 1, 1], "grpo", scale="batch"), [0.5 / (std + 1e-4), -0.5 / (std + 1e-4), 0, 0])


# ---- Dr. GRPO (§1.2 e) and RLOO (§1.5 e)
def test_dr_grpo():
    close(adv([1, 0, 0, 1], [0] * 4, "dr_grpo"), [0.5, -0.5, -0.5, 0.5])
    close(adv([1, 0, 0, 0], [0] * 4, "dr_grpo"), [0.75, -0.25, -0.25, -0.25])


def test_rloo():
    close(adv([1, 0, 0, 1], [0] * 4, "rloo"), [2 / 3, -2 / 3, -2 / 3, 2 / 3])
    close(adv([1, 0, 0, 0], [0] * 4, "rloo"), [1, -1 / 3, -1 / 3, -1 / 3])
    # ragged: [1,0,0] -> 1-0=1, 0-.5=-.5 ; [1,0] -> 1, -1
    close(adv([1, 0, 0, 1, 0], [0, 0, 0, 1, 1], "rloo"), [1, -0.5, -0.5, 1, -1])


def test_result_shapes_and_unknown_params():
    res = groupo.compute_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), "grpo")
    assert res.keep.dtype == torch.bool and res.keep.all()
    assert res.weights.tolist() == [1.0, 1.0]
    with pytest.raises(RegistryError, match="did you mean 'eps'"):
        groupo.compute_advantages([1.0, 0.0], [0, 0], "grpo", epz=1e-4)
    with pytest.raises(RegistryError, match="unknown advantage 'grpoo'"):
        groupo.compute_advantages([1.0, 0.0], [0, 0], "grpoo")


# ---- ops
def test_ops_median_mad_ragged():
    x = torch.tensor([3.0, 1.0, 2.0, 10.0, 4.0, 0.0, 1.0])
    g = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    # group 0 [3,1,2]: median 2, |dev| [1,1,0] -> mad 1; group 1 [10,4,0,1]: median 2.5, |dev| [7.5,1.5,2.5,1.5] -> 2.0
    assert ops.group_median(x, g).tolist() == [2, 2, 2, 2.5, 2.5, 2.5, 2.5]
    assert ops.group_mad(x, g).tolist() == [1, 1, 1, 2, 2, 2, 2]
    assert ops.count(g).tolist() == [3, 3, 3, 4, 4, 4, 4]
    assert ops.all_equal(torch.tensor([1.0, 1, 0, 2]), torch.tensor([0, 0, 1, 1])).tolist() == [True, True, False, False]


# ---- PPO clip (§0.4, §1.1 e) with eps_low .2, eps_high .28
def _ppo(ratio, a, **kw):
    obj = build("objective", "ppo_clip", {"eps_low": 0.2, "eps_high": 0.28, **kw})
    logp = torch.tensor([[math.log(ratio)]], dtype=torch.float64, requires_grad=True)
    loss, m = obj(logp, torch.zeros(1, 1, dtype=torch.float64), torch.tensor([a], dtype=torch.float64), torch.ones(1, 1))
    loss.sum().backward()
    return loss.item(), logp.grad.item(), m["clip/frac"].item()


def test_ppo_clip_values_and_gradients():
    loss, grad, clip = _ppo(1.3, 1.0)        # min(1.3, 1.28) = 1.28, clipped: no gradient
    assert abs(loss + 1.28) < 1e-12 and grad == 0.0 and clip == 1.0
    loss, grad, clip = _ppo(0.7, -1.0)       # min(-0.7, -0.8) = -0.8, clipped: no gradient
    assert abs(loss - 0.8) < 1e-12 and grad == 0.0 and clip == 1.0
    loss, grad, clip = _ppo(1.1, 1.0)        # unclipped: loss -1.1, d(-rho)/dlogp = -rho = -1.1
    assert abs(loss + 1.1) < 1e-12 and abs(grad + 1.1) < 1e-12 and clip == 0.0
    loss, grad, _ = _ppo(1.5, -1.0)          # A<0, rho above the range: unclipped branch -1.5 (min), grad +1.5
    assert abs(loss - 1.5) < 1e-12 and abs(grad - 1.5) < 1e-12


def test_dual_clip_caps_negative_advantage_loss():
    loss, grad, _ = _ppo(5.0, -1.0, dual_clip=3.0)  # loss 5 capped at -A*c = 3, constant: no grad
    assert abs(loss - 3.0) < 1e-12 and grad == 0.0
    loss, _, _ = _ppo(5.0, -1.0)
    assert abs(loss - 5.0) < 1e-12
    with pytest.raises(RegistryError):
        build("objective", "ppo_clip", {"dual_clip": 0.5})


# ---- KL (§0.4)
def test_k3_values_and_gradient():
    k3 = build("kl", "k3", {})
    logp = torch.tensor([-1.0, -1.5], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([-1.5, -1.0], dtype=torch.float64)
    kl = k3(logp, ref)
    close(kl.tolist(), [0.106531, 0.148721])  # e^-.5+.5-1 ; e^.5-.5-1
    kl.sum().backward()
    # d/dlogp [exp(ref-logp) - (ref-logp) - 1] = 1 - exp(ref-logp)
    close(logp.grad.tolist(), [1 - math.exp(-0.5), 1 - math.exp(0.5)])


def test_k1_k2():
    logp, ref = torch.tensor([-1.0]), torch.tensor([-1.5])
    assert build("kl", "k1", {})(logp, ref).item() == pytest.approx(0.5)
    assert build("kl", "k2", {})(logp, ref).item() == pytest.approx(0.125)
    assert build("kl", "none", {})(logp, ref).item() == 0.0
    with pytest.raises(RegistryError):
        build("kl", "none", {"coef": 0.1})


# ---- aggregation (§0.5)
MASK = torch.tensor([[1.0, 1, 0], [1, 0, 0]])
LOSS = torch.tensor([[1.0, 2, 9], [4, 9, 9]], dtype=torch.float64)


@pytest.mark.parametrize("name,expected", [
    ("seq_mean_token_mean", ((1 + 2) / 2 + 4 / 1) / 2),  # 2.75
    ("token_mean", (1 + 2 + 4) / 3),
    ("seq_sum_const", (1 + 2 + 4) / (2 * 3)),            # N_seq=2, L_max=3
])
def test_aggregation_modes(name, expected):
    w = build("aggregation", name, {})(MASK, None, 3)
    assert (w * LOSS).sum().item() == pytest.approx(expected)


def test_aggregation_keep_mask_excludes_rows():
    keep = torch.tensor([True, False])
    w = build("aggregation", "seq_mean_token_mean", {})(MASK, keep, 3)
    assert (w * LOSS).sum().item() == pytest.approx(1.5)
    w = build("aggregation", "seq_sum_const", {"max_length": 4})(MASK, keep, 3)
    assert (w * LOSS).sum().item() == pytest.approx(3 / 4)


def test_zero_variance_filter():
    b = Batch(rewards=torch.tensor([1.0, 1, 0, 1, 0, 0]), group=torch.tensor([0, 0, 1, 1, 2, 2]))
    assert build("filter", "zero_variance", {})(b).tolist() == [False, False, True, True, False, False]
    assert build("filter", "none", {})(b).all()
