"""Pieces shared by the bench driver and its workers (imported by both virtualenvs, so no
groupo import at module level): model presets, the model builder, the per-run contention
meter and the result line.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import time
from pathlib import Path

# name -> Llama shape. 1M is exactly groupo.model.tiny.build_tiny's default model; 25M keeps
# its recipe (same tokenizer, Llama config, tied embeddings) with a smaller MLP
# (intermediate 1408 instead of 4 x hidden) so the count lands at ~25.7M, the size of the
# peer baseline's "small" model in ../shared/bench/TRL_BASELINE.md.
SIZES = {
    "1M": dict(hidden=128, layers=4, heads=4, intermediate=512),
    "25M": dict(hidden=512, layers=8, heads=8, intermediate=1408),
}
SEED = 42
RESULT = "RESULT_JSON "


def worker_parser() -> argparse.ArgumentParser:
    """The options both libraries' workers take (each adds its own)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=10, help="timed + warm-up steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    return ap


def build_model(path: str | Path, size: str, seed: int = SEED) -> Path:
    """Random-init Llama + groupo's character tokenizer, written as an HF model directory
    (``groupo.model.tiny.build_tiny`` with this size's shape)."""
    from groupo.model.tiny import build_tiny

    s = SIZES[size]
    return build_tiny(Path(path), seed=seed, hidden=s["hidden"], layers=s["layers"], heads=s["heads"],
                      intermediate=s["intermediate"])


@functools.lru_cache(maxsize=1)
def cpu_load():
    """groupo/runtime.py loaded on its own (no torch and no groupo package import in TRL's worker)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("groupo_runtime", Path(__file__).resolve().parent.parent
                                                  / "groupo" / "runtime.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _host_busy_s() -> float:
    """CPU seconds all processes of the host have used (from /proc/stat)."""
    return cpu_load()._host_busy_s() or 0.0


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Contention:
    """CPU time other processes used while this one ran (a shared 2-core box makes torch's
    OpenMP threads collapse when a core is taken: the peer baseline saw x55)."""

    def __init__(self):
        self.t0, self.host0, self.own0 = time.perf_counter(), _host_busy_s(), _own_cpu_s()
        self.load0 = os.getloadavg()[0]

    def result(self) -> dict:
        wall = time.perf_counter() - self.t0
        other = max(0.0, (_host_busy_s() - self.host0) - (_own_cpu_s() - self.own0))
        return {"other_cpu_frac": round(other / max(wall * (os.cpu_count() or 1), 1e-9), 3),
                "loadavg_start": round(self.load0, 2), "train_wall_s": round(wall, 2)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(out: dict) -> None:
    print(RESULT + json.dumps(out), flush=True)


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])
