"""reasoning-gym scorers, run only in worker processes with a time and a memory limit.

reasoning-gym 0.1.25's ``score_answer`` functions read the model's answer, and several run it as
Python (TASKS.md §1.4, and grep over the installed package): ``eval(answer)`` in
``spiral_matrix``, ``binary_matrix``, ``string_insertion``, ``n_queens`` (partial credit for a
Python list), ``sympy.parse_expr(answer)`` (which evaluates Python) in ``countdown``,
``puzzle24``, ``polynomial_multiplication``, ``simple_integration``, ``intermediate_integration``.
So no scorer is ever called in the training process. The pool mirrors ``mathpool``:

* a ``ProcessPoolExecutor`` (1-2 workers, created lazily; ``fork`` on Linux, ``spawn`` elsewhere);
  each item has a wall-clock budget ``timeout`` from the moment its worker reports that it
  started the scorer call; on overrun the pool is killed and recreated and the item scores 0
  (``timeouts``); unfinished items are resubmitted; after a worker crash an item that was
  running in two crashes scores 0; ``pool_restarts`` counts every kill-and-recreate.
  Building the dataset and regenerating the entry happen before that report (not charged to
  the item; a worker that never reports is cut by the stall guard, ``timeout + STALL_GRACE``);
* memory: each worker lowers its address-space limit (``RLIMIT_AS``) to its size after start-up
  plus ``MEMORY_MB`` (``mathpool`` sets none: math-verify does not run the answer), so an answer
  that allocates without bound gets a MemoryError (score 0) instead of the machine's OOM killer;
* defence in depth inside the worker: the four modules that ``eval`` the answer see
  ``ast.literal_eval`` under that name (a list literal still parses; code does not run); answers
  for the ``parse_expr`` scorers must pass a whitelist (``admissible``: arithmetic only for
  countdown/puzzle24; for the symbolic ones single letters and known math functions, no
  ``__``, quotes, brackets or attribute access), else they score 0 without a call; and an
  audit hook (PEP 578) refuses file writes, process starts and sockets while a scorer runs.

The entry the scorer needs is regenerated in the worker from the item's ``meta["reasoning_gym"]``
(dataset name, generator keyword arguments, index; both cached): reasoning-gym's metadata holds
tuples (``arc_agi``, ``rearc`` compare boards as tuples of tuples) that a JSON copy turns into
lists. If the regenerated question differs from the item's, the item's JSON copy is used.
"""
from __future__ import annotations

import ast
import atexit
import concurrent.futures as cf
import itertools
import json
import os
import queue as stdqueue
import re
import sys
import threading
import time
from collections import OrderedDict

from .extract import TAIL
from .mathpool import _context, _workers

timeouts = 0
pool_restarts = 0
MAX_RESTARTS = 4
STALL_GRACE = 30.0
MEMORY_MB = 2048      # address space a worker may add after start-up

EVAL_MODULES = {"spiral_matrix": "reasoning_gym.algorithmic.spiral_matrix",
                "binary_matrix": "reasoning_gym.algorithmic.binary_matrix",
                "string_insertion": "reasoning_gym.algorithmic.string_insertion",
                "n_queens": "reasoning_gym.games.n_queens"}
ARITHMETIC = {"countdown", "puzzle24"}
SYMBOLIC = {"polynomial_multiplication", "simple_integration", "intermediate_integration"}
MATH_NAMES = frozenset("sin cos tan cot sec csc asin acos atan acot sinh cosh tanh asinh acosh atanh exp log ln "
                       "sqrt erf pi oo Abs abs Integral".split())   # Integral: in some intermediate_integration golds
_ARITH_RE = re.compile(r"[0-9\s+\-*/().]+")
_SYMBOLIC_RE = re.compile(r"[0-9A-Za-z\s+\-*/^().,]+")
_MAX_EXPR = 2000

_pool: cf.ProcessPoolExecutor | None = None
_started = None
_job_ids = itertools.count()
_worker_queue = None
_lock = threading.Lock()


def pool_stats() -> dict[str, int]:
    """Counters since import: items scored 0 for overrunning the budget, pools replaced."""
    return {"timeouts": timeouts, "pool_restarts": pool_restarts}


def admissible(dataset: str, answer: str) -> bool:
    """May ``answer`` reach ``dataset``'s scorer? False for an answer that a ``parse_expr``
    scorer would evaluate and that is not plain arithmetic (countdown, puzzle24) or a formula
    in single-letter variables and known functions (the symbolic scorers)."""
    if dataset in ARITHMETIC:
        return len(answer) <= _MAX_EXPR and bool(_ARITH_RE.fullmatch(answer)) and "**" not in answer
    if dataset in SYMBOLIC:
        if len(answer) > _MAX_EXPR or not _SYMBOLIC_RE.fullmatch(answer) or re.search(r"\.\s*[A-Za-z]", answer):
            return False
        return all(len(w) == 1 or w in MATH_NAMES for w in re.findall(r"[A-Za-z]\w*", answer))
    return True


# -- in the worker -------------------------------------------------------------------------------
_scoring = False      # the audit hook refuses side effects while this is True
_BLOCKED = frozenset("""os.system os.exec os.posix_spawn os.spawn os.fork os.forkpty subprocess.Popen os.kill
    os.killpg os.remove os.rename os.rmdir os.mkdir os.truncate os.chmod os.chown os.link os.symlink os.utime
    shutil.rmtree shutil.copyfile shutil.move socket.connect socket.bind socket.sendto socket.getaddrinfo
    ctypes.dlopen ctypes.dlsym ctypes.call_function""".split())
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit(event: str, args) -> None:
    if not _scoring:
        return
    if event == "open":
        mode, flags = (args[1], args[2]) if len(args) >= 3 else (None, 0)
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _WRITE_FLAGS):
            raise PermissionError(f"groupo: {event} refused while a reasoning-gym scorer runs")
    elif event in _BLOCKED:
        raise PermissionError(f"groupo: {event} refused while a reasoning-gym scorer runs")


