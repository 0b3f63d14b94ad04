"""Sampling one token per row from next-token logits: temperature, top-k, top-p, then an
inverse-CDF draw with an explicit ``torch.Generator`` (reproducible and resumable runs)."""
from __future__ import annotations

import torch


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
    exponential variate per vocabulary entry, against one uniform per row here (hundreds of
    milliseconds per call for a 152k-token vocabulary; docs/performance.md). Vocabularies up to ``2 * BLOCK`` are searched in one float64 cumulative sum (exact to
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
