"""Atomic checkpoints: ``RUN/checkpoints/step_N/`` with the model in Hugging Face format
(plus tokenizer), and ``state.pt`` holding optimizer, scheduler, RNG and sampler state (and, with
a critic, ``critic.safetensors`` and the critic's optimizer state).

A checkpoint is written into a temporary sibling directory and renamed into place only
when complete, so a crash (or a full disk) never leaves a partial ``step_N``; the
previous checkpoints stay intact. Only the ``keep`` most recent are kept.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from . import faults

_STEP = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """Saving or loading a checkpoint failed (one line for the user)."""


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _STEP.match(p.name)
        if m and p.is_dir() and (p / "state.pt").exists():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest(run_dir: str | Path) -> tuple[int, Path] | None:
    cps = list_checkpoints(run_dir)
    return cps[-1] if cps else None


def save(run_dir: str | Path, step: int, model, tokenizer, state: dict, keep: int = 2, extra=None) -> Path:
    """Write checkpoint ``step`` atomically; ``state`` is any torch-serialisable dict; ``extra``
    (optional) writes more files into the checkpoint directory before it is renamed into place."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step}"
    tmp = root / f".tmp_step_{step}_{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp_step_*"):     # left by a process killed mid-write
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if extra is not None:
            extra(tmp)
        faults.kill_if("ckpt", step)
        torch.save(state, tmp / "state.pt")
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"could not save checkpoint {final} ({e.strerror or e}); "
                              f"the previous checkpoints are intact") from None
    for old_step, path in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def load_state(path: str | Path) -> dict:
    try:
        return torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as e:
        raise CheckpointError(f"cannot read checkpoint state in {path} ({e})") from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------- a run's checkpoints and eval.json
def snapshot(run) -> dict:
    """Everything besides the weights and the optimizer that a resumed run needs to continue as
    if uninterrupted: generators, component states, threads and the CPU product backend. Taken
    right after a step is logged (the state a checkpoint of that step must hold)."""
    from ..model import gemm

    return {"threads": run.threads, "gemm": gemm.backend(), "py_rng": run.step_rng.getstate(),
            "gen_rng": run.gen.get_state(), "torch_rng": torch.random.get_rng_state(),
            "sampler": json.loads(json.dumps(run.sampler_state)),
            "allocation": json.loads(json.dumps(run.alloc_state)),
            "replay": json.loads(json.dumps(run.replay_state))}


def save_run(run, step: int, snap: dict) -> None:
    """Checkpoint ``step`` of a run (rank 0 writes; every rank waits until it is written)."""
    from . import dist

    if run.sharded:
        return _save_sharded(run, step, snap)
    if run.main:
        state = {**snap, "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(), "step": step}
        crit = run.critic
        if crit is not None:        # the value model: its weights beside the policy's, its optimizer in state.pt
            state["critic_optimizer"] = crit.opt.state_dict()
        path = save(run.run_dir, step, run.model, run.tokenizer, state, run.cfg.checkpoint.keep,
                    extra=None if crit is None else crit.save_into)
        run.say(f"checkpoint {path}")
    dist.barrier()


def _save_sharded(run, step: int, snap: dict) -> None:
    """FSDP (train/fsdp.py): the full weights in Hugging Face format (gathered, written by rank 0,
    for eval and export), and the model and optimizer shards of every rank in ``dcp/``
    (torch.distributed.checkpoint), in a temporary directory renamed into place when complete."""
    from . import dist, fsdp

    root = Path(run.run_dir) / "checkpoints"
    final, tmp = root / f"step_{step}", root / f".tmp_step_{step}_sharded"
    weights = fsdp.full_state_dict(run.model)                       # every rank takes part
    if run.main:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp_step_*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        run.model.save_pretrained(tmp, state_dict=weights)
        run.tokenizer.save_pretrained(tmp)
        faults.kill_if("ckpt", step)
        torch.save({**snap, "scheduler": run.sched.state_dict(), "step": step, "sharded": dist.world()},
                   tmp / "state.pt")
    dist.barrier()
    fsdp.save(tmp / "dcp", run.model, run.opt)
    dist.barrier()
    if run.main:
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        for old_step, path in list_checkpoints(run.run_dir)[:-run.cfg.checkpoint.keep]:
            shutil.rmtree(path, ignore_errors=True)
        run.say(f"checkpoint {final}")
    dist.barrier()


def read_eval(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / "eval.json").read_text())
    except (OSError, ValueError):
        return {}


def write_eval(run_dir: Path, results: dict, cfg) -> None:
    out = {**results, "model": cfg.model.path, "task": cfg.raw.get("task")}
    tmp = Path(run_dir) / "eval.json.tmp"
    tmp.write_text(json.dumps(out, indent=2, default=str))
    tmp.replace(Path(run_dir) / "eval.json")
