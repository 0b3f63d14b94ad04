"""Several processes on one study or claims directory: cell locks and ``--jobs N``.

* ``claim(path)``: an exclusive ``flock`` on ``<path>.lock``, held while a process trains that cell
  (or builds a seed's shared warm start). The kernel drops it when the process ends, however it
  ends, so a killed worker never leaves a cell locked; another process skips a held cell (or, for
  a warm start, waits for it). Any number of ``groupo study`` / ``groupo claims`` processes may
  therefore run on one ``--out`` at once, on one machine or on several sharing the directory
  (Linux NFS emulates ``flock`` with POSIX locks).
* ``run_jobs``: ``--jobs N`` starts N such processes of the same command (each with the
  machine's cores divided between them through ``OMP_NUM_THREADS`` unless the user set it, and
  with one GPU each when there are at least N), waits for them, and returns the worst exit
  code; the caller then writes the summary once.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:       # not on Windows: there one process per directory, no locks
    fcntl = None


@contextlib.contextmanager
def claim(path: Path, wait: bool = False, poll_s: float = 0.5):
    """Yield True while this process holds ``<path>.lock``; False at once when another process
    holds it (``wait``: block until it is free)."""
    if fcntl is None:
        yield True
        return
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "since": round(time.time(), 1)}).encode())
        yield True
    finally:
        os.close(fd)          # releases the lock


def holder(path: Path) -> str:
    """Who holds ``path``'s lock, for a message ("pid 123"), or "another process"."""
    try:
        return f"pid {json.loads(path.with_name(path.name + '.lock').read_text())['pid']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d for d in env.split(",") if d.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch CUDA: no GPUs to share out
        return []


def run_jobs(argv: list[str], jobs: int, say=print) -> int:
    """Run ``groupo <argv>`` in ``jobs`` processes at once; the worst exit code (130 on Ctrl-C)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    gpus = _gpus()
    procs = []
    for k in range(jobs):
        env = dict(os.environ)
        if "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = str(max(1, cores // jobs))
        if len(gpus) >= jobs:
            env["CUDA_VISIBLE_DEVICES"] = gpus[k]
        procs.append(subprocess.Popen([sys.executable, "-m", "groupo", *argv], env=env))
    say(f"{jobs} processes started (pids {', '.join(str(p.pid) for p in procs)}; "
        f"{env.get('OMP_NUM_THREADS')} threads each{', one GPU each' if len(gpus) >= jobs else ''})")
    codes = []
    for p in procs:
        try:
            codes.append(p.wait())
        except KeyboardInterrupt:          # the processes got the same Ctrl-C: let them save and stop
            codes.append(130)
            for q in procs:
                q.wait()
    bad = [c for c in codes if c != 0]
    return (130 if 130 in bad or -2 in bad else max(bad, key=abs)) if bad else 0
