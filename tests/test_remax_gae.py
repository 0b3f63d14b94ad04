"""ReMax's greedy baseline, GAE, whitening and the clipped value loss, with hand-computed numbers
(verl 0.9's formulas written out by hand, not imported)."""
import pytest
import torch


def T(x):
    """A float64 tensor: the hand numbers are exact to 1e-12 in float64."""
    return torch.tensor(x, dtype=torch.float64)

from groupo import ops
from groupo.algo.advantage.gae import gae, token_rewards
from groupo.registry import build
from groupo.types import Batch


def _batch(rewards, group, mask, **extra):
    mask = torch.tensor(mask, dtype=torch.float32)
    return Batch(rewards=torch.tensor(rewards, dtype=torch.float64), group=torch.tensor(group),
                 completion_mask=mask, lengths=mask.sum(1).long(), extra=dict(extra))


# ----------------------------------------------------------------------------- ReMax
def test_remax_is_reward_minus_the_greedy_reward_of_the_rows_prompt():
    # prompts 0, 1, 2 with greedy rewards 0.25, 1.0, 0.0; prompt 1 has two sampled rows
    b = _batch([1.0, 0.5, 1.0, 0.0], [0, 1, 1, 2], [[1, 1]] * 4,
               greedy_reward=torch.tensor([0.25, 1.0, 0.0]))
    res = build("advantage", "remax")(b)
    # 1 - 0.25, 0.5 - 1, 1 - 1, 0 - 0
    assert res.advantages.tolist() == [0.75, -0.5, 0.0, 0.0]
    assert res.keep.all() and res.weights.tolist() == [1.0] * 4
    assert res.metrics["remax/baseline_mean"] == pytest.approx((0.25 + 1 + 1 + 0) / 4)


def test_remax_equals_verls_token_level_formula_for_an_outcome_reward():
    """verl's compute_remax_outcome_advantage: returns = reversed cumsum of the masked token
    rewards, advantages = returns - baseline * mask. An outcome reward on the last token gives
    r - b on every real token (written out by hand)."""
    mask = [[1, 1, 1, 0], [1, 1, 0, 0]]
    # token rewards: row 0 ends at t=2 with r=1.0, row 1 at t=1 with r=0.5; baselines 0.25 and 1.0
    #   returns row 0 = [1, 1, 1, 0]           -> advantages [1-.25, 1-.25, 1-.25, 0-0]  = [.75, .75, .75, 0]
    #   returns row 1 = [0.5, 0.5, 0, 0]       -> advantages [.5-1, .5-1, 0, 0]          = [-.5, -.5, 0, 0]
    verl = torch.tensor([[0.75, 0.75, 0.75, 0.0], [-0.5, -0.5, 0.0, 0.0]], dtype=torch.float64)
    b = _batch([1.0, 0.5], [0, 1], mask, greedy_reward=torch.tensor([0.25, 1.0]))
    ours = build("advantage", "remax")(b).advantages[:, None] * b.completion_mask.double()   # broadcast to tokens
    assert torch.equal(ours, verl)


def test_remax_without_greedy_rewards_says_what_it_needs():
    with pytest.raises(ValueError, match="greedy_reward"):
        build("advantage", "remax")(_batch([1.0], [0], [[1]]))


# ----------------------------------------------------------------------------- GAE
def test_gae_by_hand_gamma_1_lambda_095():
    r = T([[0.0, 0.0, 1.0]])
    v = T([[0.5, 0.6, 0.7]])
    adv, ret = gae(r, v, torch.ones(1, 3, dtype=torch.float64), gamma=1.0, lam=0.95)
    # t=2: delta = 1 + 0 - 0.7 = 0.3                      A = 0.3
    # t=1: delta = 0 + 0.7 - 0.6 = 0.1                    A = 0.1 + 0.95 * 0.3   = 0.385
    # t=0: delta = 0 + 0.6 - 0.5 = 0.1                    A = 0.1 + 0.95 * 0.385 = 0.46575
    assert adv[0].tolist() == pytest.approx([0.46575, 0.385, 0.3], abs=1e-12)
    assert ret[0].tolist() == pytest.approx([0.96575, 0.985, 1.0], abs=1e-12)     # A + V


