"""Overlap (``rollout.overlap``): generate step t+1 while step t trains, one step off-policy as
verl's one-step-off-policy recipe and prime-rl's async mode (``max_async_level=1``).

What is sampled when, in step t (train/loop.py ``train_step``):

    collect(t)                    rollouts of step t (the prefetched ones, see below)
    sampler/allocation update     with step t's results, as in a synchronous run
    start(run, t + 1)             plan step t+1's first round on COPIES of the prompt RNG and of the
                                  sampler, allocation and replay states (``collect.plan_round``,
                                  the code collect runs), send it with the weights of now
    score(t), optimise(t)         the server generates step t+1 meanwhile
    collect(t+1)                  plans the same round with the run's own RNG and states; the
                                  backend returns the prefetched rows when the request is identical

So step t+1 trains on exactly the prompts, group sizes and generator seeds of a synchronous run;
only the weights that sample them are older: those before step t's update (version t-1 with
one update per step) instead of after it. Step 1 has nothing prefetched and samples with version
0, step t >= 2 with version t-2 while the trainer holds version t-1: staleness 1 update per step
(``train.num_iterations`` updates per step: staleness ``num_iterations``). Every row carries its
version (``Rollout.policy_version``) and collect logs ``rollout/version_min|max`` and
``rollout/staleness_mean|max``.

The correction: with ``rollout.tis_cap`` > 0 the step computes the old log-probs with the
weights it trains from (train/update.py ``prepare``: always when the sampler's log-probs are
there), so the PPO ratio is taken against the current policy and each token's loss is weighted
by min(pi_current / pi_behaviour, cap), the truncated importance weight (algo/tis.py) between the
current policy and the one that sampled it (the server returns its log-probs).

Only the first round is prefetched: refill rounds (DAPO's filter) need the step's rewards and are
generated in collect with the current weights (staleness 0 for their rows). A resumed run
samples its first step with the resumed weights (nothing was prefetched), so it is not
bit-identical to an uninterrupted overlapped run.
"""
from __future__ import annotations

import copy

import torch

from .collect import plan_round


def start(run, step: int) -> None:
    """Send step ``step``'s first generation round ahead (``rollout.overlap``); nothing past the
    last step, and nothing changes in the run's RNG or states."""
    cfg, g = run.cfg, run.cfg.generation
    if not cfg.rollout.overlap or step > cfg.train.steps:
        return
    gen = torch.Generator(device=run.gen.device)
    gen.set_state(run.gen.get_state())
    rnd = plan_round(run, step, g.prompts_per_step, 0, copy.deepcopy(run.step_rng), gen,
                     copy.deepcopy(run.sampler_state), copy.deepcopy(run.alloc_state), copy.deepcopy(run.replay_state))
    mine = rnd.mine
    cfg.rollout.prefetch(run.model, run.tokenizer, rnd.prompts[mine], rnd.sizes[mine], g.max_new_tokens, run.eos_ids,
                         g.temperature, g.top_p, g.top_k, rnd.gens, autocast=run.policy.autocast)
