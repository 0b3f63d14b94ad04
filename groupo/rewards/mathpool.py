"""LaTeX/math answer checking with math-verify, run only in worker processes.

math-verify 0.9 (Hugging Face, Apache-2.0; TASKS.md §2): ``parse`` and ``verify`` (gold
first), whose own timeouts use ``signal.alarm`` and so only work in a main thread;
they cannot interrupt a long C-level computation, and ``parse`` calls
``sympy.parse_expr`` on extracted spans. So, as TASKS.md §2 recommends:

* every call runs in a ``ProcessPoolExecutor`` (1-2 workers, created lazily; the
  workers' main threads may use the alarm). Start method ``fork`` on Linux (no
  re-import of the user's ``__main__``), ``spawn`` elsewhere;
* each item has a wall-clock budget ``timeout`` from the moment a worker reports
  that it started it. On overrun the pool is killed and recreated, the item scores
  0 and the module counter ``timeouts`` is incremented; items not yet finished are
  resubmitted to the new pool (after a worker crash, an item that was running during
  two crashes scores 0). ``pool_restarts`` counts every kill-and-recreate (timeout,
  crash or wedged pool); ``pool_stats()`` returns both counters. math-verify's own
  timeouts are set to ``max(1, int(timeout / 3))`` s so that ordinary slow inputs
  return False inside the worker without a pool restart. Each worker imports
  math_verify and checks one symbolic pair when it starts, so the import (about 1 s) and
  sympy's lazy imports (0.4-0.5 s) are not charged to an item;
* ``<answer>`` tags are stripped first (``parse`` returns [] for ``<answer>3</answer>``,
  TASKS.md §2): the content of the last closed tag is parsed if there is one, else
  the completion with the tags blanked; only the last 20,000 characters are read;
  Unicode minus signs (U+2212, en dash, small/fullwidth hyphen-minus) become ``-``;
* a gold without ``$``, ``\\[``, ``\\(`` or ``\\boxed`` is parsed as ``$gold$`` first (bare,
  math-verify reads ``2\\sqrt{3}`` as 2), then bare if that finds nothing.

Deviation from open-r1/TRL ``accuracy_reward``: an unparseable gold scores 0.0 (a
float, as ``groupo.verify`` promises), not None.
"""
from __future__ import annotations

import atexit
import concurrent.futures as cf
import importlib
import itertools
import multiprocessing as mp
import os
import queue as stdqueue
import sys
import threading
import time

from .extract import MINUS_SIGNS, TAIL

timeouts = 0          # items that overran the wall-clock budget (pool killed each time)
pool_restarts = 0     # pools killed and recreated (after a timeout, a worker crash or a wedged pool)
MAX_RESTARTS = 4      # per call; beyond that, every unfinished item scores 0
STALL_GRACE = 30.0    # s without any worker starting or finishing an item: restart the pool

_pool: cf.ProcessPoolExecutor | None = None
_started = None       # SimpleQueue on which workers post the job id they start
_job_ids = itertools.count()
_worker_queue = None  # (in a worker) the queue above
_lock = threading.Lock()  # one batch at a time: a timeout kills the shared pool


def pool_stats() -> dict[str, int]:
    """Counters since import: ``timeouts`` (items scored 0 for overrunning the budget) and
    ``pool_restarts`` (worker pools killed and replaced, for any reason)."""
    return {"timeouts": timeouts, "pool_restarts": pool_restarts}


WARM_UP = ("$(x+1)^2$", "$x^2+2x+1$")     # a symbolic pair each worker checks once at start


def _workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _context():
    return mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _init_worker(queue) -> None:
    global _worker_queue
    _worker_queue = queue
    import logging

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs whole inputs on timeout
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)
    try:  # import here, not in the first item: its cost (~1 s, more on a busy machine) is not charged
        mv = importlib.import_module("math_verify")   # to an item's budget (with timeout ~1 s every cold item timed out)
        # the first symbolic comparison imports sympy.combinatorics and sympy.physics.units (0.4-0.5 s
        # measured with one core free, over half the 1 s inner limit): pay it here too
        mv.verify(mv.parse(WARM_UP[0]), mv.parse(WARM_UP[1]))
    except BaseException:  # noqa: BLE001 - then _work fails the same way and scores 0
        pass


_MINUS = str.maketrans(MINUS_SIGNS, "-" * len(MINUS_SIGNS))


def prepare(pred: str) -> str:
    """Strip ``<answer>`` tags (keep the last tag's content if closed), bound length, and
    write Unicode minus signs as ``-`` (math-verify drops them: U+2212 then ``\\frac{3}{7}``
    scored as 3/7)."""
    pred = str(pred)[-TAIL:].translate(_MINUS)
    end = pred.rfind("</answer>")
    start = pred.rfind("<answer>", 0, end) if end >= 0 else -1
    if start >= 0:
        return pred[start + len("<answer>"):end].strip()
    return pred.replace("<answer>", " ").replace("</answer>", " ")


_DELIMITERS = ("$", "\\[", "\\(", "\\boxed")


