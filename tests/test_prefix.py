"""Shared-prefix forward (Prefix Grouper, arXiv 2506.05433): log-probs, entropies and
gradients equal the naive repeated-prompt forward in float64, for ragged groups, prompts
of different lengths (left padding), responses of different lengths, and groups split
or interleaved across the batch.

Gradients: transformers' LlamaRMSNorm computes in float32 even for a float64 model, so
no forward of it is float64-exact; the bound used is relative to the gradient's size and
no larger than the gap between the naive batched forward and one row at a time without
padding (the ground truth), which has the same cause."""
import pytest
import torch

from groupo.model.forward import completion_logprobs, configure
from groupo.model.load import load_model
from groupo.model.prefix import plan, worth_it


def _batch(tok):
    qs = ["a=+1;b=-a;?b", "x=+1;y=+x;z=-y;w=+z;?w", "c=-1;?c"]
    rows = [0, 1, 0, 2, 1, 1, 0, 2]                  # ragged, interleaved groups (sizes 3, 3, 2)
    p = tok([qs[r] for r in rows], return_tensors="pt", padding=True)
    g = torch.Generator().manual_seed(0)
    c = torch.randint(5, 60, (len(rows), 9), generator=g)
    cm = torch.zeros(len(rows), 9, dtype=torch.long)
    for i, L in enumerate([9, 3, 1, 5, 9, 7, 2, 4]):
        cm[i, :L] = 1
    return p["input_ids"], p["attention_mask"], c, cm


def _run(model, args, temp):
    model.zero_grad()
    lp, ent = completion_logprobs(model, *args, temperature=temp, with_entropy=True)
    w = torch.linspace(0.5, 1.5, lp.numel(), dtype=lp.dtype).view_as(lp)
    (lp * w * args[3]).sum().backward()
    return lp * args[3], ent * args[3], [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("temp", [1.0, 0.7])
def test_shared_prefix_equals_naive_float64(tiny_dir, tiny, temp):
    _, tok = tiny
    model = load_model(tiny_dir).double()
    args = _batch(tok)
    lp_a, ent_a, g_a = _run(configure(model, prefix_sharing="off"), args, temp)
    lp_b, ent_b, g_b = _run(configure(model, prefix_sharing="on"), args, temp)
    assert torch.allclose(lp_a, lp_b, atol=1e-12, rtol=0) and torch.allclose(ent_a, ent_b, atol=1e-12, rtol=0)
    scale = max(float(a.abs().max()) for a in g_a)
    gap = max(float((a - b).abs().max()) for a, b in zip(g_a, g_b))
    assert scale > 0 and gap <= 1e-6 * scale
    # the ground truth: each row alone, no padding; the naive batch is no closer to it
    model.zero_grad()
    configure(model, prefix_sharing="off")
    pi, pm, c, cm = args
    w = torch.linspace(0.5, 1.5, c.numel(), dtype=torch.float64).view(c.shape)
    for i in range(pi.shape[0]):
        p, L = pi[i][pm[i].bool()][None], int(cm[i].sum())
        lp, _ = completion_logprobs(model, p, torch.ones_like(p), c[i:i + 1, :L], torch.ones(1, L, dtype=torch.long),
                                    temperature=temp)
        (lp * w[i:i + 1, :L]).sum().backward()
    truth = [p.grad for p in model.parameters()]
    naive_gap = max(float((a - t).abs().max()) for a, t in zip(g_a, truth))
    shared_gap = max(float((b - t).abs().max()) for b, t in zip(g_b, truth))
    assert shared_gap <= 2 * naive_gap + 1e-12


def test_float32_close_and_plan(tiny_dir, tiny):
    model, tok = tiny
    args = _batch(tok)
    groups, packed, naive = plan(args[0], args[1], args[3])
    assert sorted(map(sorted, groups)) == [[0, 2, 6], [1, 4, 5], [3, 7]]
    assert packed < naive
    a, _ = completion_logprobs(configure(model, prefix_sharing="off"), *args)
    b, _ = completion_logprobs(configure(model, prefix_sharing="on"), *args)
    configure(model)
    assert torch.allclose(a * args[3], b * args[3], atol=1e-5)
    # auto: on when packing removes at least 40% of the tokens, off for single-row groups
    assert worth_it(model, args[0], args[1], args[3], "auto") == (packed < 0.6 * naive)
    one = (args[0][:1], args[1][:1], args[3][:1])
    assert not worth_it(model, *one, "auto") and not worth_it(model, *one, "off")
