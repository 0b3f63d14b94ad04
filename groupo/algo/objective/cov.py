"""Clip-Cov and KL-Cov: entropy control through the tokens whose log-prob and advantage have
the largest covariance ("The Entropy Mechanism of Reinforcement Learning for Reasoning
Language Models", Cui et al., arXiv 2505.22617, §4).

Both follow verl 0.9's ``clip_cov`` / ``kl_cov`` policy losses (adapted there from the
authors' PRIME-RL/Entropy-Mechanism-of-RL code). The covariance of token t is

    cov_{i,t} = (A_i - mean A) * (logp_{i,t} - mean logp)

with both means over the real tokens *of one loss call*: one micro-batch here
(``train.micro_batches``), one micro-batch in verl too. Which tokens are picked therefore
depends on how the step is split, so these objectives are not micro-batch invariant, and
rows with A = 0 shift the means (``zero_advantage_no_gradient`` is False: the loop does not
skip them). Rows the step does not train (token weight 0) are in the call and count in the
means, where verl has already removed them from its batch.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

from ...protocols import Objective
from ...registry import register


def token_cov(logp, adv, mask):
    """cov [N, T] of each token (A - masked mean A)(logp - masked mean logp), no gradient."""
    m = mask.to(logp.dtype)
    n = m.sum().clamp(min=1)
    a = adv.to(logp.dtype)[:, None].expand_as(logp)
    lp = logp.detach()
    return (a - (a * m).sum() / n) * (lp - (lp * m).sum() / n)


def data_seed(seed: int, *tensors) -> int:
    """A 63-bit seed from ``seed`` and the bytes of ``tensors`` (deterministic for the same data)."""
    h = zlib.crc32(str(seed).encode())
    for t in tensors:
        h = zlib.crc32(t.detach().to("cpu", torch.float64).contiguous().numpy().tobytes(), h)
    return h


@register("objective", "clip_cov")
@dataclass(frozen=True)
class ClipCov(Objective):
    """Clip-Cov (arXiv 2505.22617, §4.2, Clip-Cov; verl ``clip_cov``): the PPO clipped
    surrogate, except that a random subset of the tokens with lb < cov < ub loses its
    gradient (its loss is set to 0, as verl multiplies it by 0):

        pg = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))     per token, r = exp(logp - old)
        candidates: real tokens with clip_cov_lb < cov < clip_cov_ub that PPO did not clip
        pick min(max(int(clip_ratio * n_tokens), 1), #candidates) of them at random
        loss = pg * (0 on the picked tokens, 1 elsewhere)

    Defaults are verl's: clip_ratio 2e-4 (the paper's r), lb 1, ub 5 (the paper's
    omega_low, omega_high), eps 0.2/0.2 (verl's clip_ratio). n_tokens counts the call's real
    tokens (see the module doc: one micro-batch).

    Randomness: verl draws the subset with ``torch.randperm`` on the global RNG. Here it is
    drawn from a ``torch.Generator`` seeded with ``seed`` and a CRC32 of the call's old
    log-probs, advantages and mask, so the same data picks the same tokens, on any device,
    and nothing else's random stream moves. No log-ratio clamp and no dual clip, as verl.
    """

    eps_low: float = 0.2
    eps_high: float = 0.2
    clip_ratio: float = 2e-4
    clip_cov_lb: float = 1.0
    clip_cov_ub: float = 5.0
    seed: int = 0

    def __post_init__(self):
        if self.eps_low < 0 or self.eps_high < 0:
            raise ValueError("eps_low and eps_high must be >= 0")
        if not 0 < self.clip_ratio <= 1:
            raise ValueError(f"clip_ratio must be in (0, 1], got {self.clip_ratio}")
        if self.clip_cov_lb >= self.clip_cov_ub:
            raise ValueError(f"clip_cov_lb must be < clip_cov_ub, got {self.clip_cov_lb}, {self.clip_cov_ub}")

    def __call__(self, logp, old_logp, adv, mask):
        a = adv.to(logp.dtype)[:, None]
        real = mask > 0
        ratio = torch.exp(logp - old_logp)
        pg1 = -a * ratio
        pg2 = -a * torch.clamp(ratio, 1 - self.eps_low, 1 + self.eps_high)
        clipped = (pg2 > pg1) & real
        cov = token_cov(logp, adv, mask)
        cand = real & ~clipped & (cov > self.clip_cov_lb) & (cov < self.clip_cov_ub)
        idx = cand.flatten().nonzero().squeeze(1)                              # candidate positions
        keep = torch.ones(logp.shape, dtype=logp.dtype, device=logp.device)   # contiguous: indexed flat below
        if idx.numel():
            n = max(int(self.clip_ratio * int(real.sum())), 1)
            gen = torch.Generator().manual_seed(data_seed(self.seed, old_logp * mask, adv, mask))
            pick = idx[torch.randperm(idx.numel(), generator=gen)[:n].to(idx.device)]
            keep.view(-1)[pick] = 0.0
        loss = torch.maximum(pg1, pg2) * keep
        return loss, {"clip/frac": clipped.to(logp.dtype), "cov/detached": (keep == 0).to(logp.dtype),
                      "ratio/mean": ratio.detach()}


@register("objective", "kl_cov")
@dataclass(frozen=True)
class KLCov(Objective):
    """KL-Cov (arXiv 2505.22617, §4.2, KL-Cov; verl ``kl_cov``): the unclipped surrogate
    -A r on every token, plus a penalty on |log r| on the top-k tokens by covariance:

        loss = -A r + kl_coef * |logp - old_logp|   on the k = max(int(kl_ratio * n_tokens), 1)
                                                     real tokens with the largest cov
        loss = -A r                                  elsewhere

    Defaults are verl's: kl_ratio 2e-4 (the paper's k), kl_coef 0.1 (verl's ``ppo_kl_coef``
    config default; its docstring says 1). Ties in cov are broken by ``torch.topk``, as
    verl. No clip, no log-ratio clamp, as verl. n_tokens: the call's real tokens (module doc).
    """

    kl_ratio: float = 2e-4
    kl_coef: float = 0.1

    def __post_init__(self):
        if not 0 < self.kl_ratio <= 1:
            raise ValueError(f"kl_ratio must be in (0, 1], got {self.kl_ratio}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")

    def __call__(self, logp, old_logp, adv, mask):
        a = adv.to(logp.dtype)[:, None]
        log_ratio = logp - old_logp
        ratio = torch.exp(log_ratio)
        loss = -a * ratio
        real = (mask > 0).flatten().nonzero().squeeze(1)
        top = torch.zeros(logp.shape, dtype=logp.dtype, device=logp.device)
        if real.numel():
            cov = token_cov(logp, adv, mask).flatten()[real]
            k = max(int(real.numel() * self.kl_ratio), 1)
            top.view(-1)[real[torch.topk(cov, k).indices]] = 1.0
            loss = loss + top * self.kl_coef * log_ratio.abs()
        return loss, {"cov/penalised": top, "ratio/mean": ratio.detach()}
