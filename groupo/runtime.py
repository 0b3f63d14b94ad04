"""Process-level settings an entry point decides: OpenMP's wait policy (before torch loads) and
torch's CPU threads, from how much CPU other processes are using now.

The library never calls these on import. ``groupo.cli.main`` calls ``prepare_process()`` first
thing (and the Python entry point does the same); the training setup calls
``set_threads(model.threads)``. This module imports nothing heavy, so an entry point can use it
before torch is loaded (bench/common.py also loads it by file path).

The 1-minute load average alone is a poor guide on a small machine: it lags a finished job by
minutes. So when it says "busy", ``busy_cores`` looks again: it measures what other processes use
over a short window (Linux ``/proc/stat``, ``WINDOW`` seconds, taken once and reused for ``TTL``
seconds) and trusts that. Elsewhere the load average is used as is. Measurements behind the
choices: docs/performance.md ("Threads and OpenMP's wait policy").
"""
from __future__ import annotations

import os
import time

IDLE_LOAD = 0.5     # a 1-minute load average at or below this: idle, nothing measured
WINDOW = 0.3        # seconds of measurement when the average says busy
TTL = 30.0          # seconds a measurement is reused (the thread count and the policy are decided together)
_CACHE: dict = {}


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def _host_busy_s() -> float | None:
    """CPU seconds all processes of the machine have used (user, nice, system, irq, softirq, steal)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(v) < 7:
        return None
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")


def others_busy(window: float = WINDOW) -> float | None:
    """Cores' worth of CPU that other processes used during ``window`` seconds (this process
    sleeps meanwhile), or None where /proc/stat cannot be read."""
    h0, t0, own0 = _host_busy_s(), time.monotonic(), sum(os.times()[:2])
    if h0 is None:
        return None
    time.sleep(window)
    h1, t1, own1 = _host_busy_s(), time.monotonic(), sum(os.times()[:2])
    if h1 is None:
        return None
    return max(0.0, (h1 - h0) - (own1 - own0)) / max(t1 - t0, 1e-3)


def busy_cores() -> float:
    """Cores' worth of other work running now: the 1-minute load average when it is at most
    ``IDLE_LOAD``; above that, a ``WINDOW``-second measurement (the average lags), or the
    average where nothing can be measured."""
    load = load_average()
    if load <= IDLE_LOAD:
        return load
    now = time.monotonic()
    if "busy" not in _CACHE or now - _CACHE["at"] > TTL:
        seen = others_busy()
        _CACHE.update(busy=load if seen is None else seen, at=now)
    return _CACHE["busy"]


def describe() -> str:
    """For the run log: the load average, and what was measured when it said busy."""
    text = f"load {load_average():.1f}"
    if "busy" in _CACHE:
        text += f", other processes {_CACHE['busy']:.1f} cores when measured"
    return text


def wait_policy() -> str | None:
    """OpenMP's wait policy for this process: PASSIVE (threads sleep instead of spinning) when
    other processes use more than half a core, else None (OpenMP's default). A spinning thread
    that shares its core with another process makes every parallel region wait for it."""
    return "PASSIVE" if busy_cores() > 0.5 else None


def prepare_process() -> str | None:
    """Entry points only: set ``OMP_WAIT_POLICY`` for this process before torch loads OpenMP
    (the variable is read once, when the library loads). A user's own setting wins, and once
    torch is loaded nothing is changed (it would have no effect). Returns the policy set."""
    import sys

    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return None
    policy = wait_policy()
    if policy:
        os.environ["OMP_WAIT_POLICY"] = policy
    return policy


def set_threads(threads: int) -> int:
    """Set torch's CPU threads: ``threads``; or (0) the user's ``OMP_NUM_THREADS`` when set; else
    one per core that is free now: the cores available to this process minus the cores other
    processes are using (``busy_cores``), at least 1, at most 8. More threads than free cores make
    a step several times slower on a shared small machine, so the count is always set explicitly
    and logged."""
    import torch

    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if threads <= 0 and env.isdigit() and int(env) > 0:
        threads = int(env)
    if threads <= 0:
        try:
            avail = len(os.sched_getaffinity(0))
        except AttributeError:
            avail = os.cpu_count() or 1
        threads = max(1, min(8, avail, int(avail - busy_cores() + 0.5)))
    torch.set_num_threads(threads)
    return threads
