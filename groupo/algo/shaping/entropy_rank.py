"""R³'s structural-entropy ranking reward (arXiv 2601.19620; ALGORITHMS.md §10, ranking part).

The paper gives failed or truncated samples *relative* rewards from a ranking by their
token-entropy patterns ("local exploration" and "global stability"); its equations are
not public. OUR DESIGN (the spec's [INFERRED] one), per row i with token entropies
H_{i,t} under the rollout policy (real completion tokens only):

    z_i = w_loc * mean(top-kappa_t H_{i,t}) - w_glob * std_t(H_{i,t})      (population std)

Among the F_g failed rows of group g (task-incorrect; a truncated completion is one of them
whenever it scores 0, the usual case; deviation: a truncated completion that still holds
the right answer keeps its reward and is not ranked, so truncation is never paid), rank z ascending (0 = lowest, ties in row order) and add

    r_i += r_rank_max * rank_i / (|F_g| - 1)          (0 when |F_g| = 1)

as a new reward component ``rank``; correct, untruncated rows get 0 there and keep their
reward. ``r_rank_max`` < the correct reward (default 0.2 < 1), so a failure never outranks
a success. Worked example (spec §10 e): z = [0.1, 0.5, -0.2] on three failed rows ->
ranks [1, 2, 0] -> rewards [0.1, 0.2, 0.0].
Needs ``extra["tok_entropy"]`` [N, T] and ``completion_mask``; the loop computes the
entropies with the old log-probs when ``needs_entropy`` is set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ... import ops
from ...protocols import Shaping
from ...registry import register
from .common import add_term, group_ranks


def entropy_scores(ent: torch.Tensor, mask: torch.Tensor, kappa: int, w_loc: float, w_glob: float) -> torch.Tensor:
    """z [N] from token entropies [N, T] on mask [N, T] (rows with no token give 0)."""
    ent, m = ent.double(), mask.bool()
    n_tok = m.sum(1)
    top = torch.where(m, ent, torch.full_like(ent, float("-inf")))
    k = max(1, min(kappa, ent.shape[1]))
    vals = torch.topk(top, k, dim=1).values                           # [N, k], -inf past the row length
    kk = n_tok.clamp(max=k)
    loc = torch.where(torch.isfinite(vals), vals, torch.zeros_like(vals)).sum(1) / kk.clamp(min=1)
    mean = (ent * m).sum(1) / n_tok.clamp(min=1)
    var = (((ent - mean[:, None]) ** 2) * m).sum(1) / n_tok.clamp(min=1)
    z = w_loc * loc - w_glob * var.sqrt()
    return torch.where(n_tok > 0, z, torch.zeros_like(z))


def rank_rewards(z: torch.Tensor, failed: torch.Tensor, group: torch.Tensor, r_max: float) -> torch.Tensor:
    """r_max * rank / (|F_g| - 1) on failed rows (rank of z among the failed rows of the
    row's group), 0 elsewhere and for a group with a single failed row."""
    sub = group.long() * 2 + failed.long()                   # failed and passed rows ranked apart
    rank = group_ranks(z.double(), sub).double()
    nf = ops.count(sub).double()
    r = torch.where(nf > 1, r_max * rank / (nf - 1).clamp(min=1), torch.zeros_like(rank))
    return torch.where(failed.bool(), r, torch.zeros_like(r))


@register("shaping", "entropy_rank")
@dataclass(frozen=True)
class EntropyRank(Shaping):
    """R³ ranking reward for failed or truncated samples (see the module docstring)."""

    needs_logp: ClassVar[bool] = True
    needs_entropy: ClassVar[bool] = True

    r_rank_max: float = 0.2
    kappa: int = 8            # top-kappa token entropies averaged for "local exploration"
    w_loc: float = 1.0
    w_glob: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.r_rank_max < 1.0:
            raise ValueError(f"r_rank_max must be in [0, 1) (below the correct reward 1), got {self.r_rank_max}")
        if self.kappa < 1:
            raise ValueError(f"kappa must be >= 1, got {self.kappa}")

    def __call__(self, batch):
        ent = batch.extra.get("tok_entropy")
        if ent is None or batch.completion_mask is None:
            raise ValueError("shaping 'entropy_rank' needs batch.extra['tok_entropy'] [N, T] and "
                             "batch.completion_mask (the training loop provides both)")
        if batch.correct is None:
            raise ValueError("shaping 'entropy_rank' needs batch.correct")
        failed = batch.correct < 1
        z = entropy_scores(torch.as_tensor(ent), batch.completion_mask, self.kappa, self.w_loc, self.w_glob)
        r = rank_rewards(z, failed, batch.group, self.r_rank_max)
        extra = {**batch.extra, "rank_score": z}
        return add_term(batch, r, "rank", 1.0, extra=extra)


