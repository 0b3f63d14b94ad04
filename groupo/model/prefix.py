"""Shared-prefix training forward (Prefix Grouper, arXiv 2506.05433; ALGORITHMS.md §8).

In a GRPO step the prompt is repeated G times in the forward pass. Here the rows that
share the same prompt tokens are packed into one sequence ``[P ; R_1 ; ... ; R_G]``:
prefix positions 0..Lp-1, and every response restarts at Lp (so RoPE sees the same
positions as in the repeated forward). A 4D attention mask lets prefix tokens attend
causally to the prefix, and response j's tokens attend to the whole prefix and causally
to response j only. Everything outside attention is per token, so log-probs and
gradients equal the naive forward's (Lemma 2.1 of the report); the tests check this in
float64 to 1e-12. The prefix is computed once instead of G times.

Two implementations:

* **Split attention** (``grid_logprobs``; Llama, Mistral, Qwen2, Qwen3 without activation
  checkpointing), as in the paper: the batch is a grid, one row per prompt,
  ``[prefix (left-padded to the longest prompt) ; slot 1 ; ... ; slot G]`` with each slot a
  completion at width T - 1 (its last token is no input to anything scored). Each attention layer makes two calls of
  ``scaled_dot_product_attention`` through transformers' attention interface: the prefix
  attends causally to itself; the G slots' queries attend to the prefix's keys and values
  (shared, the same tensors for every slot) plus their own slot causally. Attention costs what
  the naive forward's does minus the prompt-to-prompt part, and everything per token (projections,
  MLP) runs on P x (Lp + G x T) positions instead of N x (Lp + T). The attention function
  is selected only for the duration of the forward (``config._attn_implementation``), which
  is why activation checkpointing (whose recomputation runs in backward) takes the dense path.
* **Dense mask** (``shared_prefix_logprobs``; any decoder with RoPE positions and sdpa/eager
  attention): the rows of a group packed without padding into one sequence ``[P ; R_1 ; ...]``
  with one dense 4D mask passed to the model's own attention. Scores are computed for masked
  pairs too, so only the per-token work is saved; it pays when the prompt is long relative to
  the group's completions. Models with sliding-window attention are excluded (a custom mask
  would override the window).

Rows are grouped by identical prompt tokens (no group ids needed); a group split across
micro-batches just forms one packed row per micro-batch (still exact).
"""
from __future__ import annotations

import torch

from .logprobs import token_logprobs


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


SPLIT_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
# the slots' attention (on the CPU) as explicit products and softmax while its score tensor has at
# most this many entries (else, and on GPUs, scaled_dot_product_attention, which keeps no score
# tensor): torch's CPU flash kernel took ~2x as long at the bench's shapes (docs/performance.md)
EXPLICIT_MAX_SCORES = 1 << 23
# the decoder runs on the packed tokens when they are fewer than this share of the grid's positions
# (scattering into the grid and back costs a few percent of a forward when nothing is left out)
PACK_BELOW = 0.9
_ATTN = "groupo_split_prefix"


def split_supported(model) -> bool:
    """The split-attention path: a listed family, not under activation checkpointing."""
    if not supports(model) or getattr(model.config, "model_type", None) not in SPLIT_FAMILIES:
        return False
    return not any(getattr(m, "gradient_checkpointing", False) for m in model.get_decoder().modules())


def costs(model, prompt_ids, prompt_mask, completion_mask, groups=None) -> dict:
    """Estimated forward cost of each path, in multiply-adds: positions x 2 x (parameters of a
    layer) for the per-token work, plus attention score entries x 4 x heads x head_dim (Q K^T and
    P V); checked against bench/prefix_bench.py (docs/performance.md).
    Keys: "naive", "dense", and "split" when ``split_supported``."""
    cfg = model.config
    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    n_layer = cfg.num_hidden_layers
    per_layer = (sum(p.numel() for p in layers[0].parameters()) if layers is not None
                 else sum(p.numel() for p in decoder.parameters()) / max(n_layer, 1))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    tok, ent = 2 * per_layer, 4 * cfg.num_attention_heads * head_dim
    groups = groups if groups is not None else plan(prompt_ids, prompt_mask, completion_mask)[0]
    n, lp_all = prompt_ids.shape
    t = completion_mask.shape[1]
    lps, lens = prompt_mask.bool().sum(1), completion_mask.bool().sum(1)
    b = len(groups)
    ti = max(t - 1, 1)           # the last completion token is never an input whose output is used
    out = {"naive": n * (lp_all + ti) * tok + n * (lp_all + ti) ** 2 * ent}
    packed = max((int(lps[g[0]]) + int(lens[g].sum()) for g in groups), default=0)
    out["dense"] = b * packed * tok + b * packed ** 2 * ent
    if split_supported(model):      # per-token work on the packed tokens only, attention over the grid
        lp, gm = int(lps.max()) if n else 0, max((len(g) for g in groups), default=0)
        grid = b * (lp + gm * ti)
        inputs = sum(max(int(lps[g[0]]), 1) for g in groups) + int(slot_inputs(completion_mask).sum())
        per_token = inputs if inputs < PACK_BELOW * grid else grid
        out["split"] = per_token * tok + (b * lp * lp + b * gm * ti * (lp + ti)) * ent
    return out