def _work(job: int, pred: str, gold: str, inner: int) -> float:
    """Runs in a worker: math-verify on one (pred, gold) pair."""
    if _worker_queue is not None:
        _worker_queue.put(job)
    from math_verify import parse, verify

    try:
        # a gold without math delimiters is parsed as $gold$ first: parsed bare, math-verify
        # reads only a leading number ("2\\sqrt{3}" -> 2, "2^{10}" -> 2, "(1, 2)" -> 2), which
        # scored the wrong "\\boxed{2}" 1 and the right answer 0
        g = [] if any(d in gold for d in _DELIMITERS) else parse(f"${gold}$", parsing_timeout=inner)
        if not g:
            g = parse(gold, parsing_timeout=inner)
        if not g:
            return 0.0
        p = parse(pred, parsing_timeout=inner)
        if not p:
            return 0.0
        return 1.0 if verify(g, p, timeout_seconds=inner) else 0.0
    except BaseException:  # noqa: BLE001 - a worker must answer, whatever math-verify does
        return 0.0


def _get_pool() -> cf.ProcessPoolExecutor:
    global _pool, _started
    if _pool is None:
        ctx = _context()
        _started = ctx.SimpleQueue()
        _pool = cf.ProcessPoolExecutor(_workers(), mp_context=ctx, initializer=_init_worker,
                                       initargs=(_started,))
    return _pool


def shutdown(kill: bool = True) -> None:
    """Kill (or stop) the worker processes; the next call creates a fresh pool."""
    global _pool, _started
    pool, _pool, _started = _pool, None, None
    if pool is None:
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    if kill:
        for p in procs:
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass
    try:
        pool.shutdown(wait=not kill, cancel_futures=True)
    except Exception:  # noqa: BLE001
        pass
    for p in procs:
        try:
            p.join(timeout=1.0)
        except Exception:  # noqa: BLE001
            pass


atexit.register(shutdown)


def math_equal_many(preds: list[str], golds: list[str], timeout: float = 5.0) -> list[float]:
    """1.0/0.0 per pair: does ``preds[i]`` state the same math answer as ``golds[i]``?

    Submits the whole batch at once (the workers score in parallel). Never raises
    for any pred string; returns within about ``timeout`` per stuck item.
    """
    if len(preds) != len(golds):
        raise ValueError(f"math_equal_many: {len(preds)} preds but {len(golds)} golds")
    with _lock:
        return _score(preds, golds, float(timeout))


def _score(preds: list[str], golds: list[str], timeout: float) -> list[float]:
    global timeouts, pool_restarts
    inner = max(1, int(timeout / 3))
    scores = [0.0] * len(preds)
    todo = list(range(len(preds)))
    args = [(prepare(p), str(g)) for p, g in zip(preds, golds)]
    restarts = 0
    strikes: dict[int, int] = {}  # item index -> crashes while it was running
    while todo and restarts <= MAX_RESTARTS:
        pool, queue = _get_pool(), _started
        events: stdqueue.SimpleQueue = stdqueue.SimpleQueue()  # job ids of finished futures
        pending = {}  # job id -> (future, item index)
        try:
            for i in todo:
                job = next(_job_ids)
                fut = pool.submit(_work, job, args[i][0], args[i][1], inner)
                pending[job] = (fut, i)
                fut.add_done_callback(lambda _f, job=job: events.put(job))
        except Exception:  # noqa: BLE001 - a broken pool: recreate it
            shutdown()
            restarts += 1
            pool_restarts += 1
            continue
        running: dict[int, float] = {}  # started, not finished: job id -> start time
        started: set[int] = set()
        broken = stuck = False
        last_event = time.monotonic()
        while pending:
            finished = []
            try:
                finished.append(events.get(timeout=0.05))
                while not events.empty():
                    finished.append(events.get_nowait())
            except stdqueue.Empty:
                pass
            now = time.monotonic()
            while queue is not None and not queue.empty():
                job = queue.get()
                if job in pending and job not in started:
                    started.add(job)
                    running[job] = now
                last_event = now
            for job in finished:
                if job not in pending:
                    continue
                fut, i = pending[job]
                last_event = now
                try:
                    scores[i] = float(fut.result())
                except Exception:  # noqa: BLE001 - the pool broke (a worker died)
                    broken = True
                    continue
                del pending[job]
                running.pop(job, None)
            if broken:
                break
            overran = [job for job, t0 in running.items() if now - t0 > timeout]
            if overran:
                timeouts += len(overran)
                for job in overran:
                    scores[pending.pop(job)[1]] = 0.0
                stuck = True
                break
            if now - last_event > timeout + STALL_GRACE:  # workers that never start (a wedged pool)
                break
        if not pending and not stuck:  # a stuck worker is killed even when its item was the last one
            break
        # a stuck or crashed worker: kill the pool and resubmit the unfinished items
        shutdown()
        restarts += 1
        pool_restarts += 1
        if broken:  # an item that was running in two crashes scores 0 (it likely caused them)
            for job in started & set(pending):
                i = pending[job][1]
                strikes[i] = strikes.get(i, 0) + 1
                if strikes[i] >= 2:
                    pending.pop(job)
        todo = sorted(i for _, i in pending.values())
    return scores


def math_equal(pred: str, gold: str, timeout: float = 5.0) -> float:
    """``math_equal_many`` for a single pair."""
    return math_equal_many([pred], [gold], timeout)[0]
