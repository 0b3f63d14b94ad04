"""Generation with transformers models, the prompt prefilled once per group.

``generate`` encodes each distinct prompt once (left padded, one forward pass), then
copies its KV cache to the rows of its group (``group_sizes`` may differ per prompt)
and decodes all rows together, one batched forward per token. Sampling uses an
explicit ``torch.Generator`` so runs are reproducible and resumable. Stops at any EOS
id; rows that reach ``max_new_tokens`` without EOS are flagged ``truncated``.
``backend="reference"`` runs ``model.generate`` on the repeated prompts instead (the
simple path the fast one is tested against).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from . import lean as lean_mod


@dataclass
class Rollout:
    prompt_ids: torch.Tensor        # [N, Lp] left-padded prompt of each row
    prompt_mask: torch.Tensor       # [N, Lp]
    completion_ids: torch.Tensor    # [N, T] right-padded with pad id
    completion_mask: torch.Tensor   # [N, T] 1 on real tokens (EOS included)
    truncated: torch.Tensor         # [N] bool, no EOS within max_new_tokens
    group: torch.Tensor             # [N] long, index of the prompt of each row
    texts: list                     # [N] decoded completions (special tokens skipped)
    sampler_logp: torch.Tensor | None = None   # [N, T] the sampler's token log-probs (vLLM backend)

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(1).long()


def sample_next(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """Sample one token per row from logits [B, V]; temperature 0 means greedy."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, -1).cumsum(-1)
        drop_sorted = (cum - torch.softmax(sorted_logits, -1)) > top_p   # keep the token that crosses top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return categorical(torch.softmax(logits, -1), generator)


BLOCK = 1024   # vocabulary block of the two-level search in ``categorical``


def categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``probs`` [B, V] (non-negative, rows need not sum to 1), drawn by
    inverse-CDF sampling: one uniform u per row; the token is the first whose cumulative
    probability exceeds u times the row's total. A token of probability 0 (masked by top-k or
    top-p) is never drawn.

    Why not ``torch.multinomial`` (what transformers' ``generate`` uses): on the CPU it draws one
    exponential variate per vocabulary entry, 0.24 ms per call for 64 rows of the bench's
    107-token vocabulary and ~320 ms for a 152k-token one (measured), against one uniform per row
    here. Vocabularies up to ``2 * BLOCK`` are searched in one float64 cumulative sum (exact to
    ~1e-13); larger ones in two levels: float32 sums of blocks of ``BLOCK`` tokens (the block is
    chosen with the float32 rounding of those sums, ~1e-7 relative, the precision of the
    probabilities themselves), then a float64 cumulative sum inside the chosen block."""
    b, v = probs.shape
    u = torch.rand(b, 1, generator=generator, device=probs.device, dtype=torch.float64)
    if v <= 2 * BLOCK:
        return _search(probs.double().cumsum(-1), u)
    full = v // BLOCK
    sums = probs[:, : full * BLOCK].reshape(b, full, BLOCK).sum(-1)
    if v > full * BLOCK:
        sums = torch.cat([sums, probs[:, full * BLOCK:].sum(-1, keepdim=True)], dim=1)
    sums = sums.double()
    cum = sums.cumsum(-1)                                                       # [B, blocks]
    blk = _search(cum, u)
    start = blk[:, None] * BLOCK
    before = (cum - sums).gather(1, blk[:, None])                               # mass of earlier blocks
    cols = start + torch.arange(BLOCK, device=probs.device)
    inner = probs.gather(1, cols.clamp(max=v - 1)).masked_fill(cols >= v, 0.0)  # [B, BLOCK]
    rest = ((u * cum[:, -1:] - before) / sums.gather(1, blk[:, None])).clamp(0, 1)
    return blk * BLOCK + _search(inner.double().cumsum(-1), rest)


def _search(cum: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per row: the first index whose cumulative mass ``cum`` exceeds u x the row's total, never
    past the last index of positive mass (rounding can put the target on the total)."""
    total = cum[:, -1:].contiguous()
    if not bool(((total > 0) & torch.isfinite(total)).all()):
        raise ValueError("sampling: a row of next-token probabilities is not finite or sums to 0 (non-finite logits?)")
    idx = torch.searchsorted(cum, u * total, right=True)
    last = torch.searchsorted(cum, total)          # where the total is first reached: the last positive entry
    return torch.minimum(idx, last).squeeze(1)


def _encode(prompts: list[str], tokenizer, device):
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], group_sizes: list[int], max_new_tokens: int,
             eos_ids: list[int], temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
             generator: torch.Generator | None = None, backend: str = "hf") -> Rollout:
    """Sample ``group_sizes[j]`` completions for each ``prompts[j]``. ``generator`` is one
    torch.Generator for all rows, or a list with one per prompt (then a prompt's samples
    do not depend on which other prompts share the batch; used by multi-process runs)."""
    if backend == "vllm":       # optional extra, imported only here
        from .vllm_backend import generate_vllm

        return generate_vllm(model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p,
                             top_k, generator)
    was_training = model.training
    model.eval()            # sampling never uses dropout or gradient checkpointing (which disables the KV cache)
    # model.autocast (e.g. bf16 over float32 weights): sample from the same numerics the log-probs use
    ac = getattr(model, "_groupo_autocast", None)
    dev = next(model.parameters()).device
    ctx = torch.autocast(device_type=dev.type, dtype=ac) if ac is not None else contextlib.nullcontext()
    try:
        with ctx:
            return _generate(model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p,
                             top_k, generator, backend)
    finally:
        model.train(was_training)


