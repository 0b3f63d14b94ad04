"""Weights to a rollout server over a process group of two (``groupo serve-rollouts --weights group``):
gloo on CPU, NCCL on GPUs, instead of files in a shared directory (transport.py).

The pattern of TRL's ``trl vllm-serve`` weight path, built on torch.distributed alone:

* the server hosts a ``TCPStore`` on ``--group-port`` and reports it in /health;
* a training run's rank 0 ``POST /attach {session}``; the server starts a receiver thread that
  joins a new process group of two (server rank 0, trainer rank 1) on that store, under the
  session's key prefix; the trainer joins it as rank 1. The groups are built directly on the
  store (``ProcessGroupGloo`` / ``ProcessGroupNCCL``), so they are independent of the default
  group a torchrun trainer already owns, and a new run simply attaches a new session;
* a push: the trainer writes the version's metadata (names, dtypes, shapes, the oldest version
  still needed) under the store key ``meta<n>``, then broadcasts the tensors one by one from rank 1.
  The receiver thread waits for the key, receives into fresh tensors on the server's device and
  files them as ``(session, version)``; ``pull`` waits until the version it names has arrived.

Because the receiver runs beside generation, a push under ``rollout.overlap`` lands while the
server still samples from the previous version, as a file does: the server keeps the versions
from the trainer's ``keep_from`` on (at most two with overlap) in its memory, one model copy each.
The cost on CPU is measured in docs/scaling.md; the NCCL path has not run (no GPU lent).
"""
from __future__ import annotations

import atexit
import datetime
import json
import threading
import time

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
POLL_S = 0.02


def _group(backend: str, store, rank: int, timeout_s: float):
    """A process group of two on ``store``, outside torch.distributed's default group."""
    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=timeout_s)
    if backend == "gloo":
        return dist.ProcessGroupGloo(store, rank, 2, timeout)
    if backend == "nccl":
        opts = dist.ProcessGroupNCCL.Options()
        opts._timeout = timeout   # how vLLM sets it on a directly built group (stateless_init_torch_distributed_process_group)
        return dist.ProcessGroupNCCL(store, rank, 2, opts)
    raise ValueError(f"backend must be gloo or nccl, got {backend!r}")


def _broadcast(pg, tensor: torch.Tensor) -> None:
    import torch.distributed as dist

    opts = dist.BroadcastOptions()
    opts.rootRank = 1                         # the trainer sends
    pg.broadcast([tensor], opts).wait()


def _client_store(host: str, port: int, session: str, timeout_s: float):
    import torch.distributed as dist

    store = dist.TCPStore(host, port, is_master=False, timeout=datetime.timedelta(seconds=timeout_s))
    return dist.PrefixStore(f"groupo/{session}/", store)


class GroupReceiver:
    """The server's side: a TCPStore, one receiver thread per attached session, the versions
    received. ``pull`` / ``forget_others`` as FileTransport's."""

    def __init__(self, host: str, port: int, device: torch.device, timeout_s: float = 600.0, say=print):
        import torch.distributed as dist

        self.store = dist.TCPStore(host, port, is_master=True, wait_for_workers=False)
        self.port, self.device, self.timeout_s, self.say = self.store.port, device, timeout_s, say
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        self.versions: dict[tuple, dict] = {}
        self.cond = threading.Condition()
        self.active: str | None = None          # the attached session (an older receiver stops)
        self.error: str | None = None           # the active receiver's failure, reported by pull
        self.threads: list[threading.Thread] = []
        atexit.register(self.close)            # groups torn down before the interpreter's finalisation

    def describe(self) -> dict:
        return {"kind": "group", "port": self.port, "backend": self.backend}

    def attach(self, session: str) -> None:
        """Start receiving ``session``'s pushes (the trainer joins the group next)."""
        with self.cond:
            self.active, self.error = session, None
        t = threading.Thread(target=self._receive, args=(session,), name=f"groupo-weights-{session}", daemon=True)
        self.threads = [x for x in self.threads if x.is_alive()] + [t]
        t.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the receivers and wait for them to drop their groups: a gloo group destroyed during
        the interpreter's finalisation, its thread still running, aborts the process."""
        with self.cond:
            self.active = None
            self.cond.notify_all()
        for t in self.threads:
            t.join(timeout_s)

    def _receive(self, session: str) -> None:
        try:
            store = _client_store("127.0.0.1", self.port, session, self.timeout_s)
            pg = _group(self.backend, store, 0, self.timeout_s)
            n = 0
            while self.active == session:
                if not store.check([f"meta{n}"]):
                    time.sleep(POLL_S)
                    continue
                meta = json.loads(store.get(f"meta{n}"))
                store.delete_key(f"meta{n}")
                n += 1
                tensors = {}
                for name, dtype, shape in meta["tensors"]:
                    t = torch.empty(shape, dtype=DTYPES[dtype], device=self.device)
                    _broadcast(pg, t)
                    tensors[name] = t
                with self.cond:
                    self.versions[(session, meta["version"])] = tensors
                    for key in [k for k in self.versions if k[0] == session and k[1] < meta["keep_from"]]:
                        del self.versions[key]
                    self.cond.notify_all()
        except Exception as e:  # noqa: BLE001 - reported by the next pull, in one line
            with self.cond:
                if self.active == session:
                    self.error = f"receiving weights of session {session} failed: {type(e).__name__}: {e}"
                    self.say(self.error)
                self.cond.notify_all()

    def pull(self, session: str, version: int, timeout_s: float = 60.0) -> dict[str, torch.Tensor]:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while (session, version) not in self.versions:
                left = deadline - time.monotonic()
                if self.error and self.active == session:
                    raise FileNotFoundError(self.error.splitlines()[0][:400])
                if left <= 0:
                    raise FileNotFoundError(f"weights version {version} of session {session} did not arrive over "
                                            f"the process group within {timeout_s:.0f} s (did the trainer attach?)")
                self.cond.wait(min(left, 1.0))
            return self.versions[(session, version)]

    def forget_others(self, session: str) -> None:
        with self.cond:
            for key in [k for k in self.versions if k[0] != session]:
                del self.versions[key]


class GroupSender:
    """The trainer's side (its rank 0): joins the session's group as rank 1 and pushes versions."""

    def __init__(self, host: str, port: int, backend: str, session: str, timeout_s: float):
        self.store = _client_store(host, port, session, timeout_s)
        self.pg = _group(backend, self.store, 1, timeout_s)
        self.backend, self.n = backend, 0
        self.device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        atexit.register(self.close)

    def close(self) -> None:
        """Drop the group and the store connection (at exit, before the interpreter's finalisation)."""
        self.pg = self.store = None

    def push(self, tensors, session: str, version: int, keep_from: int | None = None) -> None:
        items = [(name, t.detach()) for name, t in tensors]
        bad = [(n, str(t.dtype)) for n, t in items if str(t.dtype).removeprefix("torch.") not in DTYPES]
        if bad:
            raise ValueError(f"weight {bad[0][0]} has dtype {bad[0][1]}: the group transport sends {sorted(DTYPES)}")
        keep_from = version - 1 if keep_from is None else keep_from
        meta = {"version": version, "keep_from": keep_from,
                "tensors": [[n, str(t.dtype).removeprefix("torch."), list(t.shape)] for n, t in items]}
        self.store.set(f"meta{self.n}", json.dumps(meta))
        self.n += 1
        for _, t in items:
            _broadcast(self.pg, t.to(self.device).contiguous())
