"""Everything before the first training step: processes and threads, the task's eval split, the
model (a checkpoint when resuming, else ``model.path``, built first for ``model.tiny``), the
warm start, adapters, the reference policy, the optimizer, the random generators and the
components' states (restored from the checkpoint on resume). Returns the ``Run`` the loop
steps on."""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .. import runtime
from ..model import gemm
from ..model.load import AdapterOff, add_lora, eos_ids, is_lora, load_model, load_tokenizer, pick_device
from ..model.logprobs import autocast_dtype
from ..model.policy import Policy
from ..registry import build
from ..prompts.render import render
from ..rollout.base import check_context
from . import checkpoint as ckpt
from . import critic as critic_mod
from . import dist, fsdp, tracking
from .interrupt import InterruptHold
from .no_signal import start_warning
from .warmstart import warm_start


class TrainingError(RuntimeError):
    """The run cannot continue (e.g. repeated non-finite losses); one line for the user."""


@dataclass
class Run:
    """One training run's live state: what the loop reads and what a checkpoint keeps."""

    cfg: Any
    run_dir: Path
    say: Callable = print
    main: bool = True                 # rank 0 (or the only process): speaks and writes
    sharded: bool = False             # the model is sharded over the processes (train.parallel=fsdp)
    device: Any = None
    threads: int = 1
    policy: Policy | None = None      # the model being trained, with its forward path
    ref: Policy | None = None         # the KL reference (None without a KL penalty)
    critic: Any = None                # the value model and its optimizer (train/critic.py; critic.name=value)
    tokenizer: Any = None
    eos_ids: list = field(default_factory=list)
    opt: Any = None
    sched: Any = None
    step_rng: random.Random | None = None   # prompt draws
    gen: torch.Generator | None = None      # sampling
    sampler_state: dict = field(default_factory=dict)
    alloc_state: dict = field(default_factory=dict)
    replay_state: dict = field(default_factory=dict)
    eval_items: list = field(default_factory=list)
    start: int = 0                    # last finished step (0 for a new run)
    resumed: bool = False
    results: dict = field(default_factory=dict)   # eval.json's content so far
    dirty: bool = False       # an optimizer update of the current step has been applied
    hold: InterruptHold = field(default_factory=InterruptHold)   # Ctrl-C waits while dirty, until the step is logged

    @property
    def model(self):
        return self.policy.model


def lr_lambda(t_cfg, total: int):
    def f(i: int) -> float:
        if t_cfg.warmup_steps and i < t_cfg.warmup_steps:
            return (i + 1) / t_cfg.warmup_steps
        if t_cfg.schedule == "constant":
            return 1.0
        frac = min(1.0, (i - t_cfg.warmup_steps) / max(1, total - t_cfg.warmup_steps))
        return 1.0 - frac if t_cfg.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * frac))
    return f


def setup(cfg, run_dir: Path, resume: bool = False, say: Callable | None = None, progress=None) -> Run:
    run = Run(cfg, Path(run_dir), say=say or (lambda *a, **k: None))
    _processes(run)
    tracking.check(cfg.log.report_to)          # wandb/trackio/mlflow not installed: one line, before the model loads
    if (warning := start_warning(cfg)) is not None:   # group_size=1 or temperature=0: every advantage 0
        run.say(warning)
    run.eval_items = cfg.task.eval_items()[: cfg.eval.n or None]     # validates task data before any model loads
    last = ckpt.latest(run.run_dir) if resume else None
    if resume and last is None:
        run.say("[yellow]no checkpoint to resume from; starting a new run[/]")
    if run.main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        (run.run_dir / "config.yaml").write_text(cfg.to_yaml())
    _load(run, last)
    _check_prompt_lengths(run)                  # before any training: one clear line, nothing lost
    if last is None and cfg.warmstart.steps > 0:
        _warm_start(run, progress)
    _adapt(run)
    cfg.rollout.prepare(run.model, run.policy.autocast)     # an engine exists on every rank before step 1
    run.critic = critic_mod.build(run, _init_dir(run)) if cfg.critic.active else None   # before the seeds are set
    _optimizer(run)
    if last is not None:
        _restore(run, last)
    return run


def _processes(run: Run) -> None:
    """Threads, device and (under torchrun) the process group; rank 0 speaks for the job."""
    cfg = run.cfg
    run.threads = runtime.set_threads(cfg.model.threads)
    run.device = pick_device(cfg.model.device)
    if dist.init_from_env(run.device, cfg.train.pg_timeout):
        run.device = dist.local_device(run.device)
        if cfg.objective.full_batch:
            raise TrainingError(f"objective '{cfg.raw['objective']['name']}' needs the whole batch in one "
                                f"process; it is not supported with {dist.world()} processes yet")
    run.main = dist.is_main()
    if not run.main:
        run.say = lambda *a, **k: None  # noqa: E731


