"""The training loop, top to bottom.

    setup (threads, task data, model, optimizer)  ->  warm start (optional)  ->  eval before
    for each step:
        collect: sample prompts, generate G completions each, score, filter   (train/step.py)
        advantages (+ keep mask, question weights)                            (algo/advantage.py)
        old / reference log-probs when needed                                  (train/loss.py)
        num_iterations x [micro-batched forward/backward, clip, AdamW step]    (train/loss.py)
        log metrics; checkpoint every k steps
    eval after, plots, report
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import dist
from ..eval.evaluate import evaluate
from ..model.forward import configure
from ..model.load import AdapterOff, add_lora, eos_ids, is_lora, load_model, load_tokenizer, pick_device, set_threads
from . import checkpoint as ckpt
from . import faults
from .log import MetricsLogger, step_line
from .loss import StepData, accumulate_loss, logprobs_all
from .step import collect
from .warmstart import warm_start


class TrainingError(RuntimeError):
    """The run cannot continue (e.g. repeated non-finite losses); one line for the user."""


@dataclass
class Run:
    cfg: object
    run_dir: Path
    model: object = None
    tokenizer: object = None
    eos_ids: list = field(default_factory=list)
    sampler_state: dict = field(default_factory=dict)
    alloc_state: dict = field(default_factory=dict)
    replay_state: dict = field(default_factory=dict)
    dirty: bool = False       # an optimizer update of the current step has been applied


def lr_lambda(t_cfg, total: int):
    def f(i: int) -> float:
        if t_cfg.warmup_steps and i < t_cfg.warmup_steps:
            return (i + 1) / t_cfg.warmup_steps
        if t_cfg.schedule == "constant":
            return 1.0
        frac = min(1.0, (i - t_cfg.warmup_steps) / max(1, total - t_cfg.warmup_steps))
        return 1.0 - frac if t_cfg.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * frac))
    return f


def train(cfg, run_dir: Path, resume: bool = False, console=None, progress=None) -> dict:
    run_dir = Path(run_dir)
    say = console.print if console is not None else (lambda *a, **k: None)
    threads = set_threads(cfg.model.threads)
    device = pick_device(cfg.model.device)
    if dist.init_from_env(device):
        device = dist.local_device(device)
        if getattr(cfg.objective, "full_batch", False):
            raise TrainingError(f"objective '{cfg.raw['objective']['name']}' needs the whole batch in one "
                                f"process; it is not supported with {dist.world()} processes yet")
    main = dist.is_main()
    if not main:
        say = lambda *a, **k: None  # noqa: E731  (rank 0 speaks for the job)
        progress = None
    eval_items = cfg.task.eval_items()                     # validates task data before any model loads
    if cfg.eval.n:
        eval_items = eval_items[: cfg.eval.n]
    last = ckpt.latest(run_dir) if resume else None
    if resume and last is None:
        say("[yellow]no checkpoint to resume from; starting a new run[/]")
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
    procs = f" | processes {dist.world()} (gloo)" if dist.world() > 1 and device.type == "cpu" else (
        f" | processes {dist.world()}" if dist.world() > 1 else "")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    say(f"run dir {run_dir} | torch threads {threads} ({os.cpu_count()} cores, load {load:.1f}) | device {device}{procs}")

    run = Run(cfg, run_dir)
    model_dir = _model_dir(cfg, last)
    run.tokenizer = load_tokenizer(model_dir)
    run.model = load_model(model_dir, cfg.model.dtype, device)
    run.model.train()
    run.eos_ids = eos_ids(run.tokenizer, run.model)
    g = cfg.generation
    _check_prompt_lengths(run, eval_items)              # before any training: one clear line, nothing lost
    start, results = 0, _read_eval(run_dir) if last else {}

    if last is None and cfg.warmstart.steps > 0:
        say(f"warm start: {cfg.warmstart.steps} supervised steps")
        info = warm_start(run.model, run.tokenizer, cfg.task, cfg.template, cfg.warmstart, run.eos_ids,
                          g.max_new_tokens, cfg.seed, on_step=progress.warm if progress else None)
        results["warmstart"] = info
        if main:      # every rank ran the same seeded warm start; rank 0 saves it
            run.model.save_pretrained(run_dir / "init")
            run.tokenizer.save_pretrained(run_dir / "init")
        dist.barrier()
        say(f"warm start done after {info['steps']} steps (loss {info['loss']:.3f}, dev acc {info['dev_accuracy']})")
    mc = cfg.model
    if mc.lora_r and not is_lora(run.model):
        if (run_dir / "init").exists():    # adapters sit on the warm-started weights
            run.model.config._name_or_path = str((run_dir / "init").resolve())
        torch.manual_seed(cfg.seed)        # the adapters' random init is part of the run's seed
        run.model = add_lora(run.model, mc.lora_r, mc.lora_alpha, mc.lora_dropout, mc.lora_targets)
    if mc.gradient_checkpointing:
        run.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    configure(run.model, mc.logprob_chunk, mc.autocast, mc.prefix_sharing)
    ref_model = None
    if cfg.kl.coef != 0.0 and is_lora(run.model):
        ref_model = configure(AdapterOff(run.model), mc.logprob_chunk, mc.autocast, mc.prefix_sharing)   # base weights, no copy
    elif cfg.kl.coef != 0.0:
        ref_dir = run_dir / "init" if (run_dir / "init").exists() else Path(cfg.model.path)
        ref_model = load_model(ref_dir, cfg.model.dtype, device).eval().requires_grad_(False)
        configure(ref_model, mc.logprob_chunk, mc.autocast, mc.prefix_sharing)

    def run_eval(tag):
        return evaluate(run.model, run.tokenizer, eval_items, cfg.template, run.eos_ids, g.max_new_tokens,
                        cfg.eval.samples, cfg.eval.temperature, cfg.eval.ks, cfg.eval.batch_size, seed=cfg.seed + 1)

    if last is None and cfg.eval.before and main:
        results["before"] = run_eval("before")
        say(f"held-out accuracy before: {results['before']['accuracy']:.3f} (n={results['before']['n']})")
        _write_eval(run_dir, results, cfg)

    t = cfg.train
    # fused AdamW (one kernel per step instead of several per tensor; as TRL's adamw_torch_fused)
    opt = torch.optim.AdamW([p for p in run.model.parameters() if p.requires_grad], lr=t.lr, betas=tuple(t.betas),
                            weight_decay=t.weight_decay, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(t, t.steps * t.num_iterations))
    step_rng = random.Random(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    run.sampler_state = cfg.sampler.init_state()
    if "allocation" in cfg.components:
        run.alloc_state = cfg.components["allocation"].init_state()
    run.replay_state = cfg.components["replay"].init_state()
    if last is not None:
        start, state = last[0], ckpt.load_state(last[1])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step_rng.setstate(state["py_rng"])
        gen.set_state(state["gen_rng"])
        torch.random.set_rng_state(state["torch_rng"])
        run.sampler_state = state["sampler"]
        run.alloc_state = state.get("allocation", {})
        if cfg.model.threads <= 0 and state.get("threads"):
            threads = set_threads(int(state["threads"]))   # same reduction order as the interrupted run
            say(f"torch threads {threads} (as in the checkpoint)")
        run.replay_state = state.get("replay", run.replay_state)
        say(f"resumed from {last[1]} (step {start})")

    def snapshot():
        return {"threads": threads, "py_rng": step_rng.getstate(), "gen_rng": gen.get_state(), "torch_rng": torch.random.get_rng_state(),
                "sampler": json.loads(json.dumps(run.sampler_state)),
                "allocation": json.loads(json.dumps(run.alloc_state)),
                "replay": json.loads(json.dumps(run.replay_state))}

    def save(step, snap):
        if main:
            state = {**snap, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step}
            path = ckpt.save(run_dir, step, run.model, run.tokenizer, state, cfg.checkpoint.keep)
            say(f"checkpoint {path}")
        dist.barrier()

    logger = MetricsLogger(run_dir, cfg.log.tensorboard, resume_step=start if last else None) if main else None
    snap, bad_steps, done = snapshot(), 0, start
    if progress:
        progress.start_train(t.steps, start)
    try:
        for step in range(start + 1, t.steps + 1):
            t0 = time.perf_counter()
            col = collect(run, step_rng, gen, step)
            m = dict(col.metrics)
            if col.batch.n:
                m.update(_update(run, col, opt, sched, ref_model, step))
                bad_steps = bad_steps + 1 if m.get("skipped") else 0
                if bad_steps > t.max_nonfinite:
                    raise TrainingError(f"{bad_steps} consecutive steps with non-finite loss or gradients; "
                                        f"lower train.lr or check the rewards (last checkpoint kept)")
            cfg.sampler.update(run.sampler_state, col.prompt_items, col.prompt_correct)
            if "allocation" in cfg.components:
                cfg.components["allocation"].update(run.alloc_state, col.prompt_items, col.prompt_correct)
            m["lr"] = sched.get_last_lr()[0]
            m.update(_memory(device))
            m["time/step"] = time.perf_counter() - t0
            m["tokens_per_s"] = m["tokens/generated"] / max(m["time/step"], 1e-9)
            if cfg.eval.every and step % cfg.eval.every == 0 and step < t.steps and main:
                m["eval/accuracy"] = run_eval(f"step {step}")["accuracy"]
            snap, done, run.dirty = snapshot(), step, False
            if logger:
                logger.log(step, m)
            if progress:
                progress.step(step, m)
            if cfg.log.line_every and step % cfg.log.line_every == 0:
                say(step_line(step, t.steps, m))
            if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step < t.steps:
                save(step, snap)
    except KeyboardInterrupt:
        if logger:
            logger.close()
        if run.dirty:
            say("[yellow]interrupted during an optimizer update; not saving a half-updated model. "
                "Resume with --resume from the last checkpoint.[/]")
        elif done > start:
            save(done, snap)
            say(f"[yellow]interrupted; saved step {done}. Continue with --resume.[/]")
        raise
    finally:
        if progress:
            progress.stop()
    if logger:
        logger.close()
    if t.steps > start or last is None:
        save(t.steps, snap)
    if cfg.eval.after and main:
        results["after"] = run_eval("after")
        say(f"held-out accuracy after: {results['after']['accuracy']:.3f} (n={results['after']['n']})")
    if main:
        _write_eval(run_dir, results, cfg)
    dist.barrier()
    return results


def _update(run: Run, col, opt, sched, ref_model, step: int = 0) -> dict:
    """Shaping, advantages and weights, then num_iterations optimizer updates on the batch."""
    cfg, t, g = run.cfg, run.cfg.train, run.cfg.generation
    r, batch = col.rollout, col.batch
    shaping, weighting = cfg.components.get("shaping"), cfg.components.get("weighting")
    temp = g.temperature if g.temperature > 0 else 1.0
    d = StepData(r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask, group=batch.group,
                 correct=batch.correct)
    # rows this process trains on (all of them in a single process; its own share with several)
    mine = (col.owner == dist.rank()).nonzero().squeeze(1) if dist.world() > 1 else None
    tis = r.sampler_logp is not None and g.tis_cap > 0
    t_lp = time.perf_counter()
    if t.num_iterations > 1 or getattr(shaping, "needs_logp", False) or tis:
        d.old_logp, ent = _logprobs(run.model, d, mine, t.micro_batches, temp,    # [N, T] under pi_old
                                    with_entropy=getattr(shaping, "needs_entropy", False))
        if ent is not None:
            batch.extra["tok_entropy"] = ent
        batch.extra["seq_logp"] = (d.old_logp * r.completion_mask).sum(1) / r.completion_mask.sum(1).clamp(min=1)
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
    dev = r.completion_ids.device
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
        opt.step()
        sched.step()
        run.model._groupo_weights_version = getattr(run.model, "_groupo_weights_version", 0) + 1   # vLLM resyncs
        faults.kill_if("opt", step)
        if it == 0:
            m.update(lm)
            m["grad_norm"] = float(gnorm)
            m["time/optimizer"] = time.perf_counter() - t_opt
            m["time/logprobs"] = t_lp
    if skipped:
        m["skipped"] = skipped
        print(f"warning: {skipped} update(s) skipped for non-finite loss or gradient norm", flush=True)
    return m


def _memory(device) -> dict:
    """Peak memory so far: process RSS (MB) and, on CUDA, allocated GPU memory (GB)."""
    import resource

    out = {"mem/rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if getattr(device, "type", "cpu") == "cuda":
        out["mem/gpu_peak_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    return out


def _check_prompt_lengths(run: Run, items) -> None:
    from ..rollout.hf import check_context

    cfg = run.cfg
    sample = list(items) + [cfg.task.sample_train(random.Random(cfg.seed + 31)) for _ in range(64)]
    if not sample:
        return
    longest = max(len(run.tokenizer(cfg.template(it.question, run.tokenizer), add_special_tokens=False)["input_ids"])
                  for it in sample)
    check_context(run.model, longest, cfg.generation.max_new_tokens)


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


def _model_dir(cfg, last) -> Path:
    if last is not None:
        return last[1]
    path = Path(cfg.model.path)
    if cfg.model.tiny and not (path / "config.json").exists():
        from ..model.tiny import build_tiny

        build_tiny(path, seed=cfg.seed)
    return path


def _read_eval(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_eval(run_dir: Path, results: dict, cfg) -> None:
    out = {**results, "model": cfg.model.path, "task": cfg.raw.get("task")}
    tmp = run_dir / "eval.json.tmp"
    tmp.write_text(json.dumps(out, indent=2, default=str))
    tmp.replace(run_dir / "eval.json")
