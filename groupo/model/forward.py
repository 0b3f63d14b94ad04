"""Log-probabilities of completion tokens under a causal LM (the naive forward).

Layout: prompts left-padded to Lp, completions right-padded to T, concatenated to
[N, Lp+T]. Position ids come from the attention mask, so left padding does not shift
positions. Log-probs are computed as logit - logsumexp(logits) on the completion
positions only, without keeping a full-vocabulary log-softmax tensor.
Following TRL and verl, logits are divided by the sampling temperature first, so the
trained policy is the one that generated the samples.
"""
from __future__ import annotations

import torch


def build_inputs(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                 completion_mask: torch.Tensor):
    """-> input_ids [N, Lp+T], attention_mask [N, Lp+T], position_ids [N, Lp+T]."""
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attn = torch.cat([prompt_mask, completion_mask], dim=1).long()
    pos = (attn.cumsum(1) - 1).clamp(min=0)
    return input_ids, attn, pos


def completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                        temperature: float = 1.0, with_entropy: bool = False):
    """Per-token log pi(o_t | q, o_<t) for completion tokens: [N, T] (and entropy [N, T])."""
    input_ids, attn, pos = build_inputs(prompt_ids, prompt_mask, completion_ids, completion_mask)
    Lp, T = prompt_ids.shape[1], completion_ids.shape[1]
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=False,
                logits_to_keep=T + 1)
    logits = out.logits[:, -(T + 1):-1, :].float()          # [N, T, V] predicting the completion tokens
    if temperature and temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1)                    # [N, T]
    logp = logits.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy:
        return logp, None
    with torch.no_grad():
        probs = torch.softmax(logits, dim=-1)
        entropy = lse - (probs * logits).sum(-1)             # H = logsumexp - E_p[logit]
    return logp, entropy
