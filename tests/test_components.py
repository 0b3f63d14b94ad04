"""Every registered pure-math component, built with its defaults, runs on a random ragged batch."""
import pytest
import torch

from groupo.registry import build, names
from groupo.types import Batch

# components that need a parameter without a default, or data the generic batch lacks
PARAMS = {("shaping", "gcpo"): {"aux": "format"}, ("shaping", "dapo_overlong"): {"cache": 2}, ("shaping", "condition"): {"easy": "format", "hard": "correct"}}


def ragged_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    group = torch.tensor([3, 0, 0, 3, 1, 1, 1, 0, 2, 3, 1, 0])         # sizes 4, 4, 1, 3; rows interleaved
    n, t = group.numel(), 6
    comps = torch.randint(0, 2, (n, 2), generator=g).double()
    mask = (torch.arange(t)[None] < torch.randint(1, t + 1, (n, 1), generator=g)).float()
    return Batch(rewards=comps @ torch.tensor([1.0, 0.5], dtype=torch.float64), group=group,
                 reward_components=comps, reward_weights=torch.tensor([1.0, 0.5], dtype=torch.float64),
                 reward_names=("correct", "format"), correct=comps[:, 0].clone(), lengths=mask.sum(1).long(),
                 truncated=mask.sum(1) == t, max_length=t, completion_mask=mask,
                 extra={"seq_logp": -torch.rand(n, generator=g, dtype=torch.float64),
                        "tok_entropy": torch.rand(n, t, generator=g),
                        "greedy_reward": torch.rand(4, generator=g, dtype=torch.float64),    # ReMax: per group id
                        "values": torch.randn(n, t, generator=g) * mask,                     # GAE: critic's V_old
                        # OTB: the old policy's token log-probs and sum of squared probabilities
                        "old_logp": torch.log(torch.rand(n, t, generator=g) * 0.9 + 0.05),
                        "sum_pi2": (torch.rand(n, t, generator=g) * 0.5 + 0.5) * mask})


def cases(axis):
    return [(axis, name) for name in names(axis)]


@pytest.mark.parametrize("axis,name", cases("advantage") + cases("weighting") + cases("shaping") + cases("filter"))
def test_batch_components(axis, name):
    b = ragged_batch()
    comp = build(axis, name, PARAMS.get((axis, name), {}))
    if axis == "advantage":
        res = comp(b)
        shape = (b.n, b.completion_mask.shape[1]) if comp.per_token else (b.n,)   # GAE: per token
        assert res.advantages.shape == shape and torch.isfinite(res.advantages).all()
        assert res.keep.dtype == torch.bool and res.weights.shape == (b.n,)
    elif axis == "weighting":
        adv = build("advantage", "grpo", {})(b)
        w = comp(b, adv)
        assert w.shape == (b.n,) and torch.isfinite(w).all() and (w >= 0).all()
    elif axis == "shaping":
        before = b.rewards.clone()
        out = comp(b)
        assert out.rewards.shape == (b.n,) and torch.isfinite(torch.nan_to_num(out.rewards)).all()
        assert torch.equal(b.rewards, before)                            # input not mutated
    else:
        keep = comp(b)
        assert keep.dtype == torch.bool and keep.shape == (b.n,)
        # a filter keeps or drops whole groups
        for gid in b.group.unique():
            assert keep[b.group == gid].all() or not keep[b.group == gid].any()


@pytest.mark.parametrize("axis,name", cases("objective") + cases("kl") + cases("aggregation"))
def test_token_components(axis, name):
    b = ragged_batch(1)
    n, t = b.completion_mask.shape
    g = torch.Generator().manual_seed(2)
    logp = (-torch.rand(n, t, generator=g, dtype=torch.float64)).requires_grad_(True)
    old = logp.detach() + 0.05 * torch.randn(n, t, generator=g, dtype=torch.float64)
    comp = build(axis, name, {})
    if axis == "aggregation":
        w = comp(b.completion_mask, torch.ones(n, dtype=torch.bool), t)
        assert w.shape == (n, t) and (w[b.completion_mask == 0] == 0).all() and w.sum() > 0
        return
    if axis == "kl":
        loss = (comp(logp, old) * b.completion_mask).sum()
    elif getattr(comp, "full_batch", False):
        loss, metrics = comp.batch_loss(logp, old, b.completion_mask, b.group, b.correct)
        assert all(isinstance(v, float) for v in metrics.values())
    else:
        adv = build("advantage", "grpo", {})(b).advantages
        loss_tok, metrics = comp(logp, old, adv, b.completion_mask)
        assert loss_tok.shape == (n, t)
        loss = (loss_tok * b.completion_mask).sum()
    assert torch.isfinite(loss)
    if axis == "kl" and name == "none":
        assert loss.item() == 0.0 and not loss.requires_grad
        return
    loss.backward()
    assert torch.isfinite(logp.grad).all()
    assert (logp.grad[b.completion_mask == 0] == 0).all() or axis == "kl"
