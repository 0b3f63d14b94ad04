"""One step's update: shaping, advantages, weights, old/reference log-probs, then
``num_iterations`` optimizer updates (micro-batched forward/backward, clipping, AdamW).
Called by the loop (train/loop.py) after ``collect``; with several processes each trains on
its own rows with weights normalised on the global batch (groupo/dist.py)."""
from __future__ import annotations

import math
import time

import torch

from .. import dist
from . import faults
from .loss import StepData, accumulate_loss, logprobs_all


def update(run, col, opt, sched, ref_model, step: int = 0) -> dict:
    """Shaping, advantages and weights, then num_iterations optimizer updates on the batch."""
    cfg, t, g = run.cfg, run.cfg.train, run.cfg.generation
    r, batch = col.rollout, col.batch
    shaping, weighting = cfg.components.get("shaping"), cfg.components.get("weighting")
    temp = g.temperature if g.temperature > 0 else 1.0
    # the batch (rewards, groups, lengths) lives on the CPU, the rollout and the model on model.device
    dev = r.completion_ids.device
    d = StepData(r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask, group=batch.group.to(dev),
                 correct=None if batch.correct is None else batch.correct.to(dev))
    # rows this process trains on (all of them in a single process; its own share with several)
    mine = (col.owner == dist.rank()).nonzero().squeeze(1) if dist.world() > 1 else None
    tis = r.sampler_logp is not None and g.tis_cap > 0
    t_lp = time.perf_counter()
    if t.num_iterations > 1 or getattr(shaping, "needs_logp", False) or tis:
        d.old_logp, ent = _logprobs(run.model, d, mine, t.micro_batches, temp,    # [N, T] under pi_old
                                    with_entropy=getattr(shaping, "needs_entropy", False))
        if ent is not None:
            batch.extra["tok_entropy"] = ent.cpu()
        seq = (d.old_logp * r.completion_mask).sum(1) / r.completion_mask.sum(1).clamp(min=1)
        batch.extra["seq_logp"] = seq.cpu()
    if shaping is not None:
        batch = shaping(batch)
    res = cfg.advantage(batch)
    keep = res.keep & batch.extra.get("keep", torch.ones_like(res.keep))
    row_w = res.weights * (weighting(batch, res) if weighting is not None else 1.0)   # [N]
    rw = getattr(cfg.components.get("replay"), "replay_weight", 1.0)
    if col.replayed is not None and rw != 1.0:
        row_w = row_w * torch.where(col.replayed, rw, 1.0).to(row_w.dtype)
    weights = cfg.aggregation(r.completion_mask.cpu(), keep, g.max_new_tokens) * row_w[:, None]   # [N, T]
    if tis:     # the sampler (vLLM) is not exactly the training forward: truncated importance sampling
        from ..rollout.vllm_backend import truncated_is_weights

        isw = truncated_is_weights(d.old_logp, r.sampler_logp.to(d.old_logp.device), r.completion_mask, g.tis_cap)
        weights = weights * isw[:, : weights.shape[1]].cpu()
        batch.extra["tis/mean_weight"] = float(isw.sum() / r.completion_mask.sum().clamp(min=1))
    d.advantages, d.token_weights = res.advantages.to(torch.float32).to(dev), weights.to(dev)
    if mine is not None:        # weights were normalised on the global batch; train on own rows
        d = d.select(mine.to(dev))
    skipped_rows = 0
    if t.skip_zero_advantage and cfg.kl.coef == 0 and getattr(cfg.objective, "zero_advantage_no_gradient", False):
        # A = 0 makes every token's loss (and gradient) exactly 0 for these objectives; the token
        # weights were normalised on the whole batch already, so dropping the rows changes nothing
        live = ((d.advantages != 0) & (d.token_weights.sum(1) > 0)).nonzero().squeeze(1)
        skipped_rows = d.completion_ids.shape[0] - live.numel()
        if skipped_rows:
            d = d.select(live)
    if ref_model is not None:
        d.ref_logp, _ = logprobs_all(ref_model, d, t.micro_batches, temp)
    t_lp = time.perf_counter() - t_lp      # old/reference log-probs (and the advantage maths, negligible)
    a = res.advantages[keep] if keep.any() else res.advantages
    m = {"adv/mean": float(a.mean()), "adv/std": float(a.std()) if a.numel() > 1 else 0.0,
         "adv/abs_mean": float(a.abs().mean()), **res.metrics, **_shaped_metrics(batch, cfg.rewards.names)}
    m["rows/zero_adv_skipped"] = skipped_rows
    if "tis/mean_weight" in batch.extra:
        m["tis/mean_weight"] = batch.extra["tis/mean_weight"]
    for label in sorted({it.group for it in col.items}):   # update magnitude per difficulty (DGPO's argument)
        rows = torch.tensor([it.group == label for it in col.items]) & keep
        if rows.any():
            m[f"adv/abs/group/{label}"] = float((res.advantages[rows] * row_w[rows]).abs().mean())
    skipped = 0
    for it in range(t.num_iterations):
        opt.zero_grad(set_to_none=True)
        lm = accumulate_loss(run.model, d, cfg.objective, cfg.kl, t.micro_batches, temp, with_entropy=(it == 0))
        if dist.world() > 1:    # the sum over ranks of the globally weighted losses = the full-batch gradient
            dist.sum_gradients(run.model.parameters())
            lm = _merge_rank_metrics(dist.gather_objects(lm))
        if faults.active("nan_grad", step):
            next(p for p in run.model.parameters() if p.grad is not None).grad.fill_(float("nan"))
        if faults.active("nan_loss", step):
            lm["loss"] = float("nan")
        t_opt = time.perf_counter()
        gnorm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), t.grad_clip if t.grad_clip > 0 else float("inf"))
        if not (math.isfinite(lm["loss"]) and torch.isfinite(gnorm)):
            skipped += 1       # never apply a non-finite update; the step is counted and reported
            opt.zero_grad(set_to_none=True)
            continue
        run.dirty = True       # from here until the step is logged, the weights are mid-step
        hold = getattr(run, "hold", None)
        if hold is not None:   # Ctrl-C from here waits until the step is logged (train/interrupt.py)
            hold.start()
        opt.step()
        opt.zero_grad(set_to_none=True)     # free the gradients now: generation of the next step runs without them
        sched.step()
        run.model._groupo_weights_version = getattr(run.model, "_groupo_weights_version", 0) + 1   # vLLM resyncs
        faults.kill_if("opt", step)
        faults.interrupt_if("int_opt", step)
        if it == 0:
            m.update(lm)
            m["grad_norm"] = float(gnorm)
            m["time/optimizer"] = time.perf_counter() - t_opt
            m["time/logprobs"] = t_lp
    if skipped:
        m["skipped"] = skipped
        print(f"warning: {skipped} update(s) skipped for non-finite loss or gradient norm", flush=True)
    return m


