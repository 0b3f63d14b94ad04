"""The model side of a training step, around the pure scoring step (train/score.py):

* ``prepare``: the step's training tensors, with the old-policy log-probs (and entropies) when
  ``num_iterations`` > 1, a shaping component needs them, the sampler's log-probs must be
  corrected (truncated importance sampling) or the advantage needs them (a KL penalty in the
  rewards; OTB's sum_v pi_v^2, computed in the same pass);
* ``optimise``: the rows this process trains (zero-advantage rows skipped where that changes
  nothing), the reference log-probs, then ``num_iterations`` optimizer updates (micro-batched
  forward/backward, gradients summed over processes, clipping, AdamW), never applying a
  non-finite one.

With several processes each trains its own rows with token weights normalised on the global
batch, and the gradients are summed (train/dist.py)."""
from __future__ import annotations

import math
import time

import torch

from . import critic as critic_mod
from . import dist, faults
from .loss import StepData, accumulate_loss, logprobs_all
from .score import Scored


def prepare(run, col) -> StepData:
    """Training tensors of the step's rows on the model's device (group ids and correctness
    too); old-policy log-probs when needed, with the sequence means (and token entropies) the
    shaping reads put into ``col.batch.extra``."""
    cfg, t, g = run.cfg, run.cfg.train, run.cfg.generation
    r, batch = col.rollout, col.batch
    # the batch (rewards, groups, lengths) lives on the CPU, the rollout and the model on model.device
    dev = r.completion_ids.device
    d = StepData(r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask, group=batch.group.to(dev),
                 correct=None if batch.correct is None else batch.correct.to(dev))
    # rows this process trains on (all of them in a single process; its own share with several)
    d.mine = (col.owner == dist.rank()).nonzero().squeeze(1) if dist.world() > 1 else None
    tis = r.sampler_logp is not None and cfg.rollout.tis_cap > 0
    adv = cfg.advantage
    t0 = time.perf_counter()
    if t.num_iterations > 1 or cfg.shaping.needs_logp or tis or adv.needs_ref_logp or adv.needs_sum_pi2:
        d.old_logp, ent, s2 = _logprobs(run.policy, d, t.micro_batches, _temperature(g),     # [N, T] under pi_old
                                        with_entropy=cfg.shaping.needs_entropy, sharded=run.sharded,
                                        with_sum_pi2=adv.needs_sum_pi2)
        if ent is not None:
            batch.extra["tok_entropy"] = ent.cpu()
        if s2 is not None:      # OTB: the old policy's sum_v pi_v^2 per token, with its log-probs
            batch.extra["old_logp"], batch.extra["sum_pi2"] = d.old_logp.cpu(), (s2 * r.completion_mask).cpu()
        seq = (d.old_logp * r.completion_mask).sum(1) / r.completion_mask.sum(1).clamp(min=1)
        batch.extra["seq_logp"] = seq.cpu()
    if adv.needs_ref_logp:      # a KL penalty in the rewards (GAE's kl_coef): old and reference log-probs
        d.ref_logp = _logprobs(run.ref, d, t.micro_batches, _temperature(g), sharded=run.sharded)[0]
        batch.extra["old_logp"], batch.extra["ref_logp"] = d.old_logp.cpu(), d.ref_logp.cpu()
    if adv.needs_values:        # the critic's V_old [N, T] before any update
        d.old_values = critic_mod.old_values(run.critic, d, t.micro_batches)
        batch.extra["values"] = d.old_values.cpu()
    d.seconds = time.perf_counter() - t0
    return d


