"""Issue 22 correctness follow-ups: flat and size-1 groups under token-level batch whitening
(reinforce_pp, gdpo) against verl 0.9's formulas, and ppo_clip's log-ratio clamp.
Numbers by hand (arithmetic beside each value), float64."""
import math

import pytest
import torch

from groupo.registry import RegistryError, build
from groupo.types import Batch

D = torch.float64


def close(a, b, tol=1e-6):
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert abs(x - y) < tol, (a, b)


# Peer worked example: r = [1,0,1,1], groups [0,0,1,1], lengths [2,4,3,1].
# x = r - mean_g(r) = [0.5, -0.5, 0, 0]; token weights w = lengths, 10 tokens.
# mu = (2*0.5 + 4*(-0.5) + 0 + 0) / 10 = -0.1
# var = (2*0.6^2 + 4*0.4^2 + 3*0.1^2 + 1*0.1^2) / (10 - 1) = (0.72 + 0.64 + 0.03 + 0.01) / 9 = 1.4/9
# 1/sqrt(1.4/9 + 1e-8) = 1/0.394405319 = 2.535462679
# A = (x - mu) * 2.535462679 = [0.6, -0.4, 0.1, 0.1] * 2.535462679
VERL_TOKEN = [1.521277607, -1.014185072, 0.253546268, 0.253546268]
PEER = Batch(rewards=torch.tensor([1.0, 0, 1, 1], dtype=D), group=torch.tensor([0, 0, 1, 1]),
             lengths=torch.tensor([2, 4, 3, 1]))


def test_reinforce_pp_token_flat_group_default_zero_and_verl_option():
    a = build("advantage", "reinforce_pp", {"batch_norm": "token"})(PEER).advantages.tolist()
    close(a, VERL_TOKEN[:2] + [0.0, 0.0])                  # default: the all-equal group gets exactly 0
    assert a[2] == 0.0 and a[3] == 0.0
    verl = build("advantage", "reinforce_pp", {"batch_norm": "token", "flat_zero": False})
    close(verl(PEER).advantages.tolist(), VERL_TOKEN)       # verl keeps -mu/sigma = 0.1 * 2.5355 = 0.253546


def test_gdpo_token_flat_group_verl_option():
    # K = 1, verl eps 1e-6: group 0 [1, 0]: mean .5, std sqrt(.5) = .707107 -> z = +-.5/(.707107 + 1e-6)
    # = +-0.707106; group 1 all equal -> 0. Whitening is scale-free up to the 1e-8: same A as above.
    g = build("advantage", "gdpo", {"batch_norm": "token", "flat_zero": False, "eps": 1e-6})
    close(g(PEER).advantages.tolist(), VERL_TOKEN)
    a = build("advantage", "gdpo", {"batch_norm": "token"})(PEER).advantages.tolist()
    assert a[2] == 0.0 and a[3] == 0.0
    close(a[:2], VERL_TOKEN[:2])


def test_reinforce_pp_singleton_raw_matches_verl_baseline():
    # verl reinforce_plus_plus_baseline: a size-1 group has mean 0, so x = r.
    # r = [1, 0, 2, 1], groups [0, 0, 1, 2], lengths [2, 4, 3, 1]: x = [0.5, -0.5, 2, 1]
    # mu = (2*.5 - 4*.5 + 3*2 + 1*1)/10 = 0.6; var = (2*.01 + 4*1.21 + 3*1.96 + .16)/9 = 10.9/9 = 1.211111
    # 1/sqrt(1.211111 + 1e-8) = 0.908673803; A = (x - .6) * .908674 = [-.1, -1.1, 1.4, .4] * .908674
    b = Batch(rewards=torch.tensor([1.0, 0, 2, 1], dtype=D), group=torch.tensor([0, 0, 1, 2]),
              lengths=torch.tensor([2, 4, 3, 1]))
    verl = build("advantage", "reinforce_pp", {"batch_norm": "token", "flat_zero": False, "singleton_raw": True})
    close(verl(b).advantages.tolist(), [-0.090867380, -0.999541184, 1.272143324, 0.363469521])
    # default: size-1 groups are flat -> 0 exactly; x = [.5, -.5, 0, 0] -> the peer example's first two
    a = build("advantage", "reinforce_pp", {"batch_norm": "token"})(b).advantages.tolist()
    close(a, [1.521277607, -1.014185072, 0.0, 0.0])
    # sequence mode with singleton_raw: x = [.5, -.5, 2, 1], mean .75, unbiased std
    # sqrt((.0625 + 1.5625 + 1.5625 + .0625)/3) = sqrt(1.083333) = 1.040833; A = (x - .75)/(1.040833 + 1e-6)
    s = build("advantage", "reinforce_pp", {"singleton_raw": True})(b).advantages.tolist()
    close(s, [-0.240192, -1.200960, 1.200960, 0.240192])


