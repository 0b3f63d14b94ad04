"""Generation: the shared-prefix sampler against transformers' generate, masks, truncation."""
import pytest
import torch

from groupo.model.load import eos_ids
from groupo.rollout import generate
from groupo.rollout.sampling import sample_next


def _prompts(tok):
    qs = ["1+2=", "12+33+4=", "b=-a;a=+1;?b"]
    return [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in qs]


def test_shared_prefix_greedy_equals_reference_generate(tiny):
    model, tok = tiny
    ps = _prompts(tok)
    fast = generate(model, tok, ps, [3, 1, 2], 10, eos_ids(tok, model), temperature=0)
    ref = generate(model, tok, ps, [3, 1, 2], 10, eos_ids(tok, model), temperature=0, decode="reference")
    assert fast.group.tolist() == [0, 0, 0, 1, 2, 2]
    assert torch.equal(fast.completion_ids, ref.completion_ids)
    assert torch.equal(fast.completion_mask, ref.completion_mask)
    assert fast.texts == ref.texts


def test_eos_mask_and_truncation(tiny):
    model, tok = tiny
    eos = tok.eos_token_id
    # make EOS the argmax after the first token by forcing it through the eos list: any token id
    ps = _prompts(tok)[:1]
    first = generate(model, tok, ps, [1], 1, [eos], temperature=0).completion_ids[0, 0].item()
    r = generate(model, tok, ps, [2], 6, [first], temperature=0)   # first greedy token counts as EOS
    assert r.completion_ids.shape[1] == 1 and r.completion_mask.tolist() == [[1], [1]]
    assert r.truncated.tolist() == [False, False]
    r = generate(model, tok, ps, [2], 4, [eos], temperature=0)
    if not (r.completion_ids == eos).any():
        assert r.truncated.all() and r.completion_mask.sum().item() == 8


def test_sampling_is_reproducible_with_generator(tiny):
    model, tok = tiny
    ps = _prompts(tok)
    a = generate(model, tok, ps, [4] * 3, 8, eos_ids(tok, model), 1.0, 0.9, 20, torch.Generator().manual_seed(3))
    b = generate(model, tok, ps, [4] * 3, 8, eos_ids(tok, model), 1.0, 0.9, 20, torch.Generator().manual_seed(3))
    assert torch.equal(a.completion_ids, b.completion_ids)
    # tokens after the first EOS are padding and masked out
    m = a.completion_mask
    assert (a.completion_ids[m == 0] == tok.pad_token_id).all()


def test_top_k_and_top_p_restrict_support():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]]).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_next(logits, 1.0, 2, 1.0, g).tolist()) <= {0, 1}
    # softmax = [.644,.237,.087,.032]: top_p .7 keeps tokens 0 and 1 (the one crossing .7 is kept)
    assert set(sample_next(logits, 1.0, 0, 0.7, g).tolist()) == {0, 1}
    assert sample_next(logits[:1], 0.0, 0, 1.0, g).item() == 0


def test_per_prompt_generators_make_samples_independent_of_the_batch(tiny):
    """With one generator per prompt (multi-process runs), a prompt's samples are the same
    whichever other prompts share the batch, so splitting prompts over ranks changes nothing."""
    from groupo.train.dist import prompt_generators
    from groupo.rollout import generate

    model, tok = tiny
    prompts = ["a=+1;b=-a;?b", "c=-1;?c", "x=+1;y=+x;z=-y;?z"]
    eos = [tok.eos_token_id]
    both = generate(model, tok, prompts, [3, 2, 4], 6, eos, 1.5, generator=prompt_generators(0, 1, 0, 3, "cpu"))
    last = generate(model, tok, prompts[2:], [4], 6, eos, 1.5, generator=prompt_generators(0, 1, 2, 1, "cpu"))
    assert both.texts[5:] == last.texts
    other_step = generate(model, tok, prompts[2:], [4], 6, eos, 1.5, generator=prompt_generators(0, 2, 2, 1, "cpu"))
    assert other_step.texts != last.texts


def test_preallocated_kv_cache_gives_identical_samples(tiny, monkeypatch):
    """The in-place KV buffer (fast path) and transformers' concatenating cache (reference)
    sample the same completions from the same generator state."""
    import torch

    import groupo.rollout.hf as hf
    from groupo.rollout import generate

    model, tok = tiny
    prompts = ["a=+1;b=-a;?b", "c=-1;?c", "x=+1;y=+x;z=-y;?z"]
    out = {}
    for pre in (True, False):
        monkeypatch.setattr(hf, "PREALLOCATE", pre)
        r = generate(model, tok, prompts, [3, 2, 4], 12, [tok.eos_token_id], 1.3,
                     generator=torch.Generator().manual_seed(7))
        out[pre] = (r.texts, r.completion_ids)
    assert out[True][0] == out[False][0] and torch.equal(out[True][1], out[False][1])


def test_categorical_follows_the_distribution_and_never_draws_masked_tokens(monkeypatch):
    """Inverse-CDF sampling (one uniform per row): frequencies match the probabilities (chi-square
    well below its 1e-6 tail), zero-probability tokens are never drawn, the two-level search of
    large vocabularies draws exactly the token the one-level search draws for the same uniform,
    and rounding that puts the target on the total cannot select trailing masked tokens."""
    from groupo.rollout import sampling as hf

    torch.manual_seed(0)
    for v, block in [(7, 1024), (300, 1024), (300, 16)]:
        monkeypatch.setattr(hf, "BLOCK", block)
        p = torch.rand(v) + 0.2
        p[::3] = 0
        p /= p.sum()
        n = 60000
        draws = hf.categorical(p[None].expand(n, v).contiguous(), torch.Generator().manual_seed(1))
        f = torch.bincount(draws, minlength=v).double()
        assert (f[p == 0] == 0).all()
        e = (p * n).double()[p > 0]
        chi2 = float(((f[p > 0] - e) ** 2 / e).sum())
        dof = int((p > 0).sum()) - 1
        assert chi2 < dof + 7 * (2 * dof) ** 0.5 + 25, (v, block, chi2, dof)   # far beyond p = 1e-6
    p = torch.rand(3000) ** 4
    p[::3] = 0
    big = p[None].expand(4000, 3000).contiguous()
    monkeypatch.setattr(hf, "BLOCK", 16)
    two = hf.categorical(big, torch.Generator().manual_seed(5))
    monkeypatch.setattr(hf, "BLOCK", 10 ** 6)
    one = hf.categorical(big, torch.Generator().manual_seed(5))
    assert torch.equal(one, two)
    cum = torch.tensor([[0.2, 0.5, 1.0, 1.0, 1.0]], dtype=torch.float64)        # tokens 3, 4 have mass 0
    assert hf._search(cum, torch.ones(1, 1, dtype=torch.float64)).item() == 2
    assert hf._search(cum, torch.zeros(1, 1, dtype=torch.float64)).item() == 0
    with pytest.raises(ValueError, match="not finite"):
        hf.categorical(torch.tensor([[0.5, float("nan")]]))
