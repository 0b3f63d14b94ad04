"""Weights to a rollout server: files in a shared directory vs a gloo process group of two, side
by side in one run (docs/scaling.md). A receiver thread stands in for the server: it pulls each
version as the server would before a request; the time is push + pull per version.

    .venv/bin/python bench/weight_push.py --mb 100 400 --reps 3
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from groupo.rollout.collective import GroupReceiver, GroupSender
from groupo.rollout.transport import FileTransport


def weights(mb: int) -> list:
    """``mb`` MiB of float32 in 64 tensors (a model's worth of matrices)."""
    n = mb * 2 ** 20 // 4 // 64
    return [(f"layer{i}.weight", torch.randn(n)) for i in range(64)]


def timed(push, pull, w, reps: int, first: int) -> list:
    out = []
    for v in range(first, first + reps):
        got = {}
        t = threading.Thread(target=lambda: got.update(pull(v)))
        t0 = time.perf_counter()
        t.start()
        push(w, v)
        t.join()
        out.append(time.perf_counter() - t0)
        assert torch.equal(got[w[-1][0]], w[-1][1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, nargs="+", default=[100, 400])
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    recv = GroupReceiver("127.0.0.1", 0, torch.device("cpu"), say=lambda s: None)
    recv.attach("bench")
    send = GroupSender("127.0.0.1", recv.port, "gloo", "bench", 120.0)
    with tempfile.TemporaryDirectory() as tmp:
        files = FileTransport(Path(tmp))
        for k, mb in enumerate(a.mb):
            w, first = weights(mb), k * a.reps          # versions never repeat
            f = timed(lambda w, v: files.push(w, "bench", v), lambda v: files.pull("bench", v), w, a.reps, first)
            g = timed(lambda w, v: send.push(w, "bench", v), lambda v: recv.pull("bench", v), w, a.reps, first)
            mf, mg = statistics.median(f), statistics.median(g)
            print(f"{mb} MiB: files {mf:.3f} s, gloo group {mg:.3f} s per version (median of {a.reps}); "
                  f"group/files = {mg / mf:.2f}", flush=True)


if __name__ == "__main__":
    main()