def optimise(run, d: StepData, scored: Scored, step: int = 0) -> dict:
    """``num_iterations`` optimizer updates on the scored rows; returns the step's metrics."""
    cfg, t = run.cfg, run.cfg.train
    temp = _temperature(cfg.generation)
    t0 = time.perf_counter()
    dev = d.completion_ids.device
    d.advantages, d.token_weights = scored.advantages.to(torch.float32).to(dev), scored.token_weights.to(dev)
    crit = run.critic
    if crit is not None:        # the value loss: a mean over the step's trained tokens, on the same micro-batches
        d.returns = scored.returns.to(torch.float32).to(dev)
        d.value_weights = critic_mod.value_weights(d.completion_mask, scored.keep)
    full = d
    if d.mine is not None:      # weights were normalised on the global batch; train on own rows
        d = d.select(d.mine.to(dev))
    skipped_rows = 0
    if (t.skip_zero_advantage and cfg.kl.coef == 0 and cfg.objective.zero_advantage_no_gradient
            and t.top_entropy_quantile >= 1.0 and crit is None):   # A = 0 rows still count in the entropy
        # quantile and the value loss. A = 0 makes every token's loss (and gradient) exactly 0 for these
        # objectives; the token weights were normalised on the whole batch already, so dropping the rows
        # changes nothing
        nonzero = d.advantages != 0 if d.advantages.dim() == 1 else (d.advantages != 0).any(1)
        live = (nonzero & (d.token_weights.sum(1) > 0)).nonzero().squeeze(1)
        skipped_rows = d.completion_ids.shape[0] - live.numel()
        if skipped_rows:
            d = d.select(live)
    # no row to train anywhere: no pass on any rank, no gradient (not zeros: AdamW then leaves its
    # state alone, as a single process does when it has no row)
    trains = dist.any_true(d.completion_ids.shape[0] > 0)
    if run.sharded and trains:  # FSDP: every rank runs the same number of passes (collectives in each layer)
        d = pad_rows(d, full, t.micro_batches)
    if run.ref is not None and d.ref_logp is None:
        d.ref_logp, _ = logprobs_all(run.ref, d, t.micro_batches, temp)
    m = {**scored.metrics, "rows/zero_adv_skipped": skipped_rows}
    t_lp = d.seconds + time.perf_counter() - t0       # old/reference log-probs (the advantage maths: negligible)
    skipped = 0
    policy_on = crit is None or step > crit.spec.warmup_steps     # critic warm-up: only the critic trains
    for it in range(t.num_iterations):
        run.opt.zero_grad(set_to_none=True)
        if crit is not None:
            crit.opt.zero_grad(set_to_none=True)
        lm = accumulate_loss(run.policy, d, cfg.objective, cfg.kl, t.micro_batches, temp, with_entropy=(it == 0),
                             top_entropy_quantile=t.top_entropy_quantile, critic=crit, train_policy=policy_on)
        if dist.world() > 1:    # the sum over ranks of the globally weighted losses = the full-batch gradient
            if trains and not run.sharded and policy_on:  # (FSDP sums the gradients in its reduce-scatter)
                dist.sum_gradients(run.model.parameters())
            lm = _merge_rank_metrics(dist.gather_objects(lm))
        cnorm = crit.finish(trains) if crit is not None else torch.zeros(())
        if faults.active("nan_grad", step):
            next(p for p in run.model.parameters() if p.grad is not None).grad.fill_(float("nan"))
        if faults.active("nan_loss", step):
            lm["loss"] = float("nan")
        t_opt = time.perf_counter()
        gnorm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), t.grad_clip if t.grad_clip > 0 else float("inf"))
        gnorm = gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm      # a DTensor under FSDP
        if not (math.isfinite(lm["loss"]) and torch.isfinite(gnorm)
                and math.isfinite(lm.get("critic/loss", 0.0)) and torch.isfinite(cnorm)):
            skipped += 1       # never apply a non-finite update; the step is counted and reported
            run.opt.zero_grad(set_to_none=True)
            if crit is not None:
                crit.opt.zero_grad(set_to_none=True)
            continue
        run.dirty = True       # from here until the step is logged, the weights are mid-step
        run.hold.start()       # Ctrl-C from here waits until the step is logged (train/interrupt.py)
        if crit is not None:
            crit.opt.step()
            crit.opt.zero_grad(set_to_none=True)
            lm["critic/grad_norm"] = float(cnorm)
        if policy_on:
            run.opt.step()
            run.opt.zero_grad(set_to_none=True)     # free the gradients now: generation of the next step runs without them
            run.sched.step()
            cfg.rollout.weights_changed(run.model)  # a backend with its own copy of the weights resynchronises
        faults.kill_if("opt", step)
        faults.interrupt_if("int_opt", step)
        if it == 0:
            m.update(lm)
            m["grad_norm"] = float(gnorm)
            m["time/optimizer"] = time.perf_counter() - t_opt
            m["time/logprobs"] = t_lp
        elif it == t.num_iterations - 1:    # the first update sees pi = pi_old (ratio 1, KL 0, nothing
            # clipped); the last one shows what the trust region or the clipping actually did
            m.update({f"last_iter/{k}": v for k, v in lm.items()})
            m["last_iter/grad_norm"] = float(gnorm)
    if skipped:
        m["skipped"] = skipped
        print(f"warning: {skipped} update(s) skipped for non-finite loss or gradient norm", flush=True)
    return m