def slot_inputs(completion_mask: torch.Tensor) -> torch.Tensor:
    """[N] completion tokens each row needs as inputs: those before its last scored token."""
    t = completion_mask.shape[1]
    if not t:
        return completion_mask.new_zeros(completion_mask.shape[0], dtype=torch.long)
    cols = torch.arange(1, t + 1, device=completion_mask.device)
    return ((completion_mask.bool() * cols).amax(1) - 1).clamp(min=0)


def choose(model, prompt_ids, prompt_mask, completion_mask, mode: str, groups=None) -> str:
    """"naive", "split" or "dense". ``mode`` "off": naive; "on": split attention where supported,
    else the dense mask; "dense": the dense mask; "auto": the cheapest path by ``costs`` if it
    saves at least 10%."""
    if mode == "off" or not supports(model) or prompt_ids.shape[0] == 0:
        return "naive"
    if mode == "dense":
        return "dense"
    if mode == "on":
        return "split" if split_supported(model) else "dense"
    c = costs(model, prompt_ids, prompt_mask, completion_mask, groups)
    best = min((k for k in c if k != "naive"), key=c.get)
    return best if c[best] < 0.9 * c["naive"] else "naive"


def _split_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, groupo_grid=None,
                     **kwargs):
    """Attention over the grid. query [1, H, Ntok, D], key/value [1, Hk, Ntok, D]: the packed
    tokens (``grid_logprobs``), scattered here into the grid [B, heads, Lp + G x w, D] (positions
    left out stay zero; no kept query attends to them). Returns [1, Ntok, H, D] (transformers'
    attention-interface contract)."""
    import torch.nn.functional as F

    lp, g, t, pmask, rmask, additive, keep, b = groupo_grid
    h, d, hk = query.shape[1], query.shape[3], key.shape[1]
    width = lp + g * t
    gqa = hk != h

    def grid(x):                    # [1, heads, Ntok, D] (or [B, heads, width, D]) -> [B, width, heads, D]
        heads = x.shape[1]
        if keep is None:
            return x.transpose(1, 2)
        return x.new_zeros(b * width, heads, d).index_copy(0, keep, x[0].transpose(0, 1)).view(b, width, heads, d)

    def slots(x):                   # [B, width, heads, D] -> [B*G, heads, T, D]
        return x[:, lp:].view(b, g, t, x.shape[2], d).permute(0, 1, 3, 2, 4).reshape(b * g, x.shape[2], t, d)

    def shared(x):                  # the prefix's keys/values, the same for every slot of a row
        return x.unsqueeze(1).expand(b, g, hk, lp, d).reshape(b * g, hk, lp, d)

    query, key, value = grid(query), grid(key), grid(value)
    kp, vp = key[:, :lp].transpose(1, 2), value[:, :lp].transpose(1, 2)    # [B, Hk, lp, D]
    out_p = F.scaled_dot_product_attention(query[:, :lp].transpose(1, 2), kp, vp, attn_mask=pmask,
                                           dropout_p=dropout, scale=scaling, enable_gqa=gqa)
    k = torch.cat([shared(kp), slots(key)], dim=2)
    v = torch.cat([shared(vp), slots(value)], dim=2)
    q = slots(query)
    if dropout == 0 and q.device.type == "cpu" and q.shape[0] * h * t * (lp + t) <= EXPLICIT_MAX_SCORES:
        # scores, softmax and the weighted sum as three plain ops (grouped-query: a kv head's
        # query heads stacked along the rows)
        bg, rep = q.shape[0], h // hk
        if q.dtype not in additive:     # the mask as -inf / 0, made once per forward and dtype
            additive[q.dtype] = torch.zeros(rmask.shape, dtype=q.dtype, device=q.device).masked_fill(~rmask, float("-inf"))
        sc = scaling if scaling is not None else d ** -0.5
        s = torch.matmul(q.reshape(bg, hk, rep * t, d), k.transpose(-1, -2)).view(bg, h, t, lp + t) * sc
        s = s + additive[q.dtype]
        low = q.dtype in (torch.bfloat16, torch.float16)       # softmax in float32 then (as SDPA's kernels do)
        pr = torch.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype) if low else torch.softmax(s, dim=-1)
        out_r = torch.matmul(pr.view(bg, hk, rep * t, lp + t), v).view(bg, h, t, d)
    else:
        out_r = F.scaled_dot_product_attention(q, k, v, attn_mask=rmask, dropout_p=dropout, scale=scaling,
                                               enable_gqa=gqa)
    out_r = out_r.view(b, g, h, t, d).permute(0, 1, 3, 2, 4).reshape(b, g * t, h, d)
    out = torch.cat([out_p.transpose(1, 2), out_r], dim=1)                           # [B, width, H, D]
    return (out if keep is None else out.view(b * width, h, d).index_select(0, keep)[None]), None


