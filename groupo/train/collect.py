"""The collect step: sample prompts, generate groups, compute rewards, filter (with refill).

Returns the training ``Batch`` (rows that are trained), the matching rollout tensors, and
metrics over every row generated this step. With several processes each generates a share of
whole prompts and the rows are gathered, so every rank holds the global batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .. import ops
from ..prompts.render import render
from ..rewards.user import trainer_state
from ..rollout.base import Rollout, cat_rollouts, completion_ids, empty_rollout, select_rows
from ..types import Batch
from . import dist, faults, fsdp
from .completions import StepRows


@dataclass
class Collected:
    batch: Batch              # training rows only
    rollout: Rollout          # training rows only (same order as batch)
    items: list               # [N] task item of each training row
    metrics: dict
    prompt_items: list        # every prompt generated this step (all rounds), in order
    prompt_correct: list      # [[0/1 per completion] per prompt], aligned with prompt_items
    replayed: torch.Tensor | None = None   # [N] bool, training rows that came from the replay buffer
    owner: torch.Tensor | None = None      # [N] rank that generated each training row (trains on it)
    seen: StepRows | None = None           # every row generated this step, filtered ones too (completions log)


def render_prompts(template, items, tokenizer, step: int, offset: int, questions=None) -> list[str]:
    """One prompt text per item (all rollouts of a prompt share it), for prompt ``offset + j`` of
    ``step`` (templates that draw a variant per prompt key on it). ``questions[j]``, when not
    None, replaces item j's question text (R³ reflection)."""
    qs = questions or [None] * len(items)
    return [render(template, it, tokenizer, step, offset + j, q) for j, (it, q) in enumerate(zip(items, qs))]


@dataclass
class Round:
    """What one generation round asks for: the global prompt list and this rank's share."""
    items: list
    reflect: list | None      # R³ reflection questions (None: the items' own)
    prompts: list
    sizes: list
    mine: slice               # this rank's whole prompts
    gens: object              # the step's generator, or one per prompt of the share


def plan_round(run, step: int, need: int, offset: int, rng, gen, sampler_state: dict, alloc_state: dict,
               replay_state: dict) -> Round:
    """Draw ``need`` prompts (consuming ``rng`` and the states given), render them as prompts
    ``offset``.. of ``step``, allocate their rollouts and give each its generator (``gen``, or
    one per prompt). ``collect`` calls it with the run's own RNG, generator and states;
    train/prefetch.py with copies, to send the next step's first round ahead of time."""
    cfg, g = run.cfg, run.cfg.generation
    replay = cfg.replay if cfg.replay.active else None
    items = cfg.sampler(cfg.task, rng, need, sampler_state)                # the global list, same on every rank
    reflect = replay.reflect(items, replay_state) if replay is not None else None
    prompts = render_prompts(cfg.template, items, run.tokenizer, step, offset, reflect)
    sizes = cfg.allocation(items, g.group_size, alloc_state)
    mine = dist.share(len(items))                                           # whole prompts per rank
    gens = gen
    if g.seed_per_prompt or dist.world() > 1:
        gens = dist.prompt_generators(cfg.seed, step, offset + mine.start, len(items[mine]), gen.device)
    return Round(items, reflect, prompts, sizes, mine, gens)


