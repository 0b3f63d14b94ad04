"""Log-probabilities of completion tokens under a causal LM (the naive forward).

Layout: prompts left-padded to Lp, completions right-padded to T, concatenated to
[N, Lp+T], the last column left out (the last completion token predicts nothing scored). Position ids come from the attention mask, so left padding does not shift
positions. Log-probs are computed as logit - logsumexp(logits) on the completion
positions only, without keeping a full-vocabulary log-softmax tensor.
Following TRL and verl, logits are divided by the sampling temperature first, so the
trained policy is the one that generated the samples.
"""
from __future__ import annotations

import contextlib

import torch


def build_inputs(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                 completion_mask: torch.Tensor):
    """-> input_ids [N, Lp+T], attention_mask [N, Lp+T], position_ids [N, Lp+T]."""
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attn = torch.cat([prompt_mask, completion_mask], dim=1).long()
    pos = (attn.cumsum(1) - 1).clamp(min=0)
    return input_ids, attn, pos


def configure(model, logprob_chunk: int = 0, autocast: str = "none", prefix_sharing: str = "off"):
    """Options read by ``completion_logprobs`` for this model (set once at setup)."""
    model._groupo_logprob_chunk = int(logprob_chunk)
    model._groupo_prefix = prefix_sharing
    model._groupo_autocast = None if autocast in ("none", "", None) else getattr(torch, autocast)
    return model


def _autocast(model, device: torch.device):
    dtype = getattr(model, "_groupo_autocast", None)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                        temperature: float = 1.0, with_entropy: bool = False):
    """Per-token log pi(o_t | q, o_<t) for completion tokens: [N, T] (and entropy [N, T])."""
    input_ids, attn, pos = build_inputs(prompt_ids, prompt_mask, completion_ids, completion_mask)
    T = completion_ids.shape[1]
    chunk = getattr(model, "_groupo_logprob_chunk", 0)
    mode = getattr(model, "_groupo_prefix", "off")
    if mode != "off":
        from .prefix import choose, grid_logprobs, plan, shared_prefix_logprobs, supports

        groups = plan(prompt_ids, prompt_mask, completion_mask)[0] if supports(model) else None   # grouped once
        path = choose(model, prompt_ids, prompt_mask, completion_mask, mode, groups)
        if path != "naive":
            fn = grid_logprobs if path == "split" else shared_prefix_logprobs
            with _autocast(model, input_ids.device):
                return fn(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature, with_entropy,
                          groups=groups)
    if T:       # the last completion token is no input to anything scored: left out of the forward
        input_ids, attn, pos = input_ids[:, :-1], attn[:, :-1], pos[:, :-1]
    with _autocast(model, input_ids.device):
        if chunk:
            return _chunked(model, input_ids, attn, pos, completion_ids, temperature, with_entropy, chunk)
        out = model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=False,
                    logits_to_keep=T)
    logits = out.logits[:, out.logits.shape[1] - T:, :].float()   # [N, T, V] predicting the completion tokens
    return _token_logprobs(logits, completion_ids, temperature, with_entropy)


def _token_logprobs(logits, ids, temperature: float, with_entropy: bool):
    """log-softmax at the chosen ids via logit - logsumexp (no [.., V] log-softmax kept)."""
    if temperature and temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1)                    # [N, T]
    logp = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy:
        return logp, None
    with torch.no_grad():
        probs = torch.softmax(logits, dim=-1)
        entropy = lse - (probs * logits).sum(-1)             # H = logsumexp - E_p[logit]
    return logp, entropy


def _chunked(model, input_ids, attn, pos, completion_ids, temperature, with_entropy, chunk: int):
    """The same numbers with at most ``chunk`` completion positions' logits alive at once:
    the decoder runs once, then the output head + log-softmax run per chunk of positions
    under activation checkpointing, so the backward pass recomputes each chunk's logits
    instead of storing [N, T, V]. For models whose head is one linear layer on the final
    hidden state (Llama, Qwen, Mistral, ...); logit soft-capping heads are not supported."""
    from torch.utils.checkpoint import checkpoint

    T = completion_ids.shape[1]
    body, head = model.get_decoder(), model.get_output_embeddings()
    hidden = body(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=False).last_hidden_state
    hidden = hidden[:, hidden.shape[1] - T:, :]              # [N, T, H] (the input ends before the last token)

    def part(h, ids):
        return _token_logprobs(head(h).float(), ids, temperature, False)[0]

    logps, ents = [], []
    for a in range(0, T, chunk):
        h, ids = hidden[:, a:a + chunk], completion_ids[:, a:a + chunk]
        logps.append(checkpoint(part, h, ids, use_reentrant=False) if torch.is_grad_enabled() else part(h, ids))
        if with_entropy:
            with torch.no_grad():
                ents.append(_token_logprobs(head(h.detach()).float(), ids, temperature, True)[1])
    return torch.cat(logps, 1), (torch.cat(ents, 1) if with_entropy else None)
