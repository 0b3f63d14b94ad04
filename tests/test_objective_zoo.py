"""GSPO and DisCO objectives: hand-computed numbers from ALGORITHMS.md §1.4 and §7."""
import math

import pytest
import torch

from groupo.registry import RegistryError, build, params_of

D = torch.float64


def close(a, b, tol=1e-6):
    a, b = list(a), list(b)
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert abs(x - y) < tol, (a, b)


def _gspo_case(name, a):
    # one sequence of 2 tokens, log-ratios [0.1, -0.3]: s = exp(mean) = exp(-0.1) = 0.904837
    old = torch.tensor([[-1.0, -2.0]], dtype=D)
    logp = (old + torch.tensor([[0.1, -0.3]], dtype=D)).requires_grad_(True)
    mask = torch.ones(1, 2, dtype=D)
    loss, m = build("objective", name)(logp, old, torch.tensor([a], dtype=D), mask)
    return logp, loss, m


@pytest.mark.parametrize("name", ["gspo", "gspo_token"])
def test_gspo_positive_advantage_unclipped(name):
    logp, loss, m = _gspo_case(name, 1.0)
    s = math.exp(-0.1)                                   # 0.904837 < 1 - 3e-4: clip branch is 0.9997*1
    close(loss[0].tolist(), [-s, -s])                    # every token carries -min(s, 0.9997) = -0.904837
    assert abs(s - 0.904837) < 1e-6
    # seq_mean_token_mean: (1/1)(1/2)(loss_1 + loss_2) = -s; d/dlogp_t = -s * (1/2) = -0.452419
    (loss.sum() / 2).backward()
    close(logp.grad[0].tolist(), [-s / 2, -s / 2])
    assert m["clip/frac"].sum() == 0 and m["ratio/mean"].shape == (1, 2)


@pytest.mark.parametrize("name", ["gspo", "gspo_token"])
def test_gspo_negative_advantage_clipped(name):
    logp, loss, m = _gspo_case(name, -1.0)
    # min(-0.904837, clip(0.904837, 0.9997, 1.0004) * -1 = -0.9997) = -0.9997; loss +0.9997
    close(loss[0].tolist(), [0.9997, 0.9997])
    (loss.sum() / 2).backward()
    close(logp.grad[0].tolist(), [0.0, 0.0])            # clipped: no gradient
    assert m["clip/low"].tolist() == [[1.0, 1.0]] and m["clip/frac"].tolist() == [[1.0, 1.0]]


def test_gspo_ragged_lengths_empty_row_and_aggregation():
    # row 0: 3 tokens, log-ratios [0.2, 0, -0.05] -> mean 0.05, s0 = e^0.05 = 1.051271 > 1.0004 -> clipped for A=+1
    # row 1: 1 token (2 pads), log-ratio -0.5 -> s1 = e^-0.5 = 0.606531, A = +2 -> objective 1.213061
    # row 2: no tokens -> s2 = 1 (guarded), A = -1 -> objective -1
    old = torch.zeros(3, 3, dtype=D)
    diff = torch.tensor([[0.2, 0.0, -0.05], [-0.5, 9.0, 9.0], [5.0, 5.0, 5.0]], dtype=D)
    logp = (old + diff).requires_grad_(True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=D)
    adv = torch.tensor([1.0, 2.0, -1.0], dtype=D)
    loss, _ = build("objective", "gspo")(logp, old, adv, mask)
    s0, s1 = math.exp(0.05), math.exp(-0.5)
    close(loss[0].tolist(), [-1.0004] * 3)
    close(loss[1].tolist(), [-2 * s1, 0.0, 0.0])
    close(loss[2].tolist(), [0.0, 0.0, 0.0])
    # seq_mean_token_mean over the 2 non-empty rows = paper's (1/G) sum_i loss_i
    w = build("aggregation", "seq_mean_token_mean")(mask)
    total = (w * loss).sum()
    assert abs(float(total.detach()) - (-1.0004 - 2 * s1) / 2) < 1e-9
    total.backward()
    # row 1: d/dlogp = (1/2) * -2 * s1 (|o|=1) = -0.606531 on its one token
    close(logp.grad[1].tolist(), [-s1, 0.0, 0.0])
    close(logp.grad[0].tolist(), [0.0, 0.0, 0.0])
    assert s0 > 1.0004