def collect(run, step: int = 0) -> Collected:
    """Sample, generate, score and filter until the step has its prompts (or rounds run out)."""
    cfg, g = run.cfg, run.cfg.generation
    filt, replay = cfg.filter, cfg.replay if cfg.replay.active else None
    parts, all_items, comps, t_gen, t_score, n_prompts = [], [], [], 0.0, 0.0, 0
    group_items, replayed_parts, owners, n_reflect, row_prompts = [], [], [], 0, []
    rounds, need, valid_groups = 0, g.prompts_per_step, 0
    greedy = [] if cfg.advantage.needs_greedy else None      # per row: its prompt's greedy [reward, length]
    while True:
        rnd = plan_round(run, step, need, n_prompts, run.step_rng, run.gen, run.sampler_state, run.alloc_state,
                         run.replay_state)
        items, prompts, sizes, mine, gens = rnd.items, rnd.prompts, rnd.sizes, rnd.mine, rnd.gens
        n_reflect += sum(q is not None for q in rnd.reflect or [])
        n_prompts += len(items)
        t0 = time.perf_counter()
        with fsdp.full_weights(run.model):        # sharded model: gathered once, every rank (even without prompts)
            roll, comp, rep, dt_gen = _generate_share(run, items[mine], prompts[mine], sizes[mine], gens, replay, step)
            if greedy is not None:                # ReMax: one greedy completion per prompt, never trained on
                t_g = time.perf_counter()
                g_rows = _greedy_share(run, items[mine], prompts[mine], roll.group, step)    # [n, 2]
                comp = torch.cat([comp, g_rows.to(comp.dtype)], dim=1)   # travels with the rows' rewards
                dt_gen += time.perf_counter() - t_g
        t_gen += dt_gen
        t_score += time.perf_counter() - t0 - dt_gen
        roll, comp, rep, owner = _gather_round(roll, comp, rep, len(items[mine]), run.tokenizer.pad_token_id)
        if greedy is not None:                    # the two greedy columns (reward, length) off again
            comp, g_rows = comp[:, :-2], comp[:, -2:]
            greedy.append(g_rows)
        row_items = [items[i] for i in roll.group.tolist()]
        row_prompts += [prompts[i] for i in roll.group.tolist()]
        replayed_parts.append(rep)
        owners.append(owner)
        parts.append(roll)
        group_items += items
        all_items += row_items
        comps.append(comp)
        rewards = cfg.rewards.combine(comp)
        ok = filt(Batch(rewards=torch.nan_to_num(rewards), group=roll.group,
                        correct=_correct(run, comp, roll.texts, row_items)))
        valid_groups += int(torch.unique(roll.group[ok]).numel())
        if not filt.refill or valid_groups >= g.prompts_per_step or rounds >= filt.max_rounds:
            break
        rounds += 1
        need = g.prompts_per_step - valid_groups
    roll = cat_rollouts(parts, run.tokenizer.pad_token_id)
    comp = torch.cat(comps, dim=0)
    rewards = cfg.rewards.combine(comp)                                    # [N], NaN = every reward skipped
    correct = _correct(run, comp, roll.texts, all_items)
    full = Batch(rewards=torch.nan_to_num(rewards), group=roll.group, reward_components=comp,
                 reward_weights=cfg.rewards.weights, reward_names=tuple(cfg.rewards.names), correct=correct,
                 lengths=roll.lengths.cpu(), truncated=roll.truncated.cpu(), max_length=g.max_new_tokens,
                 completion_mask=roll.completion_mask.cpu())
    greedy_metrics = {}
    if greedy is not None:
        full.extra["greedy_reward"], greedy_metrics = _greedy_by_group(roll.group, torch.cat(greedy))
    keep = filt(full) & torch.isfinite(rewards)
    if filt.refill:  # DAPO: surplus valid groups are dropped
        kept_groups = torch.unique(roll.group[keep])[: g.prompts_per_step]
        keep &= torch.isin(roll.group, kept_groups)
    rows = keep.nonzero().squeeze(1)
    metrics = _metrics(full, rewards, cfg.rewards.names, comp, filt)
    if metrics["reward/skipped"] and dist.is_main():
        print(f"warning: step {step}: {metrics['reward/skipped']} of {full.n} rows had no finite reward "
              f"(NaN, inf or None from every reward); they are not trained", flush=True)
    replayed = torch.cat(replayed_parts)
    owner = torch.cat(owners)
    if replay is not None:
        replay.record(roll, correct, group_items, replayed, run.replay_state, step)
        metrics.update({"replay/rows": int(replayed.sum()), "replay/reflect_prompts": n_reflect,
                        "replay/groups": int(torch.unique(roll.group[replayed]).numel())})
    metrics.update(_group_accuracy(all_items, correct))
    metrics.update(greedy_metrics)
    metrics.update(_staleness(roll, cfg.rollout.policy_version()))
    metrics.update({"time/gen": t_gen, "time/score": t_score, "filter/rounds": rounds + 1,
                    "filter/kept_groups": int(torch.unique(roll.group[keep]).numel()),
                    # groups missing after the last refill round: the step trains on what it has
                    "filter/short": max(0, g.prompts_per_step - int(torch.unique(roll.group[keep]).numel())),
                    "rows/trained": int(rows.numel()), "rows/generated": full.n,
                    "tokens/generated": int(roll.completion_mask.sum())})
    per_prompt: dict[int, list[float]] = {}
    first_row: dict[int, int] = {}
    for i, (gid, c) in enumerate(zip(roll.group.tolist(), correct.tolist())):
        per_prompt.setdefault(gid, []).append(c)
        first_row.setdefault(gid, i)
    order = sorted(per_prompt)
    seen = StepRows(row_prompts, roll.texts, roll.group.cpu(), comp, rewards, keep.cpu())
    return Collected(full.select(rows), select_rows(roll, rows), [all_items[i] for i in rows.tolist()], metrics,
                     [all_items[first_row[g]] for g in order], [per_prompt[g] for g in order], replayed[rows],
                     owner[rows], seen)