def _load(run: Run, last) -> None:
    """Tokenizer and model from the checkpoint to resume, else from ``model.path``."""
    cfg = run.cfg
    model_dir = last[1] if last is not None else _model_dir(cfg)
    run.tokenizer = load_tokenizer(cfg.model.tokenizer if cfg.model.tokenizer and last is None else model_dir)
    item = cfg.task.sample_train(random.Random(cfg.seed + 31))    # before the model loads: prompts render and
    cfg.rewards.check(item, render(cfg.template, item, run.tokenizer))   # reward functions fit the data
    model = load_model(model_dir, cfg.model.dtype, run.device)
    mm = _select_gemm(cfg, run.device, model)
    w = dist.world()
    procs = (f" | processes {w} (gloo)" if run.device.type == "cpu" else f" | processes {w}") if w > 1 else ""
    run.say(f"run dir {run.run_dir} | torch threads {run.threads} ({os.cpu_count()} cores, {runtime.describe()}, "
            f"OpenMP wait {os.environ.get('OMP_WAIT_POLICY', 'default')}) | device {run.device}{procs}{mm}")
    model.train()
    run.eos_ids = eos_ids(run.tokenizer, model)
    run.policy = Policy(model, cfg.forward, autocast_dtype(cfg.model.autocast))
    if last is not None:
        run.start, run.resumed = last[0], True
        run.results = ckpt.read_eval(run.run_dir)


def _model_dir(cfg) -> str:
    """``model.path`` as given (a directory or a Hub id; './x' stays a directory), the offline tiny
    model built there first when asked."""
    path = cfg.model.path
    if cfg.model.tiny or path.startswith("base:"):   # built once, by rank 0; the other processes wait for it
        if dist.is_main() and cfg.model.tiny and not (Path(path) / "config.json").exists():
            from ..model.tiny import build_tiny

            build_tiny(Path(path), seed=cfg.seed)
        if dist.is_main() and path.startswith("base:"):
            from ..model.pretrain import resolve

            resolve(path)
        dist.barrier()
        if path.startswith("base:"):
            from ..model.pretrain import resolve

            path = resolve(path)
    return path


def _select_gemm(cfg, device, model) -> str:
    """Pick the float32 CPU product backend (model/gemm.py) once for the run; with several
    processes rank 0's choice holds everywhere. Returns the text for the start-up line."""
    if device.type != "cpu" or cfg.model.dtype != "float32" or (cfg.train.parallel == "fsdp" and dist.world() > 1):
        gemm.select("torch")          # (FSDP: sharded weights go through torch's own products)
        return ""
    local = gemm.select(cfg.model.cpu_gemm, model)
    chosen, r = dist.gather_objects(local)[0], gemm.ratio()
    if chosen != local:
        gemm.select(chosen)
    probes = "" if r is None else f" (oneDNN/torch time as kept in {gemm.probe_file()}: decode " + " training ".join(
        f"{x:.2f}" for x in r if x is not None) + ")"
    return f" | float32 products on {chosen}{probes}"


def _check_prompt_lengths(run: Run) -> None:
    cfg = run.cfg
    sample = list(run.eval_items) + [cfg.task.sample_train(random.Random(cfg.seed + 31)) for _ in range(64)]
    if not sample:
        return
    longest = max(len(run.tokenizer(render(cfg.template, it, run.tokenizer), add_special_tokens=False)["input_ids"])
                  for it in sample)
    check_context(run.model, longest, cfg.generation.max_new_tokens)


def _warm_start(run: Run, progress) -> None:
    """Supervised warm start (train/warmstart.py); every rank runs the same seeded steps, rank 0
    saves the result as ``RUN/init`` (the reference policy and LoRA's base)."""
    cfg = run.cfg
    run.say(f"warm start: {cfg.warmstart.steps} supervised steps")
    t0 = time.perf_counter()
    info = warm_start(run.model, run.tokenizer, cfg.task, cfg.template, cfg.warmstart, run.eos_ids,
                      cfg.generation.max_new_tokens, cfg.seed, on_step=progress.warm if progress else None)
    info = {**info, "seconds": round(time.perf_counter() - t0, 1)}     # the compute of SFT arms (claims)
    run.results["warmstart"] = info
    if run.main:
        run.model.save_pretrained(run.run_dir / "init")
        run.tokenizer.save_pretrained(run.run_dir / "init")
    dist.barrier()
    run.say(f"warm start done after {info['steps']} steps (loss {info['loss']:.3f}, dev acc {info['dev_accuracy']})")


