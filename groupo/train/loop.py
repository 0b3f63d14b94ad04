"""The training loop, top to bottom.

    setup (threads, task data, model, optimizer)  ->  warm start (optional)  ->  eval before
    for each step:
        collect: sample prompts, generate G completions each, score, filter   (train/step.py)
        advantages (+ keep mask, question weights)                            (algo/advantage.py)
        old / reference log-probs when needed                                  (train/loss.py)
        num_iterations x [micro-batched forward/backward, clip, AdamW step]    (train/update.py, loss.py)
        log metrics; checkpoint every k steps
    eval after, plots, report
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import cpu_load, dist
from ..eval.evaluate import evaluate
from ..model import gemm
from ..model.forward import configure
from ..model.load import AdapterOff, add_lora, eos_ids, is_lora, load_model, load_tokenizer, pick_device, set_threads
from . import checkpoint as ckpt
from .log import MetricsLogger, step_line
from .step import collect
from .interrupt import InterruptHold
from .update import update
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
    hold: InterruptHold = field(default_factory=InterruptHold)   # Ctrl-C waits while dirty, until the step is logged


def lr_lambda(t_cfg, total: int):
    def f(i: int) -> float:
        if t_cfg.warmup_steps and i < t_cfg.warmup_steps:
            return (i + 1) / t_cfg.warmup_steps
        if t_cfg.schedule == "constant":
            return 1.0
        frac = min(1.0, (i - t_cfg.warmup_steps) / max(1, total - t_cfg.warmup_steps))
        return 1.0 - frac if t_cfg.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * frac))
    return f


def _select_gemm(cfg, device, model) -> str:
    """Pick the float32 CPU product backend (model/gemm.py) once for the run; with several
    processes rank 0's choice holds everywhere. Returns the text for the start-up line."""
    if device.type != "cpu" or cfg.model.dtype != "float32":
        gemm.select("torch")
        return ""
    local = gemm.select(cfg.model.cpu_gemm, model)
    chosen, r = dist.gather_objects(local)[0], gemm.ratio()
    if chosen != local:
        gemm.select(chosen)
    probes = "" if r is None else " (oneDNN/torch time: decode " + " training ".join(
        f"{x:.2f}" for x in r if x is not None) + ")"
    return f" | float32 products on {chosen}{probes}"


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
    load = cpu_load.describe()
    wait = os.environ.get("OMP_WAIT_POLICY", "default")
    run = Run(cfg, run_dir)
    model_dir = _model_dir(cfg, last)
    run.tokenizer = load_tokenizer(model_dir)
    run.model = load_model(model_dir, cfg.model.dtype, device)
    mm = _select_gemm(cfg, device, run.model)
    say(f"run dir {run_dir} | torch threads {threads} ({os.cpu_count()} cores, {load}, OpenMP wait {wait}) "
        f"| device {device}{procs}{mm}")
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
    gemm.install(run.model)
    ref_model = None
    if cfg.kl.coef != 0.0 and is_lora(run.model):
        ref_model = configure(AdapterOff(run.model), mc.logprob_chunk, mc.autocast, mc.prefix_sharing)   # base weights, no copy
    elif cfg.kl.coef != 0.0:
        ref_dir = run_dir / "init" if (run_dir / "init").exists() else Path(cfg.model.path)
        ref_model = load_model(ref_dir, cfg.model.dtype, device).eval().requires_grad_(False)
        configure(ref_model, mc.logprob_chunk, mc.autocast, mc.prefix_sharing)
        gemm.install(ref_model)

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
                            eps=t.adam_eps, weight_decay=t.weight_decay, fused=True)
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
        if state.get("gemm") and cfg.model.cpu_gemm == "auto" and state["gemm"] != gemm.backend():
            got = gemm.select(state["gemm"])
            say(f"float32 products on {got} " + ("(as in the checkpoint)" if got == state["gemm"] else
                                                 f"(the checkpoint's {state['gemm']} is not available here)"))
        run.replay_state = state.get("replay", run.replay_state)
        say(f"resumed from {last[1]} (step {start})")

    def snapshot():
        return {"threads": threads, "gemm": gemm.backend(), "py_rng": step_rng.getstate(), "gen_rng": gen.get_state(), "torch_rng": torch.random.get_rng_state(),
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
                m.update(update(run, col, opt, sched, ref_model, step))
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
            run.hold.release()          # a Ctrl-C held since the optimizer update is raised here: step saved
            if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step < t.steps:
                save(step, snap)
    except KeyboardInterrupt:
        run.hold.release(raise_pending=False)
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
        run.hold.release(raise_pending=False)
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