def _generate(model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p, top_k,
              generator, backend) -> Rollout:
    device = next(model.parameters()).device
    p_ids, p_mask = _encode(prompts, tokenizer, device)       # [P, Lp]
    check_context(model, int(p_mask.sum(1).max()) if len(prompts) else 0, max_new_tokens)
    sizes = torch.tensor(group_sizes, device=device)
    rows = torch.repeat_interleave(torch.arange(len(prompts), device=device), sizes)  # [N]
    pad = tokenizer.pad_token_id
    if backend == "reference":
        comp = _reference(model, p_ids[rows], p_mask[rows], max_new_tokens, eos_ids, pad, temperature, top_p, top_k)
    else:
        comp = _shared_prefix_decode(model, p_ids, p_mask, rows, max_new_tokens, eos_ids, pad,
                                     temperature, top_p, top_k, generator)
    eos = torch.tensor(eos_ids, device=device)
    is_eos = torch.isin(comp, eos)
    # mask: tokens up to and including the first EOS
    after_eos = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    mask = (~after_eos).long()                                 # [N, T]
    truncated = ~(is_eos & ~after_eos).any(1)
    comp = comp.masked_fill(mask == 0, pad)
    texts = tokenizer.batch_decode([c[m.bool()].tolist() for c, m in zip(comp, mask)], skip_special_tokens=True)
    return Rollout(p_ids[rows], p_mask[rows], comp, mask, truncated.cpu(), rows.cpu(), texts)


def check_context(model, prompt_len: int, max_new_tokens: int) -> None:
    """A prompt plus the generation budget must fit the model's context window."""
    ctx = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if ctx and prompt_len + max_new_tokens > ctx:
        from ..model.load import ModelError

        raise ModelError(f"a prompt of {prompt_len} tokens + generation.max_new_tokens={max_new_tokens} exceeds the "
                         f"model's context of {ctx} tokens; shorten the prompts or lower generation.max_new_tokens")


def _CACHE_ARG(model) -> str:
    """The forward's KV-cache keyword: ``cache`` in newer transformers, else ``past_key_values``."""
    import inspect

    name = getattr(model, "_groupo_cache_arg", None)
    if name is None:
        params = inspect.signature(model.forward).parameters
        name = "cache" if "cache" in params else "past_key_values"
        model._groupo_cache_arg = name
    return name


PREALLOCATE = True     # KV cache written in place (False: transformers' DynamicCache concatenation)


_PREALLOC_CLS = []


def _prealloc_class():
    """A DynamicLayer subclass whose ``update`` writes into a buffer sized for the whole
    generation instead of concatenating (O(T^2) copying; 40% of the tiny model's decode time
    when profiled) and returns views of the filled part: attention sees the same keys and values."""
    if not _PREALLOC_CLS:
        from transformers.cache_utils import DynamicLayer

        class PreallocatedDynamicLayer(DynamicLayer):
            __slots__ = ()

            def update(self, key_states, value_states, *args, **kwargs):
                n = key_states.shape[-2]
                self._kbuf[..., self._len:self._len + n, :] = key_states
                self._vbuf[..., self._len:self._len + n, :] = value_states
                self._len += n
                self.keys, self.values = self._kbuf[..., : self._len, :], self._vbuf[..., : self._len, :]
                return self.keys, self.values

        _PREALLOC_CLS.append(PreallocatedDynamicLayer)
    return _PREALLOC_CLS[0]


def _preallocate(cache, extra: int) -> None:
    """Turn every plain DynamicLayer of ``cache`` into a preallocated one with room for ``extra`` tokens."""
    from transformers.cache_utils import DynamicLayer

    for layer in getattr(cache, "layers", []):
        if type(layer) is not DynamicLayer or not layer.is_initialized or layer.keys.numel() == 0:
            continue
        k, v = layer.keys, layer.values
        kb = k.new_empty(k.shape[:-2] + (k.shape[-2] + extra, k.shape[-1]))
        vb = v.new_empty(v.shape[:-2] + (v.shape[-2] + extra, v.shape[-1]))
        kb[..., : k.shape[-2], :] = k
        vb[..., : v.shape[-2], :] = v
        layer.__class__ = _prealloc_class()
        layer._kbuf, layer._vbuf, layer._len = kb, vb, k.shape[-2]
        layer.keys, layer.values = kb[..., : layer._len, :], vb[..., : layer._len, :]


