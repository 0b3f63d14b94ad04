"""OPO, GPG, grpo_passk and passk: hand numbers, and verl 0.9's ``opo``, ``gpg`` and
``grpo_passk`` estimators reproduced on fixed batches (numbers written out). float64."""
import math

import pytest
import torch

from groupo.registry import RegistryError, build
from groupo.types import Batch

D = torch.float64


def close(a, b, tol=1e-6):
    a, b = list(a), list(b)
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert abs(x - y) < tol, (a, b)


def adv(method, rewards, group, lengths=None, **kw):
    b = Batch(rewards=torch.tensor(rewards, dtype=D), group=torch.tensor(group),
              lengths=None if lengths is None else torch.tensor(lengths))
    return build("advantage", method, kw)(b)


# ---- OPO (verl compute_opo_outcome_advantage)
def test_opo_length_weighted_baseline_matches_verl():
    # group 0: r [1,0,0,1], |o| [2,2,4,12]: b = (2*1 + 12*1)/20 = .7 -> A = [.3, -.7, -.7, .3]
    # group 1: r [1,0,0], |o| [3,1,2]: b = 3/6 = .5 -> A = [.5, -.5, -.5]
    # group 2: all equal [1,1] -> 0;  group 3: size 1, r = 1 -> 0 (verl: baseline 0 -> A = 1)
    r = [1, 0, 0, 1, 1, 0, 0, 1, 1, 1]
    g = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3]
    lens = [2, 2, 4, 12, 3, 1, 2, 5, 7, 4]
    close(adv("opo", r, g, lens).advantages.tolist(), [0.3, -0.7, -0.7, 0.3, 0.5, -0.5, -0.5, 0, 0, 0], 1e-12)
    verl = adv("opo", r, g, lens, singleton_raw=True).advantages.tolist()
    close(verl, [0.3, -0.7, -0.7, 0.3, 0.5, -0.5, -0.5, 0, 0, 1.0], 1e-12)
    # equal lengths: the baseline is the plain mean (Dr. GRPO's A): [.5, -.5, -.5, .5]
    close(adv("opo", [1, 0, 0, 1], [0] * 4, [3] * 4).advantages.tolist(), [0.5, -0.5, -0.5, 0.5], 1e-12)
    # lengths from the completion mask when batch.lengths is absent; neither: a clear error
    b = Batch(rewards=torch.tensor([1.0, 0.0], dtype=D), group=torch.tensor([0, 0]),
              completion_mask=torch.tensor([[1, 0, 0], [1, 1, 1]]))
    close(build("advantage", "opo")(b).advantages.tolist(), [0.75, -0.25])   # b = 1*1/4 = .25
    with pytest.raises(ValueError, match="lengths"):
        adv("opo", [1, 0], [0, 0])


# ---- GPG: r = [1,0,0,1 | 1,1,1,1 | 0,1,0,0]; centred x = [.5,-.5,-.5,.5 | 0 x4 | -.25,.75,-.25,-.25]
R = [1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0, 0]
G = [0] * 4 + [1] * 4 + [2] * 4
X = [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0, -0.25, 0.75, -0.25, -0.25]


def test_gpg_valid_sample_correction():
    # 12 rows, 4 in the all-equal group (M = 4): alpha = B/(B-M) = 12/8 = 1.5
    out = adv("gpg", R, G)
    close(out.advantages.tolist(), [1.5 * x for x in X], 1e-12)
    assert out.metrics["gpg/alpha"] == 1.5
    close(adv("gpg", R, G, alpha="none").advantages.tolist(), X, 1e-12)


def test_gpg_nonzero_reward_alpha_matches_verl():
    # verl compute_gpg_outcome_advantage: alpha = bsz / count_nonzero(scores) = 12 / 7 = 1.714286; f_norm 1
    out = adv("gpg", R, G, alpha="nonzero_reward")
    close(out.advantages.tolist(), [x * 12 / 7 for x in X], 1e-12)
    # e.g. row 9: .75 * 1.714286 = 1.285714; row 0: .5 * 1.714286 = .857143
    assert abs(out.advantages[9].item() - 1.285714) < 1e-6 and abs(out.advantages[0].item() - 0.857143) < 1e-6


def test_gpg_group_std_scale_and_singletons():
    # scale 'group': group 0 std sqrt(1/3) = .577350 -> +-.5/.577450 = +-.865875; group 2 std .5:
    # -.25/.5001 = -.499900, .75/.5001 = 1.499700; alpha 1.5
    a = adv("gpg", R, G, scale="group").advantages.tolist()
    close(a, [1.5 * v for v in [0.865875, -0.865875, -0.865875, 0.865875, 0, 0, 0, 0,
                                -0.499900, 1.499700, -0.499900, -0.499900]])
    # a size-1 group: 0 and invalid (alpha = 3/2 from the 2 valid rows); singleton_raw: alpha * r, valid
    close(adv("gpg", [1, 0, 2], [0, 0, 1]).advantages.tolist(), [0.75, -0.75, 0.0])
    close(adv("gpg", [1, 0, 2], [0, 0, 1], singleton_raw=True).advantages.tolist(), [0.5, -0.5, 2.0])
    assert adv("gpg", [1, 1], [0, 0]).advantages.tolist() == [0.0, 0.0]       # nothing valid: alpha 1
    with pytest.raises(RegistryError):
        build("advantage", "gpg", {"alpha": "batch"})