def test_gdpo_singleton_raw_matches_verl():
    # verl gdpo (K = 1, eps 1e-6): group 0 [1, 0] -> z = +-0.707106; size-1 groups: (r - 0)/(1 + 1e-6)
    # pre = [.707106, -.707106, 1.999998, .999999]; token whitening with lengths [2, 4, 3, 1]:
    # mu = (2*.707106 - 4*.707106 + 3*1.999998 + .999999)/10 = 0.558578
    # var = (2*.148528^2 + 4*1.265684^2 + 3*1.441420^2 + .441421^2)/9 = (.044121 + 6.407822 + 6.233075 + .194853)/9
    #     = 12.879871/9 = 1.431097; 1/sqrt(1.431097 + 1e-8) = 0.835922
    # A = (pre - mu) * .835922 = [0.124157, -1.058012, 1.204914, 0.368993]
    b = Batch(rewards=torch.tensor([1.0, 0, 2, 1], dtype=D), group=torch.tensor([0, 0, 1, 2]),
              lengths=torch.tensor([2, 4, 3, 1]))
    g = build("advantage", "gdpo", {"batch_norm": "token", "flat_zero": False, "singleton_raw": True, "eps": 1e-6})
    close(g(b).advantages.tolist(), [0.124157, -1.058012, 1.204914, 0.368993])


def test_flat_zero_and_singleton_raw_are_booleans():
    with pytest.raises(RegistryError):
        build("advantage", "reinforce_pp", {"flat_zero": "no"})
    with pytest.raises(RegistryError):
        build("advantage", "gdpo", {"singleton_raw": 1})


# ---- ppo_clip log-ratio clamp (verl compute_policy_loss_vanilla: clamp(log rho, -20, 20))
def _ppo(log_ratio, a, **kw):
    obj = build("objective", "ppo_clip", {"eps_low": 0.2, "eps_high": 0.2, **kw})
    logp = torch.tensor([[log_ratio]], dtype=D, requires_grad=True)
    loss, m = obj(logp, torch.zeros(1, 1, dtype=D), torch.tensor([a], dtype=D), torch.ones(1, 1, dtype=D))
    loss.sum().backward()
    return loss.item(), logp.grad.item(), m["ratio/mean"].item()


def test_ppo_log_ratio_clamped_at_20_for_negative_advantage():
    # A = -1, log rho = 50: min(-rho, -1.2) = -rho, so loss = rho; clamped rho = e^20 = 485165195.4
    loss, grad, ratio = _ppo(50.0, -1.0)
    assert abs(loss - math.exp(20)) < 1e-3 and abs(ratio - math.exp(20)) < 1e-3
    assert grad == 0.0                                     # past the clamp: no gradient (verl's clamp too)
    loss_off, grad_off, _ = _ppo(50.0, -1.0, log_ratio_clamp=None)
    assert abs(loss_off / math.exp(50) - 1) < 1e-12 and abs(grad_off / math.exp(50) - 1) < 1e-12   # 5.18e21
    assert _ppo(50.0, -1.0, log_ratio_clamp=0.0)[0] == loss_off                                     # 0 = off too
    loss5, _, _ = _ppo(50.0, -1.0, log_ratio_clamp=5.0)
    assert abs(loss5 - math.exp(5)) < 1e-9                 # 148.413159
    # below: log rho = -50 with A = +1: min(rho, 0.8) * A = e^-20 = 2.061154e-9 -> loss -2.061154e-9
    loss_low, _, _ = _ppo(-50.0, 1.0)
    assert abs(loss_low + math.exp(-20)) < 1e-15


@pytest.mark.parametrize("log_ratio, a", [(0.1, 1.0), (-0.3, -1.0), (math.log(1.5), -1.0), (19.9, -0.5)])
def test_ppo_log_ratio_clamp_leaves_normal_ratios_unchanged(log_ratio, a):
    assert _ppo(log_ratio, a) == _ppo(log_ratio, a, log_ratio_clamp=None)      # bit for bit
    with pytest.raises(RegistryError, match="log_ratio_clamp"):
        build("objective", "ppo_clip", {"log_ratio_clamp": -1.0})