def test_gspo_token_same_value_and_gradient_as_gspo():
    g = torch.Generator().manual_seed(0)
    old = torch.randn(4, 5, generator=g, dtype=D) * 0.1 - 1
    diff = torch.randn(4, 5, generator=g, dtype=D) * 1e-3
    mask = torch.tensor([[1] * 5, [1, 1, 0, 0, 0], [1] * 4 + [0], [1, 0, 0, 0, 0]], dtype=D)
    adv = torch.tensor([1.0, -0.5, 0.3, -2.0], dtype=D)
    w = build("aggregation", "seq_mean_token_mean")(mask)
    out = []
    for name in ("gspo", "gspo_token"):
        logp = (old + diff).requires_grad_(True)
        loss, _ = build("objective", name, {"eps_low": 0.2, "eps_high": 0.2})(logp, old, adv, mask)
        total = (w * loss).sum()
        total.backward()
        out.append((float(total.detach()), logp.grad.clone()))
    assert abs(out[0][0] - out[1][0]) < 1e-12
    assert torch.allclose(out[0][1], out[1][1], atol=1e-12)


def test_gspo_log_ratio_clamp_and_validation():
    # log s = 50 clamped to 10; A = -1 uses the unclipped branch -e^10
    old = torch.zeros(1, 1, dtype=D)
    loss, _ = build("objective", "gspo")(old + 50, old, torch.tensor([-1.0], dtype=D), torch.ones(1, 1, dtype=D))
    assert abs(float(loss) - math.exp(10)) < 1e-6
    with pytest.raises(RegistryError, match="eps_low"):
        build("objective", "gspo", {"eps_low": 1.5})


# ---- DisCO (§7 e): one valid question, r = [1,0,0,1], logL scores s = [-0.5, -1.0, -2.0, -0.8]
def _disco_grad(params, scores, correct, group):
    """dLoss/ds via logp of one token per row (logL: s_i = logp_i), old = logp (KL 0, no penalty)."""
    logp = torch.tensor(scores, dtype=D)[:, None].requires_grad_(True)
    obj = build("objective", "disco", params)
    loss, m = obj.batch_loss(logp, logp.detach(), torch.ones_like(logp), torch.tensor(group),
                             torch.tensor(correct, dtype=D))
    loss.backward()
    return float(loss.detach()), logp.grad[:, 0].tolist(), m


def test_disco_b_gradient_and_objective():
    # J = mean_pos(-0.5, -0.8) - mean_neg(-1, -2) = -0.65 + 1.5 = 0.85; dLoss/ds = -1/|pos|, +1/|neg|
    loss, grad, m = _disco_grad({"variant": "disco_b"}, [-0.5, -1.0, -2.0, -0.8], [1, 0, 0, 1], [0] * 4)
    close(grad, [-0.5, 0.5, 0.5, -0.5])
    assert abs(loss + 0.85) < 1e-9 and abs(m["disco/objective"] - 0.85) < 1e-9
    assert m["disco/penalty_coef"] == 0.0 and m["disco/valid_groups"] == 1.0


def test_disco_tau10_gradient_and_objective():
    # negatives weighted by softmax(s_neg / 10) = softmax([-0.1, -0.2]) = [0.524979, 0.475021]
    # J = -0.65 - 10 * log(mean(e^-0.1, e^-0.2)) = 0.837505
    loss, grad, m = _disco_grad({"tau": 10.0}, [-0.5, -1.0, -2.0, -0.8], [1, 0, 0, 1], [0] * 4)
    close(grad, [-0.5, 0.524979, 0.475021, -0.5])
    assert abs(m["disco/objective"] - 0.837505) < 1e-6
    # tau None = 10 for logL (the authors' scripts)
    _, grad2, _ = _disco_grad({}, [-0.5, -1.0, -2.0, -0.8], [1, 0, 0, 1], [0] * 4)
    close(grad2, grad, 1e-12)


