"""How much CPU other processes are using right now (for torch's thread count and OpenMP's wait
policy). Imports nothing heavy: ``groupo/__init__`` calls it before torch loads OpenMP.

The 1-minute load average alone is a poor guide on a small machine: it lags. After a job
that kept both cores busy (a test run, a previous training run) it stays above 1 for about a
minute and decays below 0.5 only after another one or two, while the machine is idle. Taken at
face value it made a run started in that window pick 1 thread and OpenMP's PASSIVE wait policy
(measured on the 2-core machine: the 1M bench model's decode step 4.2-5.6 ms with PASSIVE vs
2.3-2.4 ms with spinning threads at 2 threads, docs/performance.md), and a run keeps its
setting to the end. So when the average says "busy", ``busy_cores`` looks again: it measures
what other processes use over a short window (Linux ``/proc/stat``, ``WINDOW`` seconds, taken
once and reused for ``TTL`` seconds) and trusts that. Elsewhere the load average is used as is.
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
