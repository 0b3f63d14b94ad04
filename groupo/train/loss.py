"""The policy loss of one optimizer step, accumulated over micro-batches.

Token weights (from the aggregation component, times per-row question weights) are
computed on the whole step, so ``sum_mb sum_{i,t in mb} w * loss`` equals the
full-batch loss and 1 or k micro-batches give the same gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.policy import Policy

ROW_FIELDS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", "token_weights",
              "old_logp", "ref_logp", "group", "correct", "old_values", "returns", "value_weights")


@dataclass
class StepData:
    """Training tensors of one step (all rows, CPU or device)."""

    prompt_ids: torch.Tensor       # [N, Lp]
    prompt_mask: torch.Tensor      # [N, Lp]
    completion_ids: torch.Tensor   # [N, T]
    completion_mask: torch.Tensor  # [N, T]
    advantages: torch.Tensor | None = None     # [N], or [N, T] from a per-token advantage (GAE)
    token_weights: torch.Tensor | None = None  # [N, T] aggregation weights (0 for rows not trained)
    old_logp: torch.Tensor | None = None  # [N, T] when num_iterations > 1 (or shaping needs it)
    ref_logp: torch.Tensor | None = None  # [N, T] when a KL penalty is on
    group: torch.Tensor | None = None     # [N] group ids (full-batch objectives such as DisCO)
    correct: torch.Tensor | None = None   # [N] task correctness 0/1
    old_values: torch.Tensor | None = None     # [N, T] critic's values before the update (critic.name=value)
    returns: torch.Tensor | None = None        # [N, T] the critic's targets (GAE returns)
    value_weights: torch.Tensor | None = None  # [N, T] token weights of the value loss
    mine: torch.Tensor | None = None      # rows this process trains (several processes), else None
    seconds: float = 0.0                  # time spent on the old-policy log-probs

    def select(self, rows: torch.Tensor) -> "StepData":
        """The rows ``rows`` (a long index tensor) of every row field (fields may live on
        different devices: group ids and correctness stay on the CPU when the model is on a GPU)."""
        def pick(t):
            return None if t is None else t[rows.to(t.device)]

        return StepData(**{f: pick(getattr(self, f)) for f in ROW_FIELDS}, seconds=self.seconds)

    @staticmethod
    def cat(a: "StepData", b: "StepData") -> "StepData":
        """The rows of ``a`` then ``b`` (same widths; fields missing in either are dropped)."""
        def join(x, y):
            return None if x is None or y is None else torch.cat([x, y.to(x.device)])

        return StepData(**{f: join(getattr(a, f), getattr(b, f)) for f in ROW_FIELDS}, seconds=a.seconds)


def micro_slices(n: int, k: int) -> list[slice]:
    """Split n rows into at most k contiguous, nearly equal slices."""
    k = max(1, min(k, n))
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _trim(sl: slice, d: StepData):
    """Cut left prompt padding and right completion padding shared by the whole micro-batch."""
    pm, cm = d.prompt_mask[sl], d.completion_mask[sl]
    p_keep = pm.any(0).nonzero()
    p0 = int(p_keep[0]) if p_keep.numel() else pm.shape[1] - 1
    c_keep = cm.any(0).nonzero()
    c1 = int(c_keep[-1]) + 1 if c_keep.numel() else 1
    return slice(p0, None), slice(0, c1)


@torch.no_grad()
def logprobs_all(policy: Policy, d: StepData, micro_batches: int, temperature: float, with_entropy: bool = False,
                 with_sum_pi2: bool = False):
    """No-grad log-probs of every completion token [N, T] (old or reference policy), and the
    token entropies [N, T] when ``with_entropy`` (else None); with ``with_sum_pi2`` a third
    output, sum_v pi_v^2 [N, T] (OTB)."""
    out = torch.zeros(d.completion_ids.shape, dtype=torch.float32, device=d.completion_ids.device)
    ents = torch.zeros_like(out) if with_entropy else None
    s2 = torch.zeros_like(out) if with_sum_pi2 else None
    more = {"with_sum_pi2": True} if with_sum_pi2 else {}     # (asked for only when needed)
    for sl in micro_slices(d.completion_ids.shape[0], micro_batches):
        ps, cs = _trim(sl, d)
        res = policy.logprobs(d.prompt_ids[sl, ps], d.prompt_mask[sl, ps], d.completion_ids[sl, cs],
                              d.completion_mask[sl, cs], temperature, with_entropy=with_entropy, **more)
        out[sl, cs] = res[0]
        if ents is not None:
            ents[sl, cs] = res[1]
        if s2 is not None:
            s2[sl, cs] = res[2]
    return (out, ents, s2) if with_sum_pi2 else (out, ents)


def high_entropy_mask(ent: torch.Tensor, tokens: torch.Tensor, quantile: float) -> torch.Tensor:
    """1.0 on the tokens (``tokens`` > 0) whose entropy is at least the (1 - quantile) quantile
    of their entropies, linearly interpolated as ``torch.quantile`` (TRL's
    ``get_high_entropy_mask``), else 0."""
    real = tokens > 0
    vals = ent.detach()[real].double().sort().values
    if vals.numel() == 0:
        return torch.zeros_like(ent)
    pos = (1.0 - quantile) * (vals.numel() - 1)
    lo, hi = int(pos), min(int(pos) + 1, vals.numel() - 1)
    threshold = vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)
    return ((ent.detach().double() >= threshold) & real).to(ent.dtype)


def accumulate_loss(policy: Policy, d: StepData, objective, kl, micro_batches: int, temperature: float,
                    with_entropy: bool = True, top_entropy_quantile: float = 1.0, critic=None,
                    train_policy: bool = True) -> dict:
    """Forward + backward over micro-batches; returns step metrics (gradients are left in .grad).

    ``critic`` (a ``train.critic.CriticRun``): its value loss is computed and back-propagated on
    the same micro-batches (``critic/loss``); ``train_policy`` False (the critic's warm-up steps):
    the policy's forward and backward are left out.

    ``top_entropy_quantile`` < 1 ("Beyond the 80/20 rule", arXiv 2506.01939; TRL's option of
    the same name): the policy loss keeps only the tokens whose entropy is in the top quantile
    of the micro-batch's trained tokens (TRL: of the tokens of one loss call, gathered over
    processes; here each process takes its own micro-batch's quantile). The KL term and the
    aggregation weights are not masked, as TRL."""
    if objective.full_batch:
        return _full_batch_loss(policy, d, objective, kl, temperature, with_entropy)
    import time

    select = top_entropy_quantile < 1.0
    sums = {"loss": 0.0, "time/forward": 0.0, "time/backward": 0.0}
    tok_sums: dict[str, float] = {}
    n_tok = 0.0
    if critic is not None:
        sums["critic/loss"] = 0.0
    for sl in micro_slices(d.completion_ids.shape[0], micro_batches):
        t0 = time.perf_counter()
        ps, cs = _trim(sl, d)
        mask = d.completion_mask[sl, cs].float()
        w = d.token_weights[sl, cs].to(torch.float32)
        trained = mask * (w > 0).float()
        if critic is not None:
            closs, cm = critic.micro_step(d, sl, ps, cs)
            sums["critic/loss"] += closs
            for k, v in cm.items():
                tok_sums[k] = tok_sums.get(k, 0.0) + float((v.detach().float() * trained).sum())
            if not train_policy:
                n_tok += float(trained.sum())
                continue
        logp, ent = policy.logprobs(d.prompt_ids[sl, ps], d.prompt_mask[sl, ps], d.completion_ids[sl, cs],
                                    d.completion_mask[sl, cs], temperature, with_entropy=with_entropy or select)
        old = d.old_logp[sl, cs] if d.old_logp is not None else logp.detach()
        adv = d.advantages[sl] if d.advantages.dim() == 1 else d.advantages[sl, cs]    # [n] or [n, t]
        loss_tok, m = objective(logp, old, adv, mask)                     # [n, t]
        if select:
            keep = high_entropy_mask(ent, mask * (w > 0), top_entropy_quantile)
            loss_tok = loss_tok * keep
            m = {**m, "entropy/selected": keep}
            ent = ent if with_entropy else None
        if d.ref_logp is not None and kl.coef != 0.0:
            kl_tok = kl(logp, d.ref_logp[sl, cs])
            loss_tok = loss_tok + kl.coef * kl_tok
            m = {**m, "kl/mean": kl_tok.detach()}
        if ent is not None:
            m = {**m, "entropy/mean": ent}
        loss = (w * loss_tok).sum()
        t1 = time.perf_counter()
        if w.requires_grad or loss.requires_grad:
            loss.backward()
        sums["time/forward"] += t1 - t0
        sums["time/backward"] += time.perf_counter() - t1
        sums["loss"] += float(loss.detach())
        n_tok += float(trained.sum())
        for k, v in m.items():
            tok_sums[k] = tok_sums.get(k, 0.0) + float((v.detach().float() * trained).sum())
    out = dict(sums)
    for k, v in tok_sums.items():
        out[k] = v / max(n_tok, 1.0)
    return out


def _full_batch_loss(policy: Policy, d: StepData, objective, kl, temperature: float, with_entropy: bool) -> dict:
    """Objectives whose loss is not a sum over tokens (DisCO's log-sum-exp over a group's
    negatives and its squared-hinge KL over the batch) see every row at once; the rows
    with token weight 0 (filtered or dropped) are excluded. micro_batches does not apply."""
    rows = (d.token_weights.sum(1) > 0).nonzero().squeeze(1)
    if rows.numel() == 0:
        return {"loss": 0.0}
    sl = rows
    mask = d.completion_mask[sl].float()
    logp, ent = policy.logprobs(d.prompt_ids[sl], d.prompt_mask[sl], d.completion_ids[sl], d.completion_mask[sl],
                                temperature, with_entropy=with_entropy)
    old = d.old_logp[sl] if d.old_logp is not None else logp.detach()
    loss, metrics = objective.batch_loss(logp, old, mask, d.group[sl], d.correct[sl])
    out = dict(metrics)
    if d.ref_logp is not None and kl.coef != 0.0:
        kl_tok = kl(logp, d.ref_logp[sl])
        w = d.token_weights[sl].to(torch.float32)
        loss = loss + kl.coef * (w * kl_tok).sum()
        out["kl/mean"] = float((kl_tok.detach() * mask).sum() / mask.sum().clamp(min=1))
    if ent is not None:
        out["entropy/mean"] = float((ent * mask).sum() / mask.sum().clamp(min=1))
    loss.backward()
    out["loss"] = float(loss.detach())
    return out
