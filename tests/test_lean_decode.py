"""The lean decode step (groupo/rollout/lean.py) against the transformers forward."""
from __future__ import annotations

import pytest
import torch

from groupo.rollout import hf, lean


def _model(kind: str, seed: int = 0, vocab: int = 50, pad: int = 0, eos: int = 1):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=128, rms_norm_eps=1e-6, pad_token_id=pad, eos_token_id=eos, bos_token_id=None)
    if kind == "llama":
        cfg = LlamaConfig(num_key_value_heads=4, tie_word_embeddings=True, **common)
    elif kind == "llama_gqa":
        cfg = LlamaConfig(num_key_value_heads=2, tie_word_embeddings=False, **common)
    elif kind == "qwen2":           # q/k/v biases, GQA
        cfg = Qwen2Config(num_key_value_heads=2, **common)
    elif kind == "qwen3":           # per-head q/k RMSNorm, head_dim set apart from hidden/heads
        cfg = Qwen3Config(num_key_value_heads=2, head_dim=24, **common)
    else:
        raise ValueError(kind)
    torch.manual_seed(seed)
    m = AutoModelForCausalLM.from_config(cfg).to(torch.float64).eval()
    if kind == "qwen2":             # non-zero biases, so that a missing bias would show
        for layer in m.model.layers:
            for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                torch.nn.init.normal_(lin.bias, std=0.5)
    if kind == "qwen3":
        for layer in m.model.layers:
            torch.nn.init.normal_(layer.self_attn.q_norm.weight, mean=1.0, std=0.3)
            torch.nn.init.normal_(layer.self_attn.k_norm.weight, mean=1.0, std=0.3)
    return m


def _prompts(P: int, Lp: int, g: torch.Generator):
    ids = torch.randint(2, 50, (P, Lp), generator=g)
    mask = torch.ones(P, Lp, dtype=torch.long)
    for j in range(P):                           # left padding of different lengths
        pad = j % 3
        ids[j, :pad], mask[j, :pad] = 0, 0
    return ids, mask


@pytest.mark.parametrize("kind", ["llama", "llama_gqa", "qwen2", "qwen3"])
@pytest.mark.parametrize("sizes,layout,start", [([3, 3, 3], "shared", 32), ([3, 3, 3], "rows", 32),
                                                ([3, 3, 3], "auto", 32), ([2, 4, 1], "auto", 32),
                                                # caches that grow during the generation (2 -> 4 -> 6 columns)
                                                ([3, 3, 3], "shared", 2), ([2, 4, 1], "rows", 2)])
def test_lean_logits_match_the_transformers_forward(kind, sizes, layout, start):
    from transformers import DynamicCache

    model = _model(kind)
    assert lean.supports(model) is None
    g = torch.Generator().manual_seed(1)
    P, Lp, T = len(sizes), 7, 6
    p_ids, p_mask = _prompts(P, Lp, g)
    rows = torch.repeat_interleave(torch.arange(P), torch.tensor(sizes))
    n = rows.numel()
    pos = (p_mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=pos, use_cache=True,
                    **{hf._cache_arg(model): DynamicCache(config=model.config)})
    cache = getattr(out, "cache", None) or out.past_key_values
    dec = lean.LeanDecoder(model, rows, Lp, T, layout=layout, start=start)
    # auto: shared when groups are equal and the prompt (7) is longer than the generation (6)
    assert dec.shared == (layout == "shared" or (layout == "auto" and len(set(sizes)) == 1))
    dec.load_prefill(cache, p_mask)
    toks = torch.randint(2, 50, (n, T), generator=g)
    full_ids, full_mask = p_ids[rows], p_mask[rows]
    for t in range(T):
        next_pos = pos[rows][:, -1] + 1 + t
        got = dec.step(toks[:, t], next_pos)
        full_ids = torch.cat([full_ids, toks[:, t: t + 1]], 1)
        full_mask = torch.cat([full_mask, torch.ones(n, 1, dtype=full_mask.dtype)], 1)
        with torch.no_grad():
            ref = model(input_ids=full_ids, attention_mask=full_mask,
                        position_ids=(full_mask.cumsum(1) - 1).clamp(min=0)).logits[:, -1]
        assert got.shape == ref.shape
        assert (got - ref).abs().max().item() < 1e-10, (kind, sizes, layout, t)
    assert dec.cap == T         # start 2: grown twice (2 -> 4 -> 6); start 32: min(T, 32) from the first step


@pytest.mark.parametrize("kind", ["llama_gqa", "qwen3"])
def test_generate_with_and_without_the_lean_step_samples_the_same_tokens(kind, monkeypatch):
    from groupo.model.tiny import build_tokenizer

    tok = build_tokenizer()
    model = _model(kind, seed=3, vocab=len(tok), pad=tok.pad_token_id, eos=tok.eos_token_id)
    prompts = ["1+1=", "what is 2*3?", "x"]
    out = {}
    for flag in (True, False):
        gen = torch.Generator().manual_seed(7)
        out[flag] = hf.generate(model, tok, prompts, [4, 4, 4], 9, [tok.eos_token_id], temperature=1.0,
                                generator=gen, decode="lean" if flag else "hf")
    assert torch.equal(out[True].completion_ids, out[False].completion_ids)
    assert torch.equal(out[True].completion_mask, out[False].completion_mask)
    assert out[True].texts == out[False].texts