def test_disco_ragged_groups_invalid_groups_count_in_q():
    # rows of group 7: [0, 2, 5] (s -0.5, -1.0, -0.8; correct 1, 0, 1), group 3: [1, 4] all correct (invalid)
    # group 9: row 3 alone, wrong (invalid). Q = 3; DisCO-b J = (1/3) * 0.35 (pos mean -0.65, neg -1.0)
    s = [-0.5, -0.3, -1.0, -0.7, -0.2, -0.8]
    correct = [1, 1, 0, 0, 1, 1]
    group = [7, 3, 7, 9, 3, 7]
    _, grad, m = _disco_grad({"variant": "disco_b"}, s, correct, group)
    close(grad, [-1 / 6, 0.0, 1 / 3, 0.0, 0.0, -1 / 6])     # (1/Q) * (-1/2, +1/1, -1/2)
    assert abs(m["disco/objective"] - 0.35 / 3) < 1e-9
    assert m["disco/groups"] == 3.0 and m["disco/valid_groups"] == 1.0
    # DisCO (tau=1) on two negatives [-1, -2] in a ragged group of 3, interleaved with another group
    _, grad, _ = _disco_grad({"tau": 1.0}, [-1.0, 0.0, -2.0, -0.5, -0.4], [0, 1, 0, 1, 0], [1, 1, 1, 2, 2])
    e1, e2 = math.exp(-1.0), math.exp(-2.0)
    # Q = 2: group 1 weights (1/2)(-1 pos; softmax([-1,-2]) on negs); group 2 (1/2)(-1 pos, +1 neg)
    close(grad, [0.5 * e1 / (e1 + e2), -0.5, 0.5 * e2 / (e1 + e2), -0.5, 0.5])


def test_disco_binarises_non_binary_correct():
    # correct -1 and 0.5 are negatives (>= 1 positive): same gradient as [1, 0, 0, 1]
    _, grad, _ = _disco_grad({"variant": "disco_b"}, [-0.5, -1.0, -2.0, -0.8], [1.0, -1.0, 0.5, 2.0], [0] * 4)
    close(grad, [-0.5, 0.5, 0.5, -0.5])


def test_disco_penalty_coefficient_and_no_valid_group():
    # all rows correct -> no valid group, J = 0 (still attached to the graph)
    # kl_type kl: KL = mean(old - logp) over 4 tokens = 3e-4 -> coef 1e3 * (3e-4 - 1e-4) = 0.2, value 6e-5
    old = torch.zeros(2, 2, dtype=D)
    logp = (old - 3e-4).requires_grad_(True)
    obj = build("objective", "disco")
    loss, m = obj.batch_loss(logp, old, torch.ones(2, 2, dtype=D), torch.tensor([0, 0]), torch.ones(2, dtype=D))
    assert abs(m["disco/penalty_coef"] - 0.2) < 1e-9 and abs(float(loss.detach()) - 6e-5) < 1e-12
    loss.backward()
    close(logp.grad.flatten().tolist(), [0.2 * -0.25] * 4, 1e-12)   # 0.2 * dKL/dlogp = 0.2 * (-1/4)
    # KL = 5e-5 <= delta: coefficient 0, loss 0, backward still works
    logp = (old - 5e-5).requires_grad_(True)
    loss, m = obj.batch_loss(logp, old, torch.ones(2, 2, dtype=D), torch.tensor([0, 0]), torch.ones(2, dtype=D))
    assert m["disco/penalty_coef"] == 0.0 and float(loss.detach()) == 0.0
    loss.backward()
    assert logp.grad.abs().sum() == 0


def test_disco_lratio_and_low_var_kl():
    # Lratio: s_i = mean_t exp(logp - old); on-policy s = 1 and ds/dlogp_t = 1/|o_i|
    old = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], dtype=D)
    logp = old.clone().requires_grad_(True)
    mask = torch.tensor([[1, 1], [1, 0]], dtype=D)
    obj = build("objective", "disco", {"score": "Lratio", "kl_type": "low_var_kl"})
    assert obj.tau_value == 1.0
    loss, m = obj.batch_loss(logp, old, mask, torch.tensor([4, 4]), torch.tensor([1.0, 0.0], dtype=D))
    loss.backward()
    # J = 1 - 1 * log(e^{1/1}) = 0; grads: pos row -1 * (1/2 per token), neg row +1 on its one token
    close(logp.grad.flatten().tolist(), [-0.5, -0.5, 1.0, 0.0])
    assert abs(m["disco/objective"]) < 1e-12 and m["disco/kl"] == 0.0
    # low_var_kl of x = logp - old = 0.1 on every token: e^0.1 - 0.1 - 1 = 0.005171
    kl = obj.kl(old + 0.1, old, mask)
    assert abs(float(kl) - (math.exp(0.1) - 1.1)) < 1e-12


def test_disco_protocol_and_validation():
    obj = build("objective", "disco")
    assert obj.full_batch is True
    x = torch.zeros(2, 2)
    with pytest.raises(RuntimeError, match="batch_loss"):
        obj(x, x, torch.zeros(2), x)
    with pytest.raises(RegistryError, match="score"):
        build("objective", "disco", {"score": "logl"})
    with pytest.raises(RegistryError, match="tau"):
        build("objective", "disco", {"tau": 0.0})
    assert "full_batch" not in params_of(type(obj))              # a class attribute, not a parameter
