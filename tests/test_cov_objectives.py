"""Clip-Cov and KL-Cov (arXiv 2505.22617; verl 0.9 ``clip_cov`` / ``kl_cov``): the verl
formulas on a fixed batch with hand numbers, deterministic random subsets. float64."""
import math

import pytest
import torch

from groupo.registry import RegistryError, build

D = torch.float64
# two rows of three tokens with the same log-probs, A = [2, -2]; mean A = 0, mean logp = -1.5
# cov = (A - 0)(logp + 1.5): row 0 = 2 * [1, -1.5, .5] = [2, -3, 1]; row 1 = [-2, 3, -1]
LOGP = [[-0.5, -3.0, -1.0], [-0.5, -3.0, -1.0]]
ADV = [2.0, -2.0]


def close(a, b, tol=1e-6):
    a, b = list(a), list(b)
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert abs(x - y) < tol, (a, b)


def run(name, params, lr, logp=LOGP, adv=ADV):
    logp = torch.tensor(logp, dtype=D, requires_grad=True)
    old = logp.detach() - torch.tensor(lr, dtype=D)
    loss, m = build("objective", name, params)(logp, old, torch.tensor(adv, dtype=D), torch.ones_like(old))
    loss.sum().backward()
    return loss.detach(), logp.grad, m


def test_clip_cov_all_candidates_detached():
    # on-policy (r = 1). Candidates 1 < cov < 5: row 0 token 0 (cov 2) and row 1 token 1 (cov 3);
    # cov = 1 (row 0 token 2) is not (strict bound). clip_ratio .5: int(.5 * 6) = 3 >= 2, both picked.
    loss, grad, m = run("clip_cov", {"clip_ratio": 0.5}, [[0.0] * 3] * 2)
    # pg = max(-A r, -A clip(r)) = -A: row 0 -2, row 1 +2; picked tokens * 0
    close(loss.flatten().tolist(), [0.0, -2.0, -2.0, 2.0, 0.0, 2.0])
    close(grad.flatten().tolist(), [0.0, -2.0, -2.0, 2.0, 0.0, 2.0])      # d(-A r)/dlogp = -A r
    assert m["cov/detached"].flatten().tolist() == [1.0, 0, 0, 0, 1.0, 0]


def test_clip_cov_excludes_tokens_ppo_already_clipped():
    # row 1 token 1: log r = log .5, A = -2: pg1 = 2 * .5 = 1 < pg2 = 2 * .8 = 1.6 -> clipped by PPO,
    # so it is not a candidate (verl sets its cov to -inf); only row 0 token 0 is detached
    lr = [[0.0] * 3, [0.0, math.log(0.5), 0.0]]
    loss, grad, m = run("clip_cov", {"clip_ratio": 0.5}, lr)
    close(loss.flatten().tolist(), [0.0, -2.0, -2.0, 2.0, 1.6, 2.0])
    close(grad.flatten().tolist(), [0.0, -2.0, -2.0, 2.0, 0.0, 2.0])      # the clipped token: constant 1.6
    assert m["clip/frac"].flatten().tolist() == [0, 0, 0, 0, 1.0, 0]
    assert m["cov/detached"].flatten().tolist() == [1.0, 0, 0, 0, 0, 0]


def test_clip_cov_random_subset_is_deterministic_per_data():
    # default clip_ratio 2e-4: max(int(2e-4 * 6), 1) = 1 of the 2 candidates is detached
    picks = set()
    for seed in range(16):
        a = run("clip_cov", {"seed": seed}, [[0.0] * 3] * 2)[2]["cov/detached"]
        b = run("clip_cov", {"seed": seed}, [[0.0] * 3] * 2)[2]["cov/detached"]
        assert torch.equal(a, b) and a.sum() == 1                      # same data, same token
        picks.add(int(a.flatten().nonzero()))
    assert picks == {0, 4}                                              # both candidates get drawn over seeds
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    run("clip_cov", {}, [[0.0] * 3] * 2)
    assert torch.equal(torch.rand(1), before)                           # the global RNG is untouched


def test_kl_cov_top_k_penalty_matches_verl():
    # log r: row 0 [.1, -.2, 0], row 1 [0, .3, -.1]; cov from the current logp: [2, -3, 1], [-2, 3, -1]
    # kl_ratio .34: k = max(int(6 * .34), 1) = 2 -> the two largest cov: row 1 token 1 (3), row 0 token 0 (2)
    lr = [[0.1, -0.2, 0.0], [0.0, 0.3, -0.1]]
    loss, grad, m = run("kl_cov", {"kl_ratio": 0.34}, lr)
    # -A r: row 0: -2e^.1 = -2.210342, -2e^-.2 = -1.637462, -2; row 1: 2, 2e^.3 = 2.699718, 2e^-.1 = 1.809675
    # + .1 |log r| on the picked: -2.210342 + .01 = -2.200342; 2.699718 + .03 = 2.729718
    close(loss.flatten().tolist(), [-2.200342, -1.637462, -2.0, 2.0, 2.729718, 1.809675])
    # gradient -A r + .1 sign(log r) on the picked: -2.210342 + .1 = -2.110342; 2.699718 + .1 = 2.799718
    close(grad.flatten().tolist(), [-2.110342, -1.637462, -2.0, 2.0, 2.799718, 1.809675])
    assert m["cov/penalised"].flatten().tolist() == [1.0, 0, 0, 0, 1.0, 0]
    # default kl_ratio 2e-4 -> k = 1: only the largest cov (row 1 token 1) is penalised
    loss1, _, m1 = run("kl_cov", {}, lr)
    assert m1["cov/penalised"].flatten().tolist() == [0, 0, 0, 0, 1.0, 0]
    assert abs(loss1[0, 0].item() + 2.210342) < 1e-6 and abs(loss1[1, 1].item() - 2.729718) < 1e-6


def test_cov_objectives_validate_and_do_not_claim_zero_advantage_skip():
    assert not build("objective", "clip_cov").zero_advantage_no_gradient
    assert not build("objective", "kl_cov").zero_advantage_no_gradient
    with pytest.raises(RegistryError):
        build("objective", "clip_cov", {"clip_cov_lb": 5.0, "clip_cov_ub": 1.0})
    with pytest.raises(RegistryError):
        build("objective", "kl_cov", {"kl_ratio": 0.0})