def test_supports_says_why_not():
    from transformers import AutoModelForCausalLM, GPT2Config, MistralConfig

    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=20, n_embd=32, n_layer=1, n_head=2))
    assert "model_type 'gpt2'" in lean.supports(gpt2)
    mistral = AutoModelForCausalLM.from_config(MistralConfig(
        vocab_size=20, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, sliding_window=16))
    assert lean.supports(mistral, max_len=8) is None
    assert "sliding-window" in lean.supports(mistral, max_len=40)
    peft = pytest.importorskip("peft")
    wrapped = peft.get_peft_model(_model("llama"), peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert "not a plain Linear" in lean.supports(wrapped.base_model.model)


def test_generation_runs_under_the_models_autocast_without_the_lean_step(monkeypatch):
    """model.autocast=bfloat16: sampling uses the training numerics (bf16 autocast); the lean
    step (float32/float64 only) stands aside."""
    from groupo.model.tiny import build_tokenizer

    tok = build_tokenizer()
    model = _model("llama", seed=2, vocab=len(tok), pad=tok.pad_token_id, eos=tok.eos_token_id).float()
    seen = []
    real = hf.sample_next

    def spy(logits, *a, **k):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real(logits, *a, **k)

    def no_lean(*a, **k):
        raise AssertionError("the lean step must not run under autocast")

    monkeypatch.setattr(hf, "sample_next", spy)
    monkeypatch.setattr(lean, "LeanDecoder", no_lean)
    r = hf.generate(model, tok, ["1+1=", "2+2="], [3, 3], 5, [tok.eos_token_id], temperature=1.0,
                    generator=torch.Generator().manual_seed(0), autocast=torch.bfloat16)
    assert r.completion_ids.shape[0] == 6 and seen and all(seen)
    assert not torch.is_autocast_enabled("cpu")              # the context ends with generate


def test_compacting_finished_rows_keeps_the_other_rows_logits():
    """LeanDecoder.compact: the rows kept decode exactly as in a decoder that holds every row;
    the shared layout (whole groups) does not compact."""
    from transformers import DynamicCache

    model = _model("llama_gqa", seed=5)
    g = torch.Generator().manual_seed(2)
    P, Lp, T = 3, 5, 6
    p_ids, p_mask = _prompts(P, Lp, g)
    rows = torch.repeat_interleave(torch.arange(P), torch.tensor([2, 3, 2]))
    n = rows.numel()
    pos = (p_mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=pos, use_cache=True,
                    **{hf._cache_arg(model): DynamicCache(config=model.config)})
    cache = getattr(out, "cache", None) or out.past_key_values
    full, part = (lean.LeanDecoder(model, rows, Lp, T, layout="rows", start=2) for _ in range(2))
    full.load_prefill(cache, p_mask)
    part.load_prefill(cache, p_mask)
    toks = torch.randint(2, 50, (n, T), generator=g)
    keep = torch.tensor([0, 3, 4, 6])
    for t in range(T):
        p = pos[rows][:, -1] + 1 + t
        ref = full.step(toks[:, t], p)
        if t == 1:
            assert part.compact(keep) and part.n == 4
        if t < 1:
            got = part.step(toks[:, t], p)
            assert torch.equal(got, ref)
        else:       # the cache also grows (start=2) after the compaction
            got = part.step(toks[keep, t], p[keep])
            assert (got - ref[keep]).abs().max().item() < 1e-12, t
    shared = lean.LeanDecoder(model, torch.repeat_interleave(torch.arange(P), 2), Lp, T, layout="shared")
    assert not shared.compact(torch.tensor([0, 1]))


def test_generation_drops_finished_rows_and_samples_the_same_tokens(monkeypatch):
    """A model that ends its completions early often: the lean decode compacts its batch as rows
    finish, and the sampled tokens equal those of the transformers forward (no compaction)."""
    from groupo.model.tiny import build_tokenizer

    tok = build_tokenizer()
    model = _model("llama", seed=4, vocab=len(tok), pad=tok.pad_token_id, eos=tok.eos_token_id)
    with torch.no_grad():       # make the end token likely (tied embeddings: its row drives the logit)
        model.lm_head.weight[tok.eos_token_id] *= 30
    kept = []
    real = lean.LeanDecoder.compact
    monkeypatch.setattr(lean.LeanDecoder, "compact", lambda self, keep: kept.append(keep.numel()) or real(self, keep))
    out = {}
    for flag in (True, False):
        out[flag] = hf.generate(model, tok, ["1+1=", "what is 2*3?", "xy"], [4, 4, 4], 12, [tok.eos_token_id],
                                temperature=1.0, generator=torch.Generator().manual_seed(11),
                                decode="lean" if flag else "hf")
    lengths = out[False].completion_mask.sum(1)
    assert kept and kept == sorted(kept, reverse=True) and kept[-1] < 12, (kept, lengths.tolist())
    assert int(lengths.min()) < int(lengths.max())
    assert torch.equal(out[True].completion_ids, out[False].completion_ids)
    assert torch.equal(out[True].completion_mask, out[False].completion_mask)
