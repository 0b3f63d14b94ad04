"""Micro-batched loss: the same gradient for 1 or k micro-batches; log-probs vs a naive forward."""
import torch

from groupo.model.forward import completion_logprobs
from groupo.model.load import eos_ids
from groupo.model.policy import Policy
from groupo.registry import build
from groupo.rollout import generate
from groupo.train.loss import StepData, accumulate_loss, micro_slices


def _step_data(model, tok, agg="seq_mean_token_mean"):
    qs = ["1+2=", "12+33+4=", "b=-a;a=+1;?b", "7+7="]
    ps = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
          for q in qs]
    r = generate(model, tok, ps, [3, 2, 3, 2], 7, eos_ids(tok, model), 1.0, generator=torch.Generator().manual_seed(0))
    n = r.group.shape[0]
    adv = torch.linspace(-1, 1, n)
    w = build("aggregation", agg, {})(r.completion_mask, None, 7)
    return StepData(r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask, adv, w,
                    old_logp=None, ref_logp=None), r


def _grads(model, d, k, kl=None):
    model.zero_grad(set_to_none=True)
    m = accumulate_loss(Policy(model, build("forward", "naive")), d, build("objective", "ppo_clip", {}),
                        kl or build("kl", "none", {}), k, 1.0)
    return [p.grad.clone() for p in model.parameters() if p.grad is not None], m["loss"]


def test_micro_slices():
    assert micro_slices(10, 3) == [slice(0, 3), slice(3, 7), slice(7, 10)]
    assert micro_slices(2, 5) == [slice(0, 1), slice(1, 2)]


def test_gradient_equal_across_micro_batch_counts(tiny):
    model, tok = tiny
    for agg in ("seq_mean_token_mean", "token_mean", "seq_sum_const"):
        d, _ = _step_data(model, tok, agg)
        g1, l1 = _grads(model, d, 1)
        for k in (2, 4, 10):
            gk, lk = _grads(model, d, k)
            assert abs(l1 - lk) < 1e-5
            assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(g1, gk)), (agg, k)
    model.zero_grad(set_to_none=True)


def test_gradient_equal_with_kl_and_old_logp(tiny):
    model, tok = tiny
    d, _ = _step_data(model, tok)
    with torch.no_grad():
        lp, _ = completion_logprobs(model, d.prompt_ids, d.prompt_mask, d.completion_ids, d.completion_mask)
    d.old_logp = lp + 0.05 * torch.randn(lp.shape, generator=torch.Generator().manual_seed(1))
    d.ref_logp = lp - 0.1
    kl = build("kl", "k3", {"coef": 0.1})
    g1, l1 = _grads(model, d, 1, kl)
    g3, l3 = _grads(model, d, 3, kl)
    assert abs(l1 - l3) < 1e-5
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(g1, g3))
    model.zero_grad(set_to_none=True)


def test_batched_logprobs_equal_per_row_forward(tiny):
    """Left padding and position ids: each row's log-probs equal an unpadded single-row forward."""
    model, tok = tiny
    d, r = _step_data(model, tok)
    with torch.no_grad():
        lp, ent = completion_logprobs(model, d.prompt_ids, d.prompt_mask, d.completion_ids, d.completion_mask,
                                      with_entropy=True)
        for i in range(d.prompt_ids.shape[0]):
            p = d.prompt_ids[i][d.prompt_mask[i].bool()]
            L = int(d.completion_mask[i].sum())
            c = d.completion_ids[i, :L]
            logits = model(torch.cat([p, c])[None]).logits[0, len(p) - 1:len(p) - 1 + L].double()
            ref = torch.log_softmax(logits, -1).gather(-1, c[:, None]).squeeze(-1)
            assert torch.allclose(lp[i, :L].double(), ref, atol=1e-4), i
    assert (ent >= 0).all()