def grid_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float = 1.0,
                  with_entropy: bool = False, groups=None, with_sum_pi2: bool = False):
    """Split-attention shared-prefix forward; same contract as ``forward.completion_logprobs``
    (log-probs and entropies at masked completion positions are 0).

    The grid (one row per prompt: prefix, then G slots of width w) fixes where every token sits
    for attention; when at least ``1 - PACK_BELOW`` of it is padding, the decoder itself runs on
    the packed tokens only (one sequence of Ntok tokens): the prompts' real tokens and each
    completion's tokens up to its last scored one (exclusive). Slot padding, left padding and a
    completion's last token are never inputs, so projections, MLPs and norms skip them; with
    completions of different lengths that is the padding's share of the per-token work. The
    output head runs on scored positions only."""
    from transformers import AttentionInterface

    dev = prompt_ids.device
    n, t = completion_ids.shape
    groups = groups if groups is not None else plan(prompt_ids, prompt_mask, completion_mask)[0]
    b, g = len(groups), max(len(x) for x in groups)
    pm = prompt_mask.bool()
    cm = completion_mask.bool()
    lp = max(int(pm.sum(1).max()), 1)
    first = torch.tensor([x[0] for x in groups], device=dev)
    # prefix region: each prompt's real tokens moved to the right end (stable sort: padding first,
    # whatever side the tokenizer padded), then the last lp columns hold every real token
    order = torch.sort(pm[first].int(), dim=1, stable=True).indices
    pre_ids, pre_mask = prompt_ids[first].gather(1, order)[:, -lp:], pm[first].gather(1, order)[:, -lp:]
    if pre_ids.shape[1] < lp:       # no prompt tokens at all: one padding column
        pre_ids = torch.cat([pre_ids.new_zeros(b, lp - pre_ids.shape[1]), pre_ids], 1)
        pre_mask = torch.cat([pre_mask.new_zeros(b, lp - pre_mask.shape[1]), pre_mask], 1)
    n_p = pre_mask.sum(1)                                                   # [B] prompt lengths
    row_b = torch.empty(n, dtype=torch.long, device=dev)
    row_j = torch.empty(n, dtype=torch.long, device=dev)
    for bi, rows in enumerate(groups):
        row_b[rows] = bi
        row_j[rows] = torch.arange(len(rows), device=dev)
    slot = row_b * g + row_j                                                # [N] slot of each row
    # a slot holds the completion's tokens but the last: its output predicts nothing we score
    w = max(t - 1, 1)
    pad = completion_ids.new_zeros(())
    s_ids = pad.expand(b * g, w).clone()
    s_ids[slot, : min(t, w)] = completion_ids[:, :w]
    s_mask = torch.zeros(b * g, w, dtype=torch.bool, device=dev)
    s_mask[slot, : min(t, w)] = cm[:, :w]
    ids = torch.cat([pre_ids, s_ids.view(b, g * w)], 1)                     # [B, lp + G*w]
    pre_pos = (pre_mask.long().cumsum(1) - 1).clamp(min=0)
    s_pos = (n_p[:, None] + torch.arange(w, device=dev)).repeat(1, g)      # every slot restarts after the prompt
    pos = torch.cat([pre_pos, s_pos], 1)
    eye_p = torch.eye(lp, dtype=torch.bool, device=dev)
    pmask = (torch.ones(lp, lp, dtype=torch.bool, device=dev).tril() & pre_mask[:, None, :]) | eye_p
    causal = torch.ones(w, w, dtype=torch.bool, device=dev).tril()
    s_self = (causal & s_mask[:, None, :]) | torch.eye(w, dtype=torch.bool, device=dev)
    s_pre = pre_mask.repeat_interleave(g, 0)[:, None, :].expand(b * g, w, lp)
    rmask = torch.cat([s_pre, s_self], 2)[:, None]                         # [B*G, 1, w, lp + w]
    # the tokens the decoder runs on: real prompt tokens (and each prefix's last column, which
    # predicts the first completion token), and slot column k of a row while k < its last scored
    # token's index (the input of scored token k + 1)
    width = lp + g * w
    need = torch.zeros(b * g, dtype=torch.long, device=dev)
    need[slot] = slot_inputs(cm)                                            # inputs used in each slot
    pre_keep = pre_mask.clone()
    pre_keep[:, -1] = True
    s_keep = torch.arange(w, device=dev)[None] < need[:, None]             # [B*G, w]
    keep = torch.cat([pre_keep, s_keep.view(b, g * w)], 1).view(-1).nonzero().squeeze(1)   # flat grid indices
    packed = keep.numel() < PACK_BELOW * b * width
    dec_ids, dec_pos = (ids.view(-1)[keep][None], pos.view(-1)[keep][None]) if packed else (ids, pos)
    decoder = model.get_decoder()
    cfg = decoder.config
    if _ATTN not in AttentionInterface._global_mapping:
        AttentionInterface.register(_ATTN, _split_attention)
    before = cfg._attn_implementation
    cfg._attn_implementation = _ATTN
    try:
        hidden = decoder(input_ids=dec_ids, position_ids=dec_pos, use_cache=False,
                         groupo_grid=(lp, g, w, pmask[:, None], rmask, {}, keep if packed else None, b)).last_hidden_state
    finally:
        cfg._attn_implementation = before
    hidden = hidden.reshape(-1, hidden.shape[-1])                          # [Ntok or B*width, H]
    # scored tokens (mask 1); the position predicting token k of a row: the prefix's last column
    # for k = 0, else the row's slot column k - 1; mapped to the packed order
    r_idx, k_idx = cm.nonzero(as_tuple=True)
    src = torch.where(k_idx == 0, lp - 1, lp + row_j[r_idx] * w + k_idx - 1) + row_b[r_idx] * width
    if packed:
        packed_at = torch.full((b * width,), -1, dtype=torch.long, device=dev)
        packed_at[keep] = torch.arange(keep.numel(), device=dev)
        src = packed_at[src]
    logits = model.get_output_embeddings()(hidden[src]).float()            # [scored, V]
    out = token_logprobs(logits, completion_ids[r_idx, k_idx], temperature, with_entropy, with_sum_pi2)
    return _scatter(out, (r_idx, k_idx), n, t, dev)


def _scatter(out, where, n: int, t: int, dev):
    """``token_logprobs``'s per-token outputs (log-probs, entropies or None, and sum pi^2 when it
    was asked for) put at ``where`` = (rows, columns) of [N, T] tensors, 0 elsewhere."""
    def put(x):
        return None if x is None else torch.zeros(n, t, dtype=x.dtype, device=dev).index_put(where, x)

    return tuple(put(x) for x in out)


def shared_prefix_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                           temperature: float = 1.0, with_entropy: bool = False, groups=None,
                           with_sum_pi2: bool = False):
    """Same contract as ``forward.completion_logprobs``: [N, T] log-probs (and entropies, and
    sum pi^2 with ``with_sum_pi2``)."""
    dev = prompt_ids.device
    n, T = completion_ids.shape
    groups = groups if groups is not None else plan(prompt_ids, prompt_mask, completion_mask)[0]
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
    out = token_logprobs(logits[None], completion_ids[r_idx, t_idx][None], temperature, with_entropy, with_sum_pi2)
    return _scatter([None if x is None else x[0] for x in out], (r_idx, t_idx), n, T, dev)
