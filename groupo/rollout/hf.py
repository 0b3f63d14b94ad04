"""groupo's own sampler for transformers models, the prompt prefilled once per group.

``generate`` encodes each distinct prompt once (left padded, one forward pass), then copies its
KV cache to the rows of its group (``group_sizes`` may differ per prompt) and decodes all rows
together, one batched step per token. Sampling uses an explicit ``torch.Generator`` so runs are
reproducible and resumable. Stops at any EOS id; rows that reach ``max_new_tokens`` without EOS
are flagged ``truncated``. The decode step (``decode``):

* ``lean``: the lean decode step (rollout/lean.py) for Llama-family models, which drops finished
  rows from the batch; other models take the ``hf`` step;
* ``hf``: the model's own forward per token, with a preallocated KV cache;
* ``reference``: plain ``model.generate`` on the repeated prompts (the simple path the fast ones
  are tested against).

Registered rollout backends (axis ``rollout``): ``lean`` (the default), ``hf`` and ``reference``.
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..protocols import RolloutBackend
from ..registry import register
from . import lean as lean_mod
from .base import Rollout, check_context
from .sampling import sample_next

DECODE = ("lean", "hf", "reference")


@register("rollout", "lean")
@dataclass(frozen=True)
class Lean(RolloutBackend):
    """groupo's sampler with the lean decode step (Llama, Mistral, Qwen2/3; other models: the
    model's forward per token)."""

    decode: ClassVar[str] = "lean"

    def generate(self, model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature=1.0,
                 top_p=1.0, top_k=0, generator=None, autocast=None) -> Rollout:
        return generate(model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p,
                        top_k, generator, decode=self.decode, autocast=autocast)


@register("rollout", "hf")
@dataclass(frozen=True)
class HF(Lean):
    """groupo's sampler with the model's own forward per decode step (any causal LM)."""

    decode: ClassVar[str] = "hf"


@register("rollout", "reference")
@dataclass(frozen=True)
class Reference(Lean):
    """transformers' ``model.generate`` on the repeated prompts (slow; the reference path)."""

    decode: ClassVar[str] = "reference"