def _shared_prefix_decode(model, p_ids, p_mask, rows, max_new_tokens, eos_ids, pad,
                          temperature, top_p, top_k, generator):
    from transformers import DynamicCache

    n = rows.shape[0]
    cache = DynamicCache(config=model.config)
    pos = (p_mask.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                **{_CACHE_ARG(model): cache})
    cache = getattr(out, "cache", None) or out.past_key_values
    lean = None
    if (lean_mod.enabled() and not torch.is_autocast_enabled(p_ids.device.type)
            and lean_mod.supports(model, p_ids.shape[1] + max_new_tokens) is None):
        lean = lean_mod.LeanDecoder(model, rows, p_ids.shape[1], max_new_tokens)
        lean.load_prefill(cache, p_mask)
        cache = None
    else:
        cache.batch_select_indices(rows)                       # share each prompt's cache with its group
        if PREALLOCATE:
            _preallocate(cache, max_new_tokens)
    logits = out.logits[:, -1, :][rows]                        # [N, V]
    if lean is None:            # the transformers forward takes the mask, grown one column per token
        attn_buf = torch.cat([p_mask[rows], torch.ones(n, max_new_tokens, dtype=p_mask.dtype, device=p_mask.device)], 1)
        attn = p_mask[rows]
    next_pos = pos[rows][:, -1:] + 1                           # [N, 1]
    eos = torch.tensor(eos_ids, device=p_ids.device)
    done = torch.zeros(n, dtype=torch.bool, device=p_ids.device)
    tokens = []
    live = None                 # rows the lean decoder still holds (None: all)
    if isinstance(generator, (list, tuple)):   # one generator per prompt: rows of prompt j use generator[j]
        bounds = torch.searchsorted(rows, torch.arange(len(generator) + 1, device=rows.device)).tolist()
    for _ in range(max_new_tokens):
        if isinstance(generator, (list, tuple)):
            tok = torch.cat([sample_next(logits[a:b], temperature, top_k, top_p, gj)
                             for gj, a, b in zip(generator, bounds, bounds[1:])])
        else:
            tok = sample_next(logits, temperature, top_k, top_p, generator)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        tokens.append(tok)
        done = done | torch.isin(tok, eos)
        if bool(done.all()) or len(tokens) == max_new_tokens:
            break
        if lean is not None:
            live = _compact(lean, live, done, max_new_tokens - len(tokens))
            if live is None:
                logits = lean.step(tok, next_pos[:, 0])
            else:               # finished rows keep their last logits (sampled, then replaced by pad)
                logits[live] = lean.step(tok[live], next_pos[live, 0])
        else:
            attn = attn_buf[:, : attn.shape[1] + 1]            # the mask grows by one column: a view
            out = model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos, use_cache=True,
                        **{_CACHE_ARG(model): cache})
            cache = getattr(out, "cache", None) or out.past_key_values
            logits = out.logits[:, -1, :]
        next_pos = next_pos + 1
    if not tokens:
        return torch.empty(n, 0, dtype=torch.long, device=p_ids.device)
    return torch.stack(tokens, dim=1)                          # [N, T]


COMPACT_FRACTION = 0.125    # drop finished rows from the lean decoder once they are this share of its rows
COMPACT_MIN_LEFT = 4        # ... and at least this many tokens may still come


def _compact(lean, live, done, left: int):
    """Drop finished rows from the lean decoder's batch (its rows layout) when enough have finished:
    a finished row's later tokens are padding, so computing them is waste (the share of rows still
    running falls as a generation goes on). Sampling still draws for every row, so the tokens are
    those of the uncompacted decode. Returns the rows the decoder holds (None: all)."""
    if lean.shared:             # the shared layout keeps whole groups
        return live
    held = torch.arange(done.numel(), device=done.device) if live is None else live
    running = ~done[held]
    n_done = held.numel() - int(running.sum())
    if n_done == 0 or n_done < COMPACT_FRACTION * held.numel() or left < COMPACT_MIN_LEFT:
        return live
    keep = running.nonzero().squeeze(1)
    return held[keep] if lean.compact(keep) else live


def _reference(model, ids, mask, max_new_tokens, eos_ids, pad, temperature, top_p, top_k):
    kw = dict(do_sample=temperature > 0, max_new_tokens=max_new_tokens, eos_token_id=eos_ids, pad_token_id=pad)
    if temperature > 0:
        kw.update(temperature=temperature, top_p=top_p, top_k=top_k or None)
    out = model.generate(input_ids=ids, attention_mask=mask, **kw)
    return out[:, ids.shape[1]:]