# ---- grpo_passk (verl compute_grpo_passk_outcome_advantage, eps 1e-6, unbiased std)
def test_grpo_passk_credits_only_the_best_row():
    # group 0 [1,0,0,1]: tie at the top -> r_max - r_second = 0 for every row
    # group 1 [0,1,0,0]: best row 5, gap 1, std = sqrt(.75/3) = .5 -> 1/(.5 + 1e-6) = 1.999996
    # group 2 [.2,.9,.5]: gap .9 - .5 = .4, std: mean .533333, squares .111111+.134444+.001111 = .246667,
    #         /2 = .123333 -> .351188; .4/.351189 = 1.138987
    r = [1, 0, 0, 1, 0, 1, 0, 0, 0.2, 0.9, 0.5, 1.0]
    g = [0] * 4 + [1] * 4 + [2] * 3 + [3]
    a = adv("grpo_passk", r, g).advantages.tolist()
    close(a, [0, 0, 0, 0, 0, 1.999996, 0, 0, 0, 1.138987, 0, 0])        # size-1 group: 0 (verl raises)
    close(adv("grpo_passk", r, g, scale="none").advantages.tolist(), [0] * 5 + [1.0, 0, 0, 0, 0.4, 0, 0], 1e-12)


# ---- passk: analytic Pass@k advantage (arXiv 2508.10751; authors' calc_adv), eps 1e-6
def test_passk_analytic_values():
    # n 4, k 2, c 1 ([0,1,0,0]): rho = 1 - C(3,2)/C(4,2) = 1 - 3/6 = .5, sigma .5
    #   A_pos = .5/.500001 = .999998; A_neg = (.5 - C(2,1)/C(3,1))/.500001 = (.5 - .666667)/.500001 = -.333333
    # n 4, k 2, c 2 ([1,0,0,1]): rho = 1 - C(2,2)/6 = 5/6, sigma = sqrt(5/36) = .372678
    #   A_pos = (1/6)/.372679 = .447212; A_neg = (1/6 - C(1,1)/C(3,1))/.372679 = -(1/6)/.372679 = -.447212
    # n 4, k 2, c 3: one negative < k -> every 2-subset passes, rho 1: all 0
    r = [0, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0, 1]
    g = [0] * 4 + [1] * 4 + [2] * 4
    a = adv("passk", r, g, k=2).advantages.tolist()
    close(a, [-0.333333, 0.999998, -0.333333, -0.333333, 0.447212, -0.447212, -0.447212, 0.447212, 0, 0, 0, 0])
    # k = 1 is GRPO with the population std: [1,0,0,1] -> +-.5/(.5 + 1e-6) = +-.999998
    close(adv("passk", [1, 0, 0, 1], [0] * 4, k=1).advantages.tolist(), [0.999998, -0.999998, -0.999998, 0.999998])
    # n 8, k 4, c 2: rho = 1 - C(6,4)/C(8,4) = 1 - 15/70 = .785714, sigma = sqrt(.785714*.214286) = .410326
    #   A_pos = .214286/.410327 = .522232; A_neg = (.214286 - C(5,3)/C(7,3))/.410327 = -.071429/.410327 = -.174077
    a8 = adv("passk", [1, 1, 0, 0, 0, 0, 0, 0], [0] * 8, k=4).advantages.tolist()
    close(a8, [0.522232] * 2 + [-0.174077] * 6)
    assert adv("passk", [0, 0, 0], [0] * 3).advantages.tolist() == [0.0] * 3           # no positive
    assert adv("passk", [1, 1], [0, 0]).advantages.tolist() == [0.0] * 2               # all positive
    # threshold: 0.5 counts as positive with threshold .5 (as [1,0,0,1] above, k 2)
    close(adv("passk", [0.5, 0, 0, 0.7], [0] * 4, k=2, threshold=0.5).advantages.tolist(),
          [0.447212, -0.447212, -0.447212, 0.447212])
    assert math.comb(6, 4) == 15 and math.comb(8, 4) == 70


def test_passk_config_check_and_validation(tiny_dir):
    from groupo.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="group_size"):
        load_config("grpo", [f"model.path={tiny_dir}", "advantage.name=passk", "advantage.k=9"])
    with pytest.raises(RegistryError):
        build("advantage", "passk", {"k": 0})
