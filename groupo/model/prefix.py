"""Shared-prefix training forward (Prefix Grouper, arXiv 2506.05433; ALGORITHMS.md §8).

In a GRPO step the prompt is repeated G times in the forward pass. Here the rows that
share the same prompt tokens are packed into one sequence ``[P ; R_1 ; ... ; R_G]``:
prefix positions 0..Lp-1, and every response restarts at Lp (so RoPE sees the same
positions as in the repeated forward). A 4D attention mask lets prefix tokens attend
causally to the prefix, and response j's tokens attend to the whole prefix and causally
to response j only. Everything outside attention is per token, so log-probs and
gradients equal the naive forward's (Lemma 2.1 of the report); the tests check this in
float64 to 1e-12. The prefix is computed once instead of G times.

Deviation from the reference implementation: instead of splitting each attention layer
into a prefix call and a suffix call (which needs a patched attention function per model
family), we pass one dense 4D mask to the model's own attention (sdpa or eager), so any
transformers decoder with RoPE positions and a standard attention interface works
unchanged. Attention scores are computed for masked pairs too (dense mask), so the saving
is in the per-token work (projections, MLP, head), which dominates at the sizes where the
switch turns on. Models with sliding-window attention are excluded (a custom mask would
override the window).

Rows are grouped by identical prompt tokens (no group ids needed); a group split across
micro-batches just forms one packed row per micro-batch (still exact).
"""
from __future__ import annotations

import torch

from .forward import _token_logprobs


def supports(model) -> bool:
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(model, "get_decoder") or not hasattr(model, "get_output_embeddings"):
        return False
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return False
    return getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager")


def plan(prompt_ids, prompt_mask, completion_mask) -> tuple[list[list[int]], int, int]:
    """Rows grouped by identical prompt tokens: (groups, packed tokens, naive tokens)."""
    keys: dict[tuple, list[int]] = {}
    pm = prompt_mask.bool()
    for i in range(prompt_ids.shape[0]):
        keys.setdefault(tuple(prompt_ids[i][pm[i]].tolist()), []).append(i)
    groups = list(keys.values())
    lp = pm.sum(1)
    lc = completion_mask.sum(1)
    packed = sum(int(lp[g[0]]) + int(lc[g].sum()) for g in groups)
    naive = prompt_ids.shape[0] * (prompt_ids.shape[1] + completion_mask.shape[1])
    return groups, packed, naive


def worth_it(model, prompt_ids, prompt_mask, completion_mask, mode: str) -> bool:
    """``mode``: "on", "off" or "auto" (when the packed batch has under 60% of the tokens)."""
    if mode == "off" or not supports(model):
        return False
    if mode == "on":
        return True
    _, packed, naive = plan(prompt_ids, prompt_mask, completion_mask)
    return packed < 0.6 * naive


def shared_prefix_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                           temperature: float = 1.0, with_entropy: bool = False):
    """Same contract as ``forward.completion_logprobs``: [N, T] log-probs (and entropies)."""
    dev = prompt_ids.device
    n, T = completion_ids.shape
    groups, _, _ = plan(prompt_ids, prompt_mask, completion_mask)
    pm, cm = prompt_mask.bool(), completion_mask.bool()
    seqs, poss, spans = [], [], []          # spans[b] = [(row, start of its response, length)]
    prefix_len = []
    for g in groups:
        p = prompt_ids[g[0]][pm[g[0]]]
        lp = p.numel()
        toks, pos, sp, at = [p], [torch.arange(lp, device=dev)], [], lp
        for r in g:
            c = completion_ids[r][cm[r]]
            toks.append(c)
            pos.append(torch.arange(lp, lp + c.numel(), device=dev))
            sp.append((r, at, c.numel()))
            at += c.numel()
        seqs.append(torch.cat(toks))
        poss.append(torch.cat(pos))
        spans.append(sp)
        prefix_len.append(lp)
    L = max(s.numel() for s in seqs)
    B = len(seqs)
    ids = torch.zeros(B, L, dtype=prompt_ids.dtype, device=dev)
    pos = torch.zeros(B, L, dtype=torch.long, device=dev)
    allow = torch.zeros(B, L, L, dtype=torch.bool, device=dev)
    for b, (s, p, sp, lp) in enumerate(zip(seqs, poss, spans, prefix_len)):
        ids[b, : s.numel()], pos[b, : p.numel()] = s, p
        allow[b, :lp, :lp] = torch.ones(lp, lp, dtype=torch.bool, device=dev).tril()
        for _r, a, m in sp:
            allow[b, a:a + m, :lp] = True
            allow[b, a:a + m, a:a + m] = torch.ones(m, m, dtype=torch.bool, device=dev).tril()
        idx = torch.arange(s.numel(), L, device=dev)
        allow[b, idx, idx] = True                            # padding attends to itself (no empty rows)
    hidden_dtype = next(model.parameters()).dtype
    mask = torch.zeros(B, 1, L, L, dtype=hidden_dtype, device=dev)
    mask.masked_fill_(~allow[:, None], torch.finfo(hidden_dtype).min)
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=pos,
                                 use_cache=False).last_hidden_state       # [B, L, H]
    # position predicting response token t: the last prefix token for t = 0, else token t-1
    b_idx, p_idx, r_idx, t_idx = [], [], [], []
    for b, (sp, lp) in enumerate(zip(spans, prefix_len)):
        for r, a, m in sp:
            src = torch.cat([torch.tensor([lp - 1], device=dev), torch.arange(a, a + m - 1, device=dev)])
            b_idx.append(torch.full((m,), b, device=dev))
            p_idx.append(src)
            r_idx.append(torch.full((m,), r, device=dev))
            t_idx.append(torch.arange(m, device=dev))
    b_idx, p_idx, r_idx, t_idx = (torch.cat(x) for x in (b_idx, p_idx, r_idx, t_idx))
    h = hidden[b_idx, p_idx]                                 # [tokens, H]
    logits = model.get_output_embeddings()(h).float()
    lp_tok, ent_tok = _token_logprobs(logits[None], completion_ids[r_idx, t_idx][None], temperature, with_entropy)
    logp = torch.zeros(n, T, dtype=lp_tok.dtype, device=dev)
    logp = logp.index_put((r_idx, t_idx), lp_tok[0])
    ent = None
    if with_entropy:
        ent = torch.zeros(n, T, dtype=ent_tok.dtype, device=dev).index_put((r_idx, t_idx), ent_tok[0])
    return logp, ent