def _temperature(g) -> float:
    return g.temperature if g.temperature > 0 else 1.0


def _merge_rank_metrics(parts: list[dict]) -> dict:
    """Losses summed over ranks (each is its share of the full-batch loss); other metrics
    averaged over the ranks that report them (a rank with no rows reports only the loss)."""
    out = {"loss": sum(p.get("loss", 0.0) for p in parts)}
    if any("critic/loss" in p for p in parts):
        out["critic/loss"] = sum(p.get("critic/loss", 0.0) for p in parts)
    for k in {k for p in parts for k in p} - set(out):
        vals = [p[k] for p in parts if k in p]
        out[k] = sum(vals) / len(vals)
    return out


def pad_rows(d: StepData, donor: StepData, k: int) -> StepData:
    """At least ``k`` rows, so that ``micro_slices`` makes exactly ``k`` passes on every rank: the
    missing ones are copies of the global batch's first row with token weight 0 (no loss, no
    gradient). Under FSDP a rank with fewer passes would leave the others waiting in a collective."""
    n = d.completion_ids.shape[0]
    if n >= k:
        return d
    extra = donor.select(torch.zeros(k - n, dtype=torch.long, device=donor.completion_ids.device))
    if extra.token_weights is not None:
        extra.token_weights = torch.zeros_like(extra.token_weights)
    if extra.advantages is not None:
        extra.advantages = torch.zeros_like(extra.advantages)
    return StepData.cat(d, extra)


def _logprobs(policy, d: StepData, micro_batches: int, temp: float, with_entropy: bool = False,
              sharded: bool = False, with_sum_pi2: bool = False):
    """Old-policy log-probs, entropies (else None) and sum_v pi_v^2 (OTB; else None) [N, T] of
    every row of the global batch: each process computes its own rows (padded to
    ``micro_batches`` rows under FSDP), then they are gathered."""
    if d.mine is None:
        out = logprobs_all(policy, d, micro_batches, temp, with_entropy=with_entropy, with_sum_pi2=with_sum_pi2)
        return out if with_sum_pi2 else (*out, None)
    own = d.select(d.mine.to(d.completion_ids.device))
    n = own.completion_ids.shape[0]
    if sharded:
        own = pad_rows(own, d, micro_batches)
    out = logprobs_all(policy, own, micro_batches, temp, with_entropy=with_entropy, with_sum_pi2=with_sum_pi2)
    parts = [None if x is None else x[:n].cpu() for x in (*out, None)[:3]]      # log-probs, entropies, sum pi^2
    full = [torch.zeros(d.completion_ids.shape, dtype=torch.float32) if x is not None else None for x in parts]
    for rows, *got in dist.gather_objects((d.mine.cpu(), *parts)):
        for f, x in zip(full, got):
            if f is not None:
                f[rows, : x.shape[1]] = x
    dev = d.completion_ids.device
    return tuple(None if f is None else f.to(dev) for f in full)