def _generate_share(run, items, prompts, sizes, gens, replay, step: int = 0):
    """Generate and score this rank's prompts (R³ replay applied): (rollout, reward
    components [n, K], replayed [n], generation seconds)."""
    cfg, g, tok = run.cfg, run.cfg.generation, run.tokenizer
    faults.kill_if("gen", step)
    if not items:
        e = torch.zeros(0, dtype=torch.bool)
        return empty_rollout(next(run.model.parameters()).device), torch.zeros(0, len(cfg.rewards.names)), e, 0.0
    t0 = time.perf_counter()
    roll = cfg.rollout.generate(run.model, tok, prompts, sizes, g.max_new_tokens, run.eos_ids, g.temperature, g.top_p,
                                g.top_k, gens, autocast=run.policy.autocast)
    dt = time.perf_counter() - t0
    row_items = [items[i] for i in roll.group.tolist()]
    row_prompts = [prompts[i] for i in roll.group.tolist()]
    state = trainer_state(step, cfg.train.steps)
    comp = cfg.rewards(roll.texts, row_items, prompts=row_prompts, completion_ids=completion_ids(roll),
                       state=state)                                                 # [n, K]
    rep = torch.zeros(len(roll.texts), dtype=torch.bool)
    if replay is not None:   # R³ cross-context replay into all-fail groups, re-scored here
        roll, rep = replay.restore(roll, _correct(run, comp, roll.texts, row_items), items,
                                   run.replay_state, tok.pad_token_id)
        if rep.any():
            idx = rep.nonzero().squeeze(1).tolist()
            comp = comp.clone()
            ids = completion_ids(roll)
            comp[idx] = cfg.rewards([roll.texts[i] for i in idx], [row_items[i] for i in idx],
                                    prompts=[row_prompts[i] for i in idx], completion_ids=[ids[i] for i in idx],
                                    state=state)
    return roll, comp, rep, dt


def _greedy_share(run, items, prompts, row_group: torch.Tensor, step: int = 0) -> torch.Tensor:
    """ReMax's baseline rows: one greedy completion of each of this rank's prompts (temperature 0,
    the run's backend and length budget, no generator: the sampling streams are untouched),
    scored by the run's reward functions. Returns [n_rows, 2]: for each sampled row, its
    prompt's greedy reward (None/NaN from every reward -> 0) and greedy completion length."""
    cfg, g, tok = run.cfg, run.cfg.generation, run.tokenizer
    if not items:
        return torch.zeros(0, 2)
    roll = cfg.rollout.generate(run.model, tok, prompts, [1] * len(prompts), g.max_new_tokens, run.eos_ids, 0.0,
                                1.0, 0, None, autocast=run.policy.autocast)
    order = roll.group.tolist()                                   # prompt of each greedy row (one each)
    comp = cfg.rewards(roll.texts, [items[j] for j in order], prompts=[prompts[j] for j in order],
                       completion_ids=completion_ids(roll), state=trainer_state(step, cfg.train.steps))
    per_prompt = torch.zeros(len(prompts), 2, dtype=comp.dtype)
    per_prompt[roll.group.cpu(), 0] = torch.nan_to_num(cfg.rewards.combine(comp))
    per_prompt[roll.group.cpu(), 1] = roll.lengths.cpu().to(comp.dtype)
    return per_prompt[row_group.cpu()]                            # [n_rows, 2]