def _adapt(run: Run) -> None:
    """LoRA adapters, activation checkpointing, CPU products; then the KL reference policy."""
    cfg, mc = run.cfg, run.cfg.model
    model = run.model
    if mc.lora_r and not is_lora(model):
        if (run.run_dir / "init").exists():    # adapters sit on the warm-started weights
            model.config._name_or_path = str((run.run_dir / "init").resolve())
        torch.manual_seed(cfg.seed)            # the adapters' random init is part of the run's seed
        model = add_lora(model, mc.lora_r, mc.lora_alpha, mc.lora_dropout, mc.lora_targets)
    if mc.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    run.sharded = cfg.train.parallel == "fsdp" and dist.world() > 1
    forward, autocast = cfg.forward, run.policy.autocast
    if run.sharded:        # FSDP2 (train/fsdp.py): bf16 through its mixed-precision policy, the naive forward
        forward, autocast = build("forward", "naive"), None
        fsdp.shard(model, run.policy.autocast)
    else:
        gemm.install(model)
    run.policy = Policy(model, forward, autocast)
    if cfg.kl.coef == 0.0 and not cfg.advantage.needs_ref_logp:    # (a KL penalty in the loss or in the rewards)
        return
    if is_lora(model):                          # base weights through the same modules, no copy
        ref = AdapterOff(model)
    else:
        ref = load_model(_init_dir(run), mc.dtype, run.device).eval().requires_grad_(False)
        if run.sharded:
            fsdp.shard(ref, autocast_dtype(mc.autocast))
        else:
            gemm.install(ref)
    run.ref = Policy(ref, forward, autocast)


def _init_dir(run: Run) -> str:
    """The policy's initial weights: the warm start's ``RUN/init``, else ``model.path`` (the KL
    reference and the critic start from them)."""
    init = run.run_dir / "init"
    return str(init) if init.exists() else _model_dir(run.cfg)


def _optimizer(run: Run) -> None:
    """Fused AdamW (one kernel per step instead of several per tensor; as TRL's adamw_torch_fused),
    the schedule, the seeded generators and the components' initial states."""
    cfg, t = run.cfg, run.cfg.train
    run.opt = torch.optim.AdamW([p for p in run.model.parameters() if p.requires_grad], lr=t.lr,
                                betas=tuple(t.betas), eps=t.adam_eps, weight_decay=t.weight_decay, fused=True)
    run.sched = torch.optim.lr_scheduler.LambdaLR(run.opt, lr_lambda(t, t.steps * t.num_iterations))
    run.step_rng = random.Random(cfg.seed)
    run.gen = torch.Generator(device=run.device).manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    run.sampler_state = cfg.sampler.init_state()
    run.alloc_state = cfg.allocation.init_state()
    run.replay_state = cfg.replay.init_state()


def _restore(run: Run, last) -> None:
    """Optimizer, schedule, generators, component states (and threads, products) of the checkpoint."""
    cfg = run.cfg
    state = ckpt.load_state(last[1])
    if run.sharded:
        if state.get("sharded") != dist.world():
            raise TrainingError(f"{last[1]} was written by {state.get('sharded') or 1} process(es) "
                                f"(train.parallel=fsdp); resume it with the same number")
        fsdp.load(last[1] / "dcp", run.model, run.opt)
    else:
        run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    run.step_rng.setstate(state["py_rng"])
    run.gen.set_state(state["gen_rng"])
    torch.random.set_rng_state(state["torch_rng"])
    run.sampler_state = state["sampler"]
    run.alloc_state = state.get("allocation", {})
    if cfg.model.threads <= 0 and state.get("threads"):
        run.threads = runtime.set_threads(int(state["threads"]))   # same reduction order as the interrupted run
        run.say(f"torch threads {run.threads} (as in the checkpoint)")
    if state.get("gemm") and cfg.model.cpu_gemm == "auto" and state["gemm"] != gemm.backend():
        got = gemm.select(state["gemm"])
        run.say(f"float32 products on {got} " + ("(as in the checkpoint)" if got == state["gemm"] else
                                                 f"(the checkpoint's {state['gemm']} is not available here)"))
    run.replay_state = state.get("replay", run.replay_state)
    if run.critic is not None:
        run.critic.restore(last[1], state.get("critic_optimizer"))
    run.say(f"resumed from {last[1]} (step {run.start})")
