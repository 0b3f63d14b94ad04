"""The training loop, top to bottom.

    setup (processes, eval split, model, warm start, reference, optimizer; resume)  train/setup.py
    evaluate before
    for each step:
        collect   sample prompts, generate G completions each, reward, filter    train/collect.py
                  (rollout.overlap: then send the next step's prompts ahead    train/prefetch.py)
        score     rewards -> advantages -> token weights (pure)                   train/score.py
        optimise  num_iterations x [micro-batched forward/backward, clip, AdamW]  train/update.py
        log       metrics, completions sample, trackers, console line; checkpoint every k steps
    evaluate after, eval.json (the CLI then writes plots and the report)
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..eval.evaluate import evaluate
from ..eval.metrics import summarize
from . import checkpoint as ckpt
from . import dist, fsdp, prefetch
from .collect import collect
from .completions import StepRows
from .log import StepLog
from .score import score
from .setup import Run, TrainingError, setup
from .no_signal import no_signal
from .update import optimise, prepare

__all__ = ["train", "train_step", "TrainingError"]


def train(cfg, run_dir: Path, resume: bool = False, console=None, progress=None) -> dict:
    """Train ``cfg`` into ``run_dir`` (continuing its last checkpoint with ``resume``); returns
    eval.json's content: held-out results ``before`` and ``after`` (and the warm start's)."""
    run = setup(cfg, run_dir, resume, console.print if console is not None else None, progress)
    t = cfg.train
    if not run.resumed and cfg.eval.before:
        _evaluate(run, "before")
    log = StepLog(run, progress)
    snap, bad_steps, done = ckpt.snapshot(run), 0, run.start
    try:
        for step in range(run.start + 1, t.steps + 1):
            if dist.world() > 1:
                run.hold.start()        # several processes: a Ctrl-C waits for the end of the step (below)
            m, rows = train_step(run, step)                         # collect -> score -> optimise
            bad_steps = _nonfinite_streak(m, bad_steps, t.max_nonfinite)
            if cfg.eval.every and step % cfg.eval.every == 0 and step < t.steps and run.eval_items:
                m["eval/accuracy"] = _run_eval(run)["accuracy"]
            snap, done, run.dirty = ckpt.snapshot(run), step, False
            log.log(step, m, rows)                                  # metrics, completions, trackers, console
            interrupted = run.hold.release(raise_pending=dist.world() == 1)   # a held Ctrl-C: raised here
            if dist.world() > 1 and dist.any_true(interrupted):      # ... on every rank at once
                raise KeyboardInterrupt
            if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step < t.steps:
                ckpt.save_run(run, step, snap)
    except KeyboardInterrupt:
        run.hold.release(raise_pending=False)
        log.close(interrupted=True)
        if run.dirty:
            run.say("[yellow]interrupted during an optimizer update; not saving a half-updated model. "
                    "Resume with --resume from the last checkpoint.[/]")
        elif done > run.start:
            ckpt.save_run(run, done, snap)
            run.say(f"[yellow]interrupted; saved step {done}. Continue with --resume.[/]")
        raise
    finally:
        run.hold.release(raise_pending=False)
        log.close()
    if t.steps > run.start or not run.resumed:
        ckpt.save_run(run, t.steps, snap)
    if cfg.eval.after:
        _evaluate(run, "after")
    if run.main:
        ckpt.write_eval(run.run_dir, run.results, cfg)
    dist.barrier()
    return run.results


def train_step(run: Run, step: int) -> tuple[dict, StepRows]:
    """One step: collect -> score -> optimise; returns the step's metrics and every row it
    generated, with the advantages (for the completions log)."""
    cfg, g = run.cfg, run.cfg.generation
    t0 = time.perf_counter()
    col = collect(run, step)                         # prompts -> rollouts -> rewards -> filter
    cfg.sampler.update(run.sampler_state, col.prompt_items, col.prompt_correct)      # (read by the next draw)
    cfg.allocation.update(run.alloc_state, col.prompt_items, col.prompt_correct)
    prefetch.start(run, step + 1)                    # rollout.overlap: step+1 generates while this step trains
    m = dict(col.metrics)
    if col.batch.n:
        data = prepare(run, col)                     # training tensors; old-policy log-probs where needed
        tis = data.old_logp is not None and col.rollout.sampler_logp is not None and cfg.rollout.tis_cap > 0
        scored = score(col.batch, col.rollout.completion_mask, cfg.components, g.max_new_tokens,
                       labels=[it.group for it in col.items], replayed=col.replayed, old_logp=data.old_logp,
                       sampler_logp=col.rollout.sampler_logp, tis_cap=cfg.rollout.tis_cap if tis else 0.0)
        col.seen.add_scores(scored.row_advantages, scored.keep)
        m.update(optimise(run, data, scored, step))  # num_iterations x (forward/backward, clip, AdamW)
    m.update(no_signal(col.seen, g.temperature))     # rows/no_signal: did any row get a non-zero advantage
    m["lr"] = run.sched.get_last_lr()[0]
    m.update(_memory(run.device))
    m["time/step"] = time.perf_counter() - t0
    m["tokens_per_s"] = m["tokens/generated"] / max(m["time/step"], 1e-9)
    return m, col.seen


def _nonfinite_streak(m: dict, streak: int, limit: int) -> int:
    """Consecutive trained steps whose updates were all skipped for non-finite values; past
    ``limit`` the run stops with one line (the last checkpoint is kept)."""
    if not m["rows/trained"]:
        return streak
    streak = streak + 1 if m.get("skipped") else 0
    if streak > limit:
        raise TrainingError(f"{streak} consecutive steps with non-finite loss or gradients; "
                            f"lower train.lr or check the rewards (last checkpoint kept)")
    return streak


def _run_eval(run: Run) -> dict:
    """Held-out evaluation (every rank calls it): with several processes each evaluates its share of
    the items, with the weights gathered under FSDP, and the records are pooled; greedy decoding
    (the default) gives the single-process numbers."""
    cfg, e, w = run.cfg, run.cfg.eval, dist.world()
    items = run.eval_items[dist.share(len(run.eval_items))] if w > 1 else run.eval_items
    records = []
    with fsdp.full_weights(run.model):
        if items:
            _, records = evaluate(run.model, run.tokenizer, items, cfg.template, run.eos_ids,
                                  cfg.generation.max_new_tokens, e.samples, e.temperature, e.ks, e.batch_size,
                                  seed=cfg.seed + 1 + 1_000_003 * dist.rank(), autocast=run.policy.autocast,
                                  return_records=True)
    if w > 1:
        records = [r for part in dist.gather_objects(records) for r in part]
    return summarize(records, ks=tuple(k for k in e.ks if k <= e.samples))


def _evaluate(run: Run, tag: str) -> None:
    if not run.eval_items:
        run.say(f"[yellow]held-out evaluation {tag} training skipped: the task's eval split is empty "
                f"(task.eval_fraction=0, or too few rows)[/]")
        return
    run.results[tag] = res = _run_eval(run)
    if not run.main:
        return
    run.say(f"held-out accuracy {tag}: {res['accuracy']:.3f} (n={res['n']})")
    ckpt.write_eval(run.run_dir, run.results, run.cfg)


def _memory(device) -> dict:
    """Peak memory so far: process RSS (MB) and, on CUDA, allocated GPU memory (GB)."""
    import resource

    out = {"mem/rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["mem/gpu_peak_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    return out