def _greedy_by_group(group: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """``batch.extra["greedy_reward"]``: [max group id + 1], the greedy reward of each group id
    (NaN for ids without rows), from the per-row [reward, length] ``rows`` [N, 2]; and the
    step's ``remax/*`` metrics over its prompts."""
    out = torch.full((int(group.max()) + 1 if group.numel() else 0,), float("nan"), dtype=torch.float64)
    lengths = out.clone()
    out[group.cpu()] = rows[:, 0].to(torch.float64)
    lengths[group.cpu()] = rows[:, 1].to(torch.float64)
    have = ~torch.isnan(out)
    return out, {"remax/greedy_reward_mean": float(out[have].mean()) if have.any() else float("nan"),
                 "remax/greedy_len_mean": float(lengths[have].mean()) if have.any() else float("nan")}


def _gather_round(roll: Rollout, comp: torch.Tensor, rep: torch.Tensor, n_items: int, pad_id: int):
    """Every rank's share of one generation round -> the global round on every rank, in rank
    order, group ids made global; ``owner`` [N] = the rank that generated each row."""
    if dist.world() == 1:
        return roll, comp, rep, torch.zeros(len(roll.texts), dtype=torch.long)
    dev = roll.completion_ids.device
    fields = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")
    slp = None if roll.sampler_logp is None else roll.sampler_logp.cpu()
    mine = ({f: getattr(roll, f).cpu() for f in fields}, roll.truncated.cpu(), roll.group.cpu(), roll.texts,
            comp.cpu(), rep.cpu(), n_items, slp, roll.policy_version)
    parts, comps, reps, owners, offset = [], [], [], [], 0
    for r, (t, trunc, group, texts, c, p, n, lp, pv) in enumerate(dist.gather_objects(mine)):
        if texts:
            parts.append(Rollout(*(t[f].to(dev) for f in fields), trunc, group + offset, texts,
                                 None if lp is None else lp.to(dev), pv))
            comps.append(c)
            reps.append(p)
            owners.append(torch.full((len(texts),), r, dtype=torch.long))
        offset += n
    return cat_rollouts(parts, pad_id, renumber=False), torch.cat(comps), torch.cat(reps), torch.cat(owners)


def _staleness(roll: Rollout, now: int | None) -> dict:
    """Versions of the weights that sampled the step's rows (replayed rows left out) and their
    staleness: optimizer updates between those weights and the ones trained now (backends that
    report versions: rollout.name=server)."""
    v = None if now is None or roll.policy_version is None else roll.policy_version[roll.policy_version >= 0]
    if v is None or not v.numel():
        return {}
    stale = (now - v).float()
    return {"rollout/version_min": int(v.min()), "rollout/version_max": int(v.max()),
            "rollout/staleness_mean": float(stale.mean()), "rollout/staleness_max": int(stale.max())}


def _correct(run, comp, texts, items) -> torch.Tensor:
    """Task correctness per row: the ``correct`` reward column when present, else verify()."""
    names = list(run.cfg.rewards.names)
    if "correct" in names:
        col = comp[:, names.index("correct")]
        return (torch.nan_to_num(col) >= 1.0).float()
    from ..rewards.verify import verify_item

    return torch.tensor([float(verify_item(t, it) >= 1.0) for t, it in zip(texts, items)])


def _group_accuracy(items, correct: torch.Tensor) -> dict:
    """Training accuracy per task group label (difficulty level or family): ``acc/group/<label>``."""
    sums: dict[str, list[float]] = {}
    for it, c in zip(items, correct.tolist()):
        sums.setdefault(it.group, []).append(c)
    return {f"acc/group/{g}": sum(v) / len(v) for g, v in sorted(sums.items())}


def _metrics(b: Batch, rewards: torch.Tensor, names, comp, filt) -> dict:
    """Metrics over every row generated. ``zero_var/frac``: the fraction of groups whose values
    of the filter's signal (``filt.signal``: the rewards, or ``correct`` for ``zero_variance``
    with ``metric: correct``) are all equal, so exactly the groups ``zero_variance`` drops, and
    without that filter the groups whose equal rewards give a group-relative advantage of 0."""
    finite = torch.isfinite(rewards)
    r = rewards[finite]
    zero_var = ops.all_equal(filt.signal(b).double(), b.group)
    n_groups = int(torch.unique(b.group).numel())
    zv_groups = int(torch.unique(b.group[zero_var]).numel())
    m = {"reward/mean": float(r.mean()) if r.numel() else float("nan"),
         "reward/std": float(r.std()) if r.numel() > 1 else 0.0,
         "acc/mean": float(b.correct.mean()), "zero_var/frac": zv_groups / max(n_groups, 1),
         "len/mean": float(b.lengths.float().mean()), "len/max": int(b.lengths.max()),
         "trunc/frac": float(b.truncated.float().mean()), "reward/skipped": int((~finite).sum())}
    for tag, rows in (("right", b.correct >= 1.0), ("wrong", b.correct < 1.0)):   # length by outcome (Dr. GRPO)
        if rows.any():
            m[f"len/{tag}_mean"] = float(b.lengths[rows].float().mean())
    for k, name in enumerate(names):
        col = comp[:, k]
        col = col[torch.isfinite(col)]
        m[f"reward/{name}/mean"] = float(col.mean()) if col.numel() else float("nan")
    return m