def _address_space() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _init_worker(queue, memory_mb: int) -> None:
    global _worker_queue
    _worker_queue = queue
    try:
        import importlib

        importlib.import_module("reasoning_gym")   # not charged to an item (about 1 s cold)
        for name in EVAL_MODULES.values():
            importlib.import_module(name).eval = ast.literal_eval   # shadows the builtin in that module
    except BaseException:  # noqa: BLE001 - then _work fails the same way and scores 0
        pass
    try:
        import resource

        size = _address_space()
        if size is not None and memory_mb > 0:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            limit = size + memory_mb * 2**20
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        pass
    sys.addaudithook(_audit)


_datasets: OrderedDict = OrderedDict()
_entries: OrderedDict = OrderedDict()


def _cached(cache: OrderedDict, key, make, cap: int):
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = make()
    if len(cache) > cap:
        cache.popitem(last=False)
    return value


def _work(job: int, answer: str, spec: dict) -> float:
    """Runs in a worker: build (or reuse) the dataset and the entry, report the start, score."""
    global _scoring
    name, kwargs = spec["dataset"], spec["kwargs"]
    try:
        import reasoning_gym

        ds = _cached(_datasets, (name, kwargs), lambda: reasoning_gym.create_dataset(name, **json.loads(kwargs)), 64)
    except BaseException:  # noqa: BLE001 - no scorer: the item cannot be scored
        return 0.0
    try:
        entry = _cached(_entries, (name, kwargs, spec["index"]), lambda: ds[spec["index"]], 4096)
    except BaseException:  # noqa: BLE001 - then the item's JSON copy below
        entry = {}
    if entry.get("question") != spec["question"]:
        entry = {"question": spec["question"], "answer": spec["answer"], "metadata": spec["metadata"]}
    if _worker_queue is not None:
        _worker_queue.put(job)
    if not admissible(name, answer):
        return 0.0
    try:
        _scoring = True
        return float(ds.score_answer(answer, entry))
    except BaseException:  # noqa: BLE001 - a worker must answer, whatever the scorer does
        return 0.0
    finally:
        _scoring = False


# -- in the training process ---------------------------------------------------------------------
def _get_pool() -> cf.ProcessPoolExecutor:
    global _pool, _started
    if _pool is None:
        ctx = _context()
        _started = ctx.SimpleQueue()
        _pool = cf.ProcessPoolExecutor(_workers(), mp_context=ctx, initializer=_init_worker,
                                       initargs=(_started, MEMORY_MB))
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


def spec_of(meta: dict) -> dict:
    """What a worker needs from an item's ``meta`` (written by ``groupo.tasks.reasoning_gym``);
    KeyError if it is not a reasoning-gym item."""
    rg = meta["reasoning_gym"]
    return {"dataset": rg["dataset"], "kwargs": json.dumps(rg["kwargs"], sort_keys=True), "index": int(rg["index"]),
            "question": rg["question"], "answer": rg["answer"], "metadata": meta.get("metadata", {}),
            "partial": bool(rg.get("partial_credit", False))}


def score_many(answers: list[str | None], metas: list[dict], timeout: float = 5.0) -> list[float]:
    """The reasoning-gym score of each extracted answer against its item (``meta``), in [0, 1].

    An answer that is None or empty scores 0 without a call. Unless the item asks for partial
    credit, a score below 1 counts 0 (reasoning-gym credits answers that merely contain the gold,
    docs/reasoning_gym.md). Never raises for any answer; returns within about ``timeout`` per
    stuck item.
    """
    if len(answers) != len(metas):
        raise ValueError(f"score_many: {len(answers)} answers but {len(metas)} items")
    specs = [spec_of(m) for m in metas]
    todo = [i for i, a in enumerate(answers) if isinstance(a, str) and a.strip()]
    scores = [0.0] * len(answers)
    if todo:
        with _lock:
            got = _score([str(answers[i])[-TAIL:] for i in todo], [specs[i] for i in todo], float(timeout))
        for i, s in zip(todo, got):
            s = min(1.0, max(0.0, s)) if s == s and abs(s) != float("inf") else 0.0
            scores[i] = s if specs[i]["partial"] else (1.0 if s >= 1.0 - 1e-9 else 0.0)
    return scores


def _score(answers: list[str], specs: list[dict], timeout: float) -> list[float]:
    global timeouts, pool_restarts
    scores = [0.0] * len(answers)
    todo = list(range(len(answers)))
    restarts = 0
    strikes: dict[int, int] = {}
    while todo and restarts <= MAX_RESTARTS:
        pool, queue = _get_pool(), _started
        events: stdqueue.SimpleQueue = stdqueue.SimpleQueue()
        pending = {}
        try:
            for i in todo:
                job = next(_job_ids)
                fut = pool.submit(_work, job, answers[i], specs[i])
                pending[job] = (fut, i)
                fut.add_done_callback(lambda _f, job=job: events.put(job))
        except Exception:  # noqa: BLE001 - a broken pool: recreate it
            shutdown()
            restarts += 1
            pool_restarts += 1
            continue
        running: dict[int, float] = {}
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
            if now - last_event > timeout + STALL_GRACE:
                break
        if not pending and not stuck:
            break
        shutdown()
        restarts += 1
        pool_restarts += 1
        if broken:
            for job in started & set(pending):
                i = pending[job][1]
                strikes[i] = strikes.get(i, 0) + 1
                if strikes[i] >= 2:
                    pending.pop(job)
        todo = sorted(i for _, i in pending.values())
    return scores
