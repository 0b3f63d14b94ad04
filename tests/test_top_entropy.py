"""train.top_entropy_quantile ("Beyond the 80/20 rule", arXiv 2506.01939; TRL's
top_entropy_quantile): the policy loss keeps only the highest-entropy tokens of each micro-batch."""
import pytest
import torch

from groupo.registry import build
from groupo.train.loss import StepData, accumulate_loss, high_entropy_mask


class TablePolicy:
    """A stand-in policy: log-probs and entropies looked up by token id (id = i * T + t), so
    accumulate_loss's micro-batch slicing and trimming keep each token's identity."""

    def __init__(self, logp, ent):
        self.theta = torch.nn.Parameter(logp.clone())
        self.ent = ent

    def logprobs(self, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature, with_entropy=False):
        logp = self.theta.flatten()[completion_ids]
        return logp, (self.ent.flatten()[completion_ids] if with_entropy else None)


# two rows, four slots; row 1's last slot is padding with a huge entropy that must never count
ENT = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.8, 0.2, 0.7, 5.0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])


def step(adv, ref=None):
    n, t = MASK.shape
    ids = torch.arange(n * t).view(n, t)
    w = build("aggregation", "token_mean")(MASK)                  # 1/7 on each of the 7 real tokens
    return StepData(torch.ones(n, 1, dtype=torch.long), torch.ones(n, 1, dtype=torch.long), ids, MASK,
                    torch.tensor(adv), w, ref_logp=ref)


def grads(q, kl=None, ref=None, micro=1):
    pol = TablePolicy(-torch.ones(2, 4), ENT)
    m = accumulate_loss(pol, step([1.0, -2.0], ref), build("objective", "ppo_clip"), kl or build("kl", "none"),
                        micro, 1.0, with_entropy=False, top_entropy_quantile=q)
    return pol.theta.grad, m


def test_quantile_threshold_interpolates_like_torch_quantile():
    # real entropies sorted: [.1, .2, .3, .5, .7, .8, .9]; q = .3 -> the .7 quantile: position .7 * 6 = 4.2,
    # .7 + .2 * (.8 - .7) = .72 -> tokens .9 (row 0 slot 1) and .8 (row 1 slot 0); the padded 5.0 is out
    keep = high_entropy_mask(ENT, MASK.float(), 0.3)
    assert keep.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]
    real = ENT[MASK.bool()]
    for q in (0.05, 0.2, 0.5, 0.9, 1.0):
        thr = torch.quantile(real.double(), 1 - q)
        assert torch.equal(high_entropy_mask(ENT, MASK.float(), q).bool(), (ENT.double() >= thr) & MASK.bool())


def test_only_selected_tokens_get_policy_gradient():
    # ppo_clip on-policy: d(-A r)/dlogp = -A, times the token weight 1/7: row 0 (A 1) -1/7 = -.142857,
    # row 1 (A -2) +2/7 = .285714, only on the two selected tokens
    g, m = grads(0.3)
    exp = torch.tensor([[0.0, -1 / 7, 0.0, 0.0], [2 / 7, 0.0, 0.0, 0.0]])
    assert torch.allclose(g, exp, atol=1e-7)
    assert abs(m["entropy/selected"] - 2 / 7) < 1e-7               # 2 of 7 trained tokens
    assert "entropy/mean" not in m                                 # with_entropy False: no entropy metric


def test_kl_term_is_not_masked():
    # k1 (coef .1): d(.1 (logp - ref))/dlogp = .1 on every real token, times 1/7 = .0142857, selected or not
    ref = -1.5 * torch.ones(2, 4)
    g, _ = grads(0.3, kl=build("kl", "k1", {"coef": 0.1}), ref=ref)
    exp = torch.tensor([[0.0, -1 / 7, 0.0, 0.0], [2 / 7, 0.0, 0.0, 0.0]]) + 0.1 / 7 * MASK
    assert torch.allclose(g, exp, atol=1e-7)


def test_quantile_one_is_bit_for_bit_the_unmasked_loss(tiny):
    from test_loss import _step_data
    from groupo.model.policy import Policy

    model, tok = tiny
    d, _ = _step_data(model, tok)
    out = []
    for kw in ({}, {"top_entropy_quantile": 1.0}):
        model.zero_grad(set_to_none=True)
        m = accumulate_loss(Policy(model, build("forward", "naive")), d, build("objective", "ppo_clip"),
                            build("kl", "none"), 2, 1.0, **kw)
        out.append(([p.grad.clone() for p in model.parameters() if p.grad is not None], m["loss"]))
    assert out[0][1] == out[1][1]
    assert all(torch.equal(a, b) for a, b in zip(out[0][0], out[1][0]))
    # q < 1 on the real model: some parameter gradient changes, and fewer tokens drive it
    model.zero_grad(set_to_none=True)
    m = accumulate_loss(Policy(model, build("forward", "naive")), d, build("objective", "ppo_clip"),
                        build("kl", "none"), 2, 1.0, top_entropy_quantile=0.2)
    g = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert not all(torch.equal(a, b) for a, b in zip(out[0][0], g))
    assert 0 < m["entropy/selected"] < 0.5
    model.zero_grad(set_to_none=True)


def test_config_checks_the_quantile(tiny_dir):
    from groupo.config import ConfigError, load_config

    base = [f"model.path={tiny_dir}"]
    assert load_config("grpo", base + ["train.top_entropy_quantile=0.2"]).train.top_entropy_quantile == 0.2
    for bad in ("0", "1.5", "-0.1"):
        with pytest.raises(ConfigError, match="top_entropy_quantile"):
            load_config("grpo", base + [f"train.top_entropy_quantile={bad}"])
    with pytest.raises(ConfigError, match="full-batch"):
        load_config("disco", base + ["train.top_entropy_quantile=0.2"])


def test_training_with_quantile_keeps_zero_advantage_rows(tiny_dir, tmp_path):
    """With q < 1 the loop does not skip A = 0 rows (they count in the quantile, as in TRL)."""
    import json

    from groupo.cli import main
    from test_recipes import SMALL

    out = tmp_path / "run"
    assert main(["train", "top_entropy", "--out", str(out), f"model.path={tiny_dir}", *SMALL]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["rows/zero_adv_skipped"] == 0 for r in rows)
    assert all(0 < r["entropy/selected"] <= 1 for r in rows)
