"""CISPO, SAPO and GMPO: hand-computed values and gradients, and verl 0.9's formulas
(``cispo``, ``sapo``, ``geo_mean`` in core_algos.py) on fixed small batches. float64."""
import math

import pytest
import torch

from groupo.registry import RegistryError, build

D = torch.float64


def close(a, b, tol=1e-6):
    a, b = list(a), list(b)
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert abs(x - y) < tol, (a, b)


def run(name, params, old, lr, adv, mask=None):
    """loss [N, T] and d(sum loss)/dlogp for logp = old + lr."""
    old = torch.tensor(old, dtype=D)
    logp = (old + torch.tensor(lr, dtype=D)).requires_grad_(True)
    mask = torch.ones_like(old) if mask is None else torch.tensor(mask, dtype=D)
    loss, m = build("objective", name, params)(logp, old, torch.tensor(adv, dtype=D), mask)
    loss.sum().backward()
    return loss.detach(), logp.grad, m


# old log-probs and log-ratios: logp = [[-0.5, -2.1], [-0.5, -2.0]], r = [[e^.5, e^-.1], [1, e^-.5]]
OLD = [[-1.0, -2.0], [-0.5, -1.5]]
LR = [[0.5, -0.1], [0.0, -0.5]]
ADV = [1.0, -1.0]


def test_cispo_verl_clip_range():
    # verl cispo with clip_ratio 0.2/0.2: w = clip(r, .8, 1.2) = [[1.2, .904837], [1, .8]]
    # loss = -sg(w) A logp: row 0 (A=1): -1.2*-.5 = .6, -.904837*-2.1 = 1.900158
    #                        row 1 (A=-1): 1*-.5 = -.5, .8*-2.0 = -1.6
    loss, grad, m = run("cispo", {"eps_low": 0.2, "eps_high": 0.2}, OLD, LR, ADV)
    close(loss.flatten().tolist(), [0.6, 1.900158, -0.5, -1.6])
    # gradient -w A on every token (clipped ones included): [[-1.2, -.904837], [1, .8]]
    close(grad.flatten().tolist(), [-1.2, -0.904837, 1.0, 0.8])
    assert m["clip/frac"].flatten().tolist() == [1.0, 0.0, 0.0, 1.0]


def test_cispo_default_caps_at_five_without_lower_bound():
    # default eps_low None, eps_high 4: w = min(r, 5): [[1.648721, .904837], [1, .606531]]
    # loss: .5*1.648721 = .824361, 2.1*.904837 = 1.900158, -.5, -(.606531 * 2.0) = -1.213061
    loss, grad, _ = run("cispo", {}, OLD, LR, ADV)
    close(loss.flatten().tolist(), [0.824361, 1.900158, -0.5, -1.213061])
    close(grad.flatten().tolist(), [-1.648721, -0.904837, 1.0, 0.606531])
    # log r = 2: r = 7.389056 capped at 5 with A = 1: gradient -5 (not 0 as a PPO clip would give)
    _, grad, m = run("cispo", {}, [[-3.0]], [[2.0]], [1.0])
    assert abs(grad.item() + 5.0) < 1e-12 and m["clip/frac"].item() == 1.0
    _, grad, _ = run("cispo", {}, [[-3.0]], [[0.3]], [0.0])
    assert grad.item() == 0.0                              # A = 0: no gradient (zero_advantage_no_gradient)
    with pytest.raises(RegistryError):
        build("objective", "cispo", {"eps_low": 1.5})


def test_sapo_values_and_gradients_match_verl_gate():
    # f(r) = sigmoid(tau (r - 1)) * 4 / tau, tau 1 (A > 0) or 1.05 (A <= 0); loss -f A
    # row 0, A = 1: r = 1.648721: s = sigmoid(.648721) = .656722, f = 2.626889 -> loss -2.626889
    #               r = .904837:  s = sigmoid(-.095163) = .476227, f = 1.904909 -> loss -1.904909
    # row 1, A = -1: r = 1: s = .5, f = 4*.5/1.05 = 1.904762 -> loss 1.904762
    #               r = .606531: s = sigmoid(1.05*-.393469) = .398159, f = 1.516795 -> loss 1.516795
    loss, grad, m = run("sapo", {}, OLD, LR, ADV)
    close(loss.flatten().tolist(), [-2.626889, -1.904909, 1.904762, 1.516795])
    # d/dlogp = -A * 4 s (1 - s) * r: row 0: -4*.656722*.343278*1.648721 = -1.486739,
    #   -4*.476227*.523773*.904837 = -.902792; row 1: 4*.25*1 = 1 (on-policy: GRPO's gradient),
    #   4*.398159*.601841*.606531 = .581368
    close(grad.flatten().tolist(), [-1.486739, -0.902792, 1.0, 0.581368])
    close(m["sapo/gate"].flatten().tolist(), [2.626889, 1.904909, 1.904762, 1.516795])