def test_gae_ragged_batch_ignores_padding_values():
    r = T([[0.0, 0.0, 1.0], [0.0, 0.5, 0.0]])
    v = T([[0.5, 0.6, 0.7], [0.2, 0.4, 9.0]])          # 9.0 sits on padding: must not leak
    mask = T([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = gae(r, v, mask, gamma=1.0, lam=0.95)
    # row 1 ends at t=1: t=1: delta = 0.5 + 0 - 0.4 = 0.1   A = 0.1
    #                    t=0: delta = 0 + 0.4 - 0.2 = 0.2   A = 0.2 + 0.95 * 0.1 = 0.295
    assert adv[1].tolist() == pytest.approx([0.295, 0.1, 0.0], abs=1e-12)
    assert ret[1].tolist() == pytest.approx([0.495, 0.5, 0.0], abs=1e-12)
    assert adv[0].tolist() == pytest.approx([0.46575, 0.385, 0.3], abs=1e-12)   # row 0 as alone


def test_gae_discount_gives_discounted_returns():
    adv, ret = gae(T([[0.0, 0.0, 1.0]]), T([[0.5, 0.6, 0.7]]), torch.ones(1, 3, dtype=torch.float64), 0.9, 1.0)
    # lam = 1: R_t = gamma^(2-t) * 1 = [0.81, 0.9, 1.0]; A = R - V = [0.31, 0.3, 0.3]
    assert ret[0].tolist() == pytest.approx([0.81, 0.9, 1.0], abs=1e-12)
    assert adv[0].tolist() == pytest.approx([0.31, 0.3, 0.3], abs=1e-12)


def test_token_rewards_put_the_outcome_on_the_last_token_and_the_kl_on_every_token():
    mask = T([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert token_rewards(T([1.0, 0.5]), mask).tolist() == [[0.0, 0.0, 1.0], [0.0, 0.5, 0.0]]
    kl = T([[0.5, -1.0, 0.2], [0.3, 0.1, 7.0]])   # log pi_old - log pi_ref per token (7.0: padding)
    # -0.1 * kl, plus the outcome on the last real token
    want = [[-0.05, 0.1, 1.0 - 0.02], [-0.03, 0.5 - 0.01, 0.0]]
    got = token_rewards(T([1.0, 0.5]), mask, kl, 0.1)
    assert got.tolist() == [pytest.approx(w, abs=1e-12) for w in want]


def test_masked_whiten_by_hand():
    x = torch.tensor([[0.46575, 0.385, 0.3], [0.295, 0.1, 5.0]], dtype=torch.float64)
    mask = T([[1, 1, 1], [1, 1, 0]])
    # mu = (0.46575 + 0.385 + 0.3 + 0.295 + 0.1) / 5 = 0.30915
    # var = sum (x - mu)^2 / (5 - 1) = (0.02452356 + 0.0057532225 + 0.0000837225 + 0.0002002225 + 0.0437437225) / 4
    #     = 0.0185761125;  (x - mu) / sqrt(var + 1e-8)
    want = [[1.1489846442540004, 0.5565165087271134, -0.06713416024855742],
            [-0.10381949371771457, -1.5345474990148413, 0.0]]
    got = ops.masked_whiten(x, mask)
    assert got.tolist() == [pytest.approx(w, abs=1e-9) for w in want]
    assert ops.masked_whiten(x[:1, :1], mask[:1, :1]).tolist() == [[0.0]]      # one entry: no spread


def test_gae_component_whitens_over_the_batchs_tokens():
    mask = [[1, 1, 1], [1, 1, 0]]
    values = T([[0.5, 0.6, 0.7], [0.2, 0.4, 9.0]])
    b = _batch([1.0, 0.5], [0, 1], mask, values=values)
    raw = build("advantage", "gae", {"lam": 0.95, "whiten": False})(b)
    assert raw.advantages.tolist() == [pytest.approx(w, abs=1e-12) for w in ([0.46575, 0.385, 0.3], [0.295, 0.1, 0.0])]
    assert raw.returns.tolist() == [pytest.approx(w, abs=1e-12) for w in ([0.96575, 0.985, 1.0], [0.495, 0.5, 0.0])]
    white = build("advantage", "gae", {"lam": 0.95})(b)      # the same numbers as test_masked_whiten_by_hand
    assert white.advantages[0].tolist() == pytest.approx([1.1489846442540004, 0.5565165087271134,
                                                          -0.06713416024855742], abs=1e-9)
    assert torch.equal(white.returns, raw.returns)           # the critic's targets are not whitened
    assert white.metrics["gae/returns_mean"] == pytest.approx((0.96575 + 0.985 + 1.0 + 0.495 + 0.5) / 5)
    # verl's defaults gamma = lam = 1: A_t = R - V_t before whitening
    one = build("advantage", "gae", {"whiten": False})(b)
    assert one.advantages.tolist() == [pytest.approx(w, abs=1e-6) for w in ([0.5, 0.4, 0.3], [0.3, 0.1, 0.0])]


def test_gae_with_kl_in_the_reward_reads_old_and_reference_logprobs():
    mask = [[1, 1]]
    b = _batch([1.0], [0], mask, values=torch.zeros(1, 2, dtype=torch.float64), old_logp=T([[-1.0, -2.0]]),
               ref_logp=T([[-1.5, -1.0]]))
    gae_kl = build("advantage", "gae", {"kl_coef": 0.1, "whiten": False})
    assert gae_kl.needs_ref_logp and not build("advantage", "gae").needs_ref_logp
    # kl = old - ref = [0.5, -1.0]; token rewards = [-0.05, 1 + 0.1]; V = 0, gamma = lam = 1:
    # A_1 = 1.1, A_0 = -0.05 + 1.1 = 1.05
    assert gae_kl(b).advantages[0].tolist() == pytest.approx([1.05, 1.1], abs=1e-12)


# ----------------------------------------------------------------------------- value loss
def test_clipped_value_loss_by_hand():
    crit = build("critic", "value", {"cliprange_value": 0.2})
    v = torch.tensor([[1.0, 0.2, 0.5]], requires_grad=True)
    old, ret = T([[0.5, 0.5, 0.5]]), T([[0.0, 0.0, 0.6]])
    loss, m = crit(v, old, ret)
    # V_clip = clip(V, 0.3, 0.7) = [0.7, 0.3, 0.5]
    # (V - R)^2      = [1.0, 0.04, 0.01];  (V_clip - R)^2 = [0.49, 0.09, 0.01]
    # 0.5 * max      = [0.5, 0.045, 0.005]; the clipped branch is larger only for token 1
    assert loss[0].tolist() == pytest.approx([0.5, 0.045, 0.005], abs=1e-7)
    assert m["critic/clip_frac"][0].tolist() == [0.0, 1.0, 0.0]
    loss.sum().backward()
    # d/dV: token 0: V - R = 1.0; token 1: the clipped branch is constant in V (V outside the range): 0;
    # token 2: both branches equal, V - R = -0.1 through either
    assert v.grad[0].tolist() == pytest.approx([1.0, 0.0, -0.1], abs=1e-6)
    plain, _ = build("critic", "value", {"cliprange_value": None})(v.detach(), old, ret)
    assert plain[0].tolist() == pytest.approx([0.5, 0.02, 0.005], abs=1e-7)      # 0.5 (V - R)^2


def test_value_weights_are_a_token_mean_over_trained_rows():
    from groupo.train.critic import value_weights

    w = value_weights(T([[1, 1, 1], [1, 1, 0], [1, 0, 0]]), torch.tensor([True, True, False]))
    assert w.tolist() == [pytest.approx(x) for x in ([0.2] * 3, [0.2, 0.2, 0.0], [0.0] * 3)]   # 5 trained tokens


# ----------------------------------------------------------------------------- objectives
@pytest.mark.parametrize("name", ["ppo_clip", "reinforce"])
def test_per_token_advantages_equal_broadcast_row_advantages(name):
    torch.manual_seed(0)
    logp, old = torch.randn(3, 4) * 0.1 - 1, torch.randn(3, 4) * 0.1 - 1
    mask = torch.ones(3, 4)
    adv = torch.tensor([1.0, -0.5, 0.25])
    obj = build("objective", name)
    row, _ = obj(logp, old, adv, mask)
    tok, _ = obj(logp, old, adv[:, None].expand(3, 4).clone(), mask)
    assert torch.equal(row, tok) and obj.token_advantages
    adv_t = torch.tensor([[1.0, 2.0, 0.0, -1.0]] * 3)
    tok2, _ = obj(logp, logp.detach(), adv_t, mask)                        # ratio 1: loss = -A per token
    assert torch.equal(tok2, -adv_t)
