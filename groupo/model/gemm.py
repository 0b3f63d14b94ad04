"""Float32 matrix products on the CPU through oneDNN, on machines where torch's own float32
product (MKL's sgemm) is measurably slower (AMD CPUs; docs/performance.md, "Measurements behind
code choices").

Nothing is assumed: ``select("auto")`` times a 64-row product with a packed 2048 x 512 weight both
ways (decode) and, if oneDNN wins there, a 1024^3 product (training), once per machine (CPU,
thread count, torch; kept in ``~/.cache/groupo/cpu_gemm.json`` so that every run of a config
multiplies the same way), and uses oneDNN for decoding where it takes < ``THRESHOLD`` x torch's time and for training
unless its probe is slower than torch's. The choice is one word, logged, kept in checkpoints (a
resumed run multiplies the same way) and taken from rank 0 with several processes. A model with no
layer large enough (both sides >= ``MIN_DIM``) is not probed. Both paths are IEEE float32 products
with a different summation order; the tests compare them (forward, gradients, decode logits).

* ``select(mode)``: "auto" | "onednn" | "onednn_decode" | "torch" -> the backend now in force.
* ``install(model)``: float32 ``nn.Linear`` layers whose sides are both >= ``MIN_DIM`` compute the
  forward product and the input gradient through oneDNN (an autograd function; the weight gradient
  stays on ``torch.mm``, which was faster over the long token dimension). Other dtypes, autocast and
  other devices use ``F.linear``.
* ``Packed``: a weight pre-packed for a fixed row count (the decode step of rollout/lean.py). The
  packed copies live for one generation call next to the model (+4 bytes per parameter); the decode
  step packs only when they fit ``PACK_MEM_FRACTION`` of the available memory.

The oneDNN entry points are torch's private ``torch.ops.mkldnn._linear_pointwise`` and
``_reorder_linear_weight`` (what torch.compile's CPU backend emits); ``available()`` checks they
exist and reproduce ``F.linear`` on a probe, else torch's path is used.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

MIN_DIM = 256           # both sides of a weight at least this (smaller products: no consistent gain)
THRESHOLD = 0.9         # "auto": oneDNN for decoding when its probe takes < this x torch's time
THRESHOLD_TRAIN = 1.0   # ... and for training products unless their probe is slower than torch's
_STATE = {"backend": "torch", "available": None, "ratio": None}
_PROBED: dict = {}       # thread count -> (decode probe, training probe)


def available() -> bool:
    """oneDNN's linear ops exist in this torch and reproduce ``F.linear`` on a probe."""
    if _STATE["available"] is None:
        ok = False
        try:
            if torch.backends.mkldnn.is_available():
                g = torch.Generator().manual_seed(0)
                x, w, b = (torch.randn(5, 24, generator=g), torch.randn(16, 24, generator=g),
                           torch.randn(16, generator=g))
                ref = F.linear(x, w, b)
                y = _dnn(x, w, b)
                y2 = _dnn(x, torch.ops.mkldnn._reorder_linear_weight(w, 5), b)
                ok = bool(torch.allclose(y, ref, rtol=1e-5, atol=1e-5) and torch.allclose(y2, ref, rtol=1e-5, atol=1e-5))
        except Exception:       # an op missing or refusing these arguments: stay on torch's path
            ok = False
        _STATE["available"] = ok
    return _STATE["available"]


def backend() -> str:
    return _STATE["backend"]


def ratio() -> tuple | None:
    """(decode probe, training probe) of the last ``select("auto")``; None where not probed."""
    return _STATE["ratio"]