def test_sapo_temperatures_and_clamp():
    # tau_pos 2, A = 2, log r = .3: r = 1.349859, s = sigmoid(2*.349859) = .668125, f = 4s/2 = 1.336250
    loss, grad, _ = run("sapo", {"tau_pos": 2.0}, [[-1.0]], [[0.3]], [2.0])
    assert abs(loss.item() + 2.672501) < 1e-6             # -A * 4 s / tau = -4 s = -2.672501
    assert abs(grad.item() + 2.394476) < 1e-6             # -A * 4 s (1 - s) r = -8 * .668125 * .331875 * 1.349859
    # log r = 50 is clamped to 20: the gate saturates at 4/tau; no overflow and no gradient
    loss, grad, _ = run("sapo", {}, [[-30.0]], [[50.0]], [-1.0])
    assert abs(loss.item() - 4 / 1.05) < 1e-12 and grad.item() == 0.0
    with pytest.raises(RegistryError):
        build("objective", "sapo", {"tau_neg": 0.0})


def test_gmpo_matches_verl_geo_mean():
    # row 0: A = 1, l = [.5, -.1, .2]: clip to [-.4, .4] -> [.4, -.1, .2]; A > 0: min(l, c) = [.4, -.1, .2]
    #        s0 = exp(.5/3) = 1.181360, loss -1.181360 on every token
    # row 1: A = -2, l = [.5, -.6, .1]: c = [.4, -.4, .1]; A < 0: max(l, c) = [.5, -.4, .1]
    #        s1 = exp(.2/3) = 1.068939, loss 2 * 1.068939 = 2.137878
    old = [[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]]
    lr = [[0.5, -0.1, 0.2], [0.5, -0.6, 0.1]]
    loss, _, m = run("gmpo", {}, old, lr, [1.0, -2.0])
    close(loss[0].tolist(), [-1.181360] * 3)
    close(loss[1].tolist(), [2.137878] * 3)
    # verl: pg_loss = mean over rows of -A s = (-1.181360 + 2.137878)/2 = .478259 = seq_mean_token_mean total
    oldt = torch.tensor(old, dtype=D)
    logp = (oldt + torch.tensor(lr, dtype=D)).requires_grad_(True)
    mask = torch.ones(2, 3, dtype=D)
    l, _ = build("objective", "gmpo")(logp, oldt, torch.tensor([1.0, -2.0], dtype=D), mask)
    total = (build("aggregation", "seq_mean_token_mean")(mask) * l).sum()
    assert abs(total.item() - 0.478259) < 1e-6
    total.backward()
    # d total/d logp_t = (1/2) * -A s / 3 on unclipped tokens: row 0: -1.181360/6 = -.196893 (token 0 clipped: 0)
    # row 1: 2*1.068939/6 = .356313 (token 1 clipped below for A < 0: 0)
    close(logp.grad[0].tolist(), [0.0, -0.196893, -0.196893])
    close(logp.grad[1].tolist(), [0.356313, 0.0, 0.356313])
    assert m["clip/high"][0].tolist() == [1.0, 0.0, 0.0] and m["clip/low"][1].tolist() == [0.0, 1.0, 0.0]


def test_gmpo_ragged_zero_advantage_and_validation():
    # row 0 has 2 real tokens of 3: l = [.2, .1 | pad 9]: s = exp(.15) = 1.161834, A = 1
    # row 1: A = 0 -> sgn 0, l' = 0, s = 1, loss 0 and no gradient
    loss, grad, _ = run("gmpo", {}, [[-1.0] * 3, [-1.0] * 3], [[0.2, 0.1, 9.0], [0.3, 0.3, 0.3]], [1.0, 0.0],
                        mask=[[1, 1, 0], [1, 1, 1]])
    close(loss[0].tolist(), [-math.exp(0.15), -math.exp(0.15), 0.0])
    assert loss[1].abs().sum() == 0 and grad[1].abs().sum() == 0
    # d(sum loss)/dlogp = 2 tokens * (-A s / 2) = -1.161834 on each real token, 0 on the pad
    close(grad[0].tolist(), [-math.exp(0.15), -math.exp(0.15), 0.0])
    # a wider range changes nothing when no token is clipped; eps must be >= 0
    loss2, _, _ = run("gmpo", {"eps_low": 1.0, "eps_high": 1.0}, [[-1.0] * 3], [[0.2, 0.1, 9.0]], [1.0],
                      mask=[[1, 1, 0]])
    close(loss2[0].tolist(), loss[0].tolist(), 1e-12)
    with pytest.raises(RegistryError):
        build("objective", "gmpo", {"eps_low": -0.1})