def _merge_rank_metrics(parts: list[dict]) -> dict:
    """Loss summed over ranks (each is its share of the full-batch loss); other metrics
    averaged over the ranks that report them (a rank with no rows reports only the loss)."""
    out = {"loss": sum(p.get("loss", 0.0) for p in parts)}
    for k in {k for p in parts for k in p} - {"loss"}:
        vals = [p[k] for p in parts if k in p]
        out[k] = sum(vals) / len(vals)
    return out


def _logprobs(model, d: StepData, mine, micro_batches: int, temp: float, with_entropy: bool = False):
    """Old-policy log-probs (and entropies) of every row of the global batch: each process
    computes its own rows, then they are gathered."""
    if mine is None:
        return logprobs_all(model, d, micro_batches, temp, with_entropy=with_entropy)
    lp, ent = logprobs_all(model, d.select(mine.to(d.completion_ids.device)), micro_batches, temp,
                           with_entropy=with_entropy)
    full = torch.zeros(d.completion_ids.shape, dtype=torch.float32)
    full_ent = torch.zeros_like(full) if with_entropy else None
    for rows, l, e in dist.gather_objects((mine.cpu(), lp.cpu(), None if ent is None else ent.cpu())):
        full[rows, : l.shape[1]] = l
        if full_ent is not None:
            full_ent[rows, : e.shape[1]] = e
    dev = d.completion_ids.device
    return full.to(dev), None if full_ent is None else full_ent.to(dev)


def _shaped_metrics(batch, names) -> dict:
    """Mean of the rewards after shaping and of each component the shaping added."""
    m = {"reward/shaped/mean": float(batch.rewards.float().mean())}
    if batch.reward_components is not None:
        for k, name in enumerate(batch.reward_names):
            if name not in names:
                m[f"reward/{name}/mean"] = float(batch.reward_components[:, k].float().nanmean())
    return m