def _dnn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def _dnn_nd(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``_dnn`` over the last dimension of x [..., K] -> [..., N]."""
    return _dnn(x.reshape(-1, x.shape[-1]), w, b).view(*x.shape[:-1], w.shape[0])


def best_time(fn, reps: int = 3) -> float:
    """Shortest of ``reps`` timed calls of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def speed_ratio(ours, ref, rounds: int = 5) -> float:
    """Median over ``rounds`` of (best of 3 calls of ``ours``) / (best of 3 calls of ``ref``), timed
    alternately after a warm-up call of each (single timings drift too much on a shared machine)."""
    with torch.no_grad():
        ours()
        ref()
        r = sorted(best_time(ours) / max(best_time(ref), 1e-9) for _ in range(rounds))
    return r[len(r) // 2]


def probe_decode() -> float:
    """oneDNN/torch time of a 64-row product with a 2048 x 512 weight packed for 64 rows."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(64, 512, generator=g), torch.randn(2048, 512, generator=g)
    pw = torch.ops.mkldnn._reorder_linear_weight(w, 64)
    return speed_ratio(lambda: _dnn(x, pw, None), lambda: F.linear(x, w))


def probe_train() -> float:
    """oneDNN/torch time of a 1024 x 1024 x 1024 product (plain weight, as in training)."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1024, 1024, generator=g), torch.randn(1024, 1024, generator=g)
    return speed_ratio(lambda: _dnn(x, w, None), lambda: F.linear(x, w), rounds=7)


BACKENDS = ("torch", "onednn", "onednn_decode")


def _probes() -> tuple:
    dec = probe_decode()
    return dec, (probe_train() if dec < THRESHOLD else None)


def probe_file() -> Path:
    """``$XDG_CACHE_HOME/groupo/cpu_gemm.json`` (``~/.cache`` by default): the machine's probes."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "groupo" / "cpu_gemm.json"


def _machine_key(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu} | {threads} threads | torch {torch.__version__}"


def kept_probes(threads: int) -> tuple:
    """(decode, training) probe ratios for this CPU, thread count and torch, measured once per
    machine and kept in ``probe_file()``: timed afresh in every process, a ratio near a threshold
    made two runs of one config choose differently (8e-7 apart after 4 steps) now and then. The
    first process probes under an flock while others wait; delete the file to probe again. An
    unwritable or unreadable cache: probe, keep nothing."""
    path, key = probe_file(), _machine_key(threads)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "a")
    except OSError:
        return _probes()
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            table = json.loads(path.read_text())
            if not isinstance(table, dict):
                table = {}
        except (OSError, ValueError):
            table = {}
        got = table.get(key)
        if (isinstance(got, list) and len(got) == 2 and isinstance(got[0], float)
                and (isinstance(got[1], float) or (got[1] is None and got[0] >= THRESHOLD))):
            return tuple(got)           # (a training probe is needed wherever the decode one is under the limit)
        table[key] = list(_probes())
        try:
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(table, indent=1))
            os.replace(tmp, path)
        except OSError:
            pass
        return tuple(table[key])


def _big_linear(model) -> bool:
    return any(type(m) is torch.nn.Linear and min(m.weight.shape) >= MIN_DIM for m in model.modules())


def select(mode: str = "auto", model=None) -> str:
    """Set the float32 CPU product backend and return it: "torch"; "onednn" (decode and
    training products); "onednn_decode" (the decode step's packed products only); or "auto":
    oneDNN for decoding when ``probe_decode()`` < ``THRESHOLD``, and for training too when also
    ``probe_train()`` < ``THRESHOLD_TRAIN`` (probed once per machine and thread count, kept by
    ``kept_probes``; not at all when ``model`` has no layer large enough to use it). Without
    oneDNN: torch."""
    if mode not in BACKENDS + ("auto",):
        raise ValueError(f"cpu_gemm must be auto, onednn or torch, got {mode!r}")
    chosen, _STATE["ratio"] = "torch", None
    if mode != "torch" and available():
        if mode != "auto":
            chosen = mode
        elif model is None or _big_linear(model):
            key = torch.get_num_threads()
            if key not in _PROBED:
                _PROBED[key] = kept_probes(key)
            dec, tr = _STATE["ratio"] = _PROBED[key]
            if dec < THRESHOLD:
                chosen = "onednn" if tr < THRESHOLD_TRAIN else "onednn_decode"
    _STATE["backend"] = chosen
    return chosen


def _uses_onednn(w: torch.Tensor, backends: tuple = ("onednn",)) -> bool:
    """The backend in force is one of ``backends`` and ``w`` is a float32 CPU weight with both
    sides >= ``MIN_DIM``."""
    return (_STATE["backend"] in backends and w.dtype == torch.float32 and w.device.type == "cpu"
            and w.dim() == 2 and min(w.shape) >= MIN_DIM)


def mem_available() -> int | None:
    """Bytes the kernel reports as available (Linux /proc/meminfo), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


PACK_MEM_FRACTION = 0.25    # packed copies of a model's weights may take at most this share of free memory


def packing_fits(weight_bytes: int) -> bool:
    """Whether packed copies of ``weight_bytes`` of weights fit ``PACK_MEM_FRACTION`` of the
    available memory (a generation call holds them next to the model; unknown memory: yes)."""
    avail = mem_available()
    return avail is None or weight_bytes <= PACK_MEM_FRACTION * avail


class Packed:
    """``F.linear(x, w, b)`` for inputs of ``rows`` rows; with the oneDNN backend and a large
    enough float32 weight, ``w`` is pre-packed for that row count once (a copy of the weight: it
    does not follow later updates, so build one per generation call)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None = None, rows: int = 0):
        self.w, self.b, self.packed = w, b, None
        if rows > 0 and _uses_onednn(w, ("onednn", "onednn_decode")) and (b is None or b.dtype == w.dtype):
            self.packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), rows)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and x.dtype == torch.float32 and x.dim() == 2:
            return _dnn(x, self.packed, self.b)
        return F.linear(x, self.w, self.b)


class _Linear(torch.autograd.Function):
    """y = x w^T + b and dx = dy w through oneDNN; dw = dy^T x and db on torch."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _dnn_nd(x, w, b)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        g2 = gy.reshape(-1, gy.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _dnn(g2, w.t(), None).view(x.shape)
        if ctx.needs_input_grad[1]:
            dw = g2.t().mm(x.reshape(-1, x.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g2.sum(0)
        return dx, dw, db


def _forward(self, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward`` replacement installed by ``install``."""
    w, b = self.weight, self.bias
    if (_uses_onednn(w) and x.dtype == torch.float32 and x.device.type == "cpu" and x.shape[-1] == w.shape[1]
            and (b is None or b.dtype == torch.float32) and not torch.is_autocast_enabled("cpu")):
        if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)):
            return _Linear.apply(x, w, b)
        return _dnn_nd(x, w, b)
    return F.linear(x, w, b)


def install(model) -> int:
    """Route ``model``'s plain ``nn.Linear`` layers through ``_forward`` (which checks the backend
    and the tensors on every call, so installing is harmless where oneDNN is not used). Returns
    the number of layers that take the oneDNN path under the current backend."""
    if not available():
        return 0
    n = 0
    for mod in model.modules():
        if type(mod) is torch.nn.Linear:
            mod.forward = _forward.__get__(mod)
            n += int(_uses_onednn(mod.weight))
    return n


def uninstall(model) -> None:
    for mod in model.modules():
        if type(mod) is torch.nn.Linear and "forward" in mod.__dict__:
            del mod.forward
