"""Token log-probabilities from logits, shared by every forward path (naive, shared-prefix).

Following TRL and verl, logits are divided by the sampling temperature first, so the trained
policy is the one that generated the samples. Log-probs are computed as logit - logsumexp(logits)
at the chosen ids, without keeping a full-vocabulary log-softmax tensor.
"""
from __future__ import annotations

import contextlib

import torch


def build_inputs(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                 completion_mask: torch.Tensor):
    """Left-padded prompts and right-padded completions -> input_ids, attention_mask and
    position_ids [N, Lp+T]; positions come from the mask, so left padding does not shift them."""
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attn = torch.cat([prompt_mask, completion_mask], dim=1).long()
    pos = (attn.cumsum(1) - 1).clamp(min=0)
    return input_ids, attn, pos


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float, with_entropy: bool,
                   with_sum_pi2: bool = False):
    """log-softmax(logits / temperature) at ``ids`` [.., T] (and the entropies [.., T], else None).

    ``with_sum_pi2``: a third output, sum_v p_v^2 [.., T] of the same distribution (OTB's
    Logit-Gradient Proxy, arXiv 2602.07078), computed as exp(logsumexp(2 z) - 2 logsumexp(z))
    without materialising p; without it the outputs are the two above, computed as before."""
    if temperature and temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1)                    # [N, T]
    logp = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy and not with_sum_pi2:
        return logp, None
    entropy = sum_pi2 = None
    with torch.no_grad():
        if with_entropy:
            probs = torch.softmax(logits, dim=-1)
            entropy = lse - (probs * logits).sum(-1)         # H = logsumexp - E_p[logit]
        if with_sum_pi2:
            sum_pi2 = torch.exp(torch.logsumexp(2 * logits, dim=-1) - 2 * lse)   # sum_v p_v^2
    if with_sum_pi2:
        return logp, entropy, sum_pi2
    return logp, entropy


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def autocast_dtype(name: str) -> torch.dtype | None:
    """``model.autocast`` ("none" or a dtype name) -> the torch dtype, or None."""
    return None if name in ("none", "", None) else getattr(torch, name)