def _encode(prompts: list[str], tokenizer, device):
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], group_sizes: list[int], max_new_tokens: int,
             eos_ids: list[int], temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
             generator: torch.Generator | None = None, decode: Literal["lean", "hf", "reference"] = "lean",
             autocast: torch.dtype | None = None, return_logp: bool = False) -> Rollout:
    """Sample ``group_sizes[j]`` completions for each ``prompts[j]``. ``generator`` is one
    torch.Generator for all rows, or a list with one per prompt (then a prompt's samples
    do not depend on which other prompts share the batch; used by multi-process runs).
    ``autocast``: sample under the training forward's compute dtype (e.g. bf16 over float32
    weights), so the samples come from the numerics the log-probs use. ``return_logp``: also
    each sampled token's log-prob under the logits it was sampled from (log-softmax of logits /
    temperature, before top-k/top-p, as the training forward computes them) in
    ``Rollout.sampler_logp`` (0 on padding); a rollout server returns them for the importance
    correction. The samples are the same either way (not with decode="reference")."""
    if decode not in DECODE:
        raise ValueError(f"decode must be one of {list(DECODE)}, got {decode!r}")
    if return_logp and decode == "reference":
        raise ValueError("return_logp needs decode lean or hf (model.generate does not return them here)")
    was_training = model.training
    model.eval()            # sampling never uses dropout or gradient checkpointing (which disables the KV cache)
    dev = next(model.parameters()).device
    ctx = torch.autocast(device_type=dev.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    try:
        with ctx:
            return _generate(model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p,
                             top_k, generator, decode, return_logp)
    finally:
        model.train(was_training)


def _generate(model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p, top_k,
              generator, decode, return_logp=False) -> Rollout:
    device = next(model.parameters()).device
    p_ids, p_mask = _encode(prompts, tokenizer, device)       # [P, Lp]
    check_context(model, int(p_mask.sum(1).max()) if len(prompts) else 0, max_new_tokens)
    sizes = torch.tensor(group_sizes, device=device)
    rows = torch.repeat_interleave(torch.arange(len(prompts), device=device), sizes)  # [N]
    pad = tokenizer.pad_token_id
    lps = None
    if decode == "reference":
        comp = _reference(model, p_ids[rows], p_mask[rows], max_new_tokens, eos_ids, pad, temperature, top_p, top_k)
    else:
        comp, lps = _shared_prefix_decode(model, p_ids, p_mask, rows, max_new_tokens, eos_ids, pad, temperature,
                                          top_p, top_k, generator, use_lean=decode == "lean", with_logp=return_logp)
    eos = torch.tensor(eos_ids, device=device)
    is_eos = torch.isin(comp, eos)
    # mask: tokens up to and including the first EOS
    after_eos = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    mask = (~after_eos).long()                                 # [N, T]
    truncated = ~(is_eos & ~after_eos).any(1)
    comp = comp.masked_fill(mask == 0, pad)
    texts = tokenizer.batch_decode([c[m.bool()].tolist() for c, m in zip(comp, mask)], skip_special_tokens=True)
    return Rollout(p_ids[rows], p_mask[rows], comp, mask, truncated.cpu(), rows.cpu(), texts,
                   sampler_logp=None if lps is None else lps.masked_fill(mask == 0, 0.0))


_CACHE_ARGS: dict = {}


def _cache_arg(model) -> str:
    """The forward's KV-cache keyword: ``cache`` in newer transformers, else ``past_key_values``
    (looked up once per model class)."""
    kind = type(model)
    if kind not in _CACHE_ARGS:
        _CACHE_ARGS[kind] = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return _CACHE_ARGS[kind]


PREALLOCATE = True     # KV cache written in place (False: transformers' DynamicCache concatenation)


_PREALLOC_CLS = []


def _prealloc_class():
    """A DynamicLayer subclass whose ``update`` writes into a buffer sized for the whole
    generation instead of concatenating (O(T^2) copying, a large share of the decode time when
    profiled; docs/performance.md) and returns views of the filled part: attention sees the same keys and values."""
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
                          temperature, top_p, top_k, generator, use_lean: bool = True, with_logp: bool = False):
    """The sampled tokens [N, T] and, ``with_logp``, their log-probs [N, T] (else None)."""
    from transformers import DynamicCache

    n = rows.shape[0]
    cache = DynamicCache(config=model.config)
    pos = (p_mask.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                **{_cache_arg(model): cache})
    cache = getattr(out, "cache", None) or out.past_key_values
    lean = None
    if (use_lean and not torch.is_autocast_enabled(p_ids.device.type)
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
    tokens, lps = [], []
    live = None                 # rows the lean decoder still holds (None: all)
    if isinstance(generator, (list, tuple)):   # one generator per prompt: rows of prompt j use generator[j]
        bounds = torch.searchsorted(rows, torch.arange(len(generator) + 1, device=rows.device)).tolist()
    for _ in range(max_new_tokens):
        if isinstance(generator, (list, tuple)):
            tok = torch.cat([sample_next(logits[a:b], temperature, top_k, top_p, gj)
                             for gj, a, b in zip(generator, bounds, bounds[1:])])
        else:
            tok = sample_next(logits, temperature, top_k, top_p, generator)
        if with_logp:           # the sampled token under the logits it came from (finished rows: masked later)
            scaled = logits.float() / (temperature if temperature > 0 else 1.0)
            lps.append(scaled.gather(1, tok[:, None]).squeeze(1) - torch.logsumexp(scaled, -1))
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
                        **{_cache_arg(model): cache})
            cache = getattr(out, "cache", None) or out.past_key_values
            logits = out.logits[:, -1, :]
        next_pos = next_pos + 1
    if not tokens:
        empty = torch.empty(n, 0, dtype=torch.long, device=p_ids.device)
        return empty, (empty.float() if with_logp else None)
    return torch.stack(tokens, dim=1), (torch.stack(lps, dim=1) if with_logp else None)     # [N, T]


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
