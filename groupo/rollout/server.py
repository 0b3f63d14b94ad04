"""``groupo serve-rollouts``: a process that generates rollouts for a trainer (``rollout.name=server``).

Disaggregated generation as TRL's ``trl vllm-serve``: the server holds its own copy of the model
and samples; the trainer sends each step's prompts and gets back the token ids and the sampler's
log-probs of the sampled tokens; after every optimizer update the trainer pushes its weights
(rollout/transport.py) and the server loads them before the next request that names them. Here
the server runs groupo's own sampler (``rollout.hf.generate``, the lean or hf decode step) on a
model loaded from the same directory as the trainer's, so for the same generator states it
returns exactly the samples colocated generation gives (tests/test_rollout_server.py). With
``--engine vllm`` a vLLM engine in the server process samples instead (GPU; the HF copy of the
model receives the pushed weights and the engine loads them before the next generation, as the
colocated backend does), with per-prompt seeds drawn from the trainer's generators exactly as
colocated ``rollout.name=vllm`` draws them, so it returns the colocated vLLM samples. Weights travel
as files in a shared directory (``--weights files``, transport.py) or over a process group of two
per run (``--weights group``: gloo on CPU, NCCL on a GPU; collective.py).

Protocol: JSON over HTTP (the standard library's ``http.server``; bodies up to ``MAX_BODY``),
one generation at a time (a lock), health answered meanwhile:

* ``GET /health``: model directory, weights transport (directory, or group port and backend), device, dtype, pad id, vocabulary size,
  the (session, version) of the weights loaded, pid;
* ``POST /generate``: prompts, group sizes, sampling settings, decode step, the trainer's CPU
  product backend and autocast dtype, the generator states (one generator or one per prompt,
  base64), and the (session, version) of the weights to sample with. Returns each prompt's token
  ids, each row's (prompt index, completion ids, log-probs), the generators' final states and the
  version used;
* ``POST /attach``: a run's session (``--weights group``: the receiver joins its group);
* ``POST /load``: load a (session, version) now (the trainer checks at start that its weights fit
  the server's model); with ``digest: true`` also a sha256 of the weights (the server's model
  equals the trainer's: tests).

Errors come back as ``{"error": one line}`` with status 400 (a bad request, a missing weights
file, weights that do not fit the model, a prompt too long) or 500 (anything else; the traceback
goes to the server's stderr). Stop the server with Ctrl-C or ``kill PID`` (the pid is printed at
start and reported by /health); a trainer never stops it, and one server serves one trainer at a
time (several trainer processes of one torchrun job are fine: their requests are queued).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

from .transport import FileTransport, generator_states, make_generators, weights_digest

MAX_BODY = 256 * 2 ** 20      # bytes of a request or response body
MAX_PROMPTS = 65536
MAX_ROWS = 2 ** 20
MAX_NEW_TOKENS = 2 ** 20
DECODES = ("lean", "hf")
PULL_TIMEOUT_S = 120.0        # how long a request waits for the weights file it names


class RequestError(ValueError):
    """A request the server cannot serve; its message goes back as the one-line error."""


class RolloutServer:
    """The model, its tokenizer and the weights version loaded; ``generate`` and ``load``."""

    def __init__(self, model_dir: str, weights_dir: str | Path, device: str = "cpu", dtype: str = "float32",
                 say=print, engine: str = "groupo", gpu_memory_utilization: float = 0.85, engine_args: dict | None = None,
                 weights: str = "files", group_port: int = 0):
        from ..model import gemm
        from ..model.load import load_model, load_tokenizer, pick_device

        self.model_dir, self.say = str(model_dir), say
        self.device = pick_device(device)
        self.tokenizer = load_tokenizer(model_dir)
        self.model = load_model(model_dir, dtype, self.device).eval().requires_grad_(False)
        gemm.install(self.model)      # the trainer's CPU product backend is selected per request
        if weights == "files":
            self.transport = FileTransport(weights_dir)
        elif weights == "group":              # a process group of two per run (collective.py)
            from .collective import GroupReceiver

            self.transport = GroupReceiver("127.0.0.1", group_port, self.device, say=say)
        else:
            raise ValueError(f"weights must be 'files' or 'group', got {weights!r}")
        self.loaded: tuple = (None, -1)         # (session, version); (None, -1): the directory's weights
        self.lock = threading.Lock()
        self.engine = None                      # --engine vllm: the engine that samples (GPU)
        if engine == "vllm":
            from .vllm import VLLMEngine

            self.engine = VLLMEngine(model_dir, dtype, gpu_memory_utilization=gpu_memory_utilization, seed=0,
                                     sleep=False, engine_kwargs=engine_args)
        elif engine != "groupo":
            raise ValueError(f"engine must be 'groupo' or 'vllm', got {engine!r}")

    def info(self) -> dict:
        p = next(self.model.parameters())
        w = self.transport.describe()
        return {"ok": True, "model": self.model_dir, "weights": w, **({"weights_dir": w["dir"]} if "dir" in w else {}),
                "device": self.device.type, "dtype": str(p.dtype).removeprefix("torch."),
                "pad_token_id": self.tokenizer.pad_token_id, "vocab_size": int(self.model.config.vocab_size),
                "loaded": list(self.loaded), "threads": torch.get_num_threads(), "pid": os.getpid(),
                "engine": "vllm" if self.engine is not None else "groupo"}

    # -- weights
    def _ensure(self, session: str, version: int) -> None:
        """Load (session, version) unless it is the one in the model."""
        if (session, version) == self.loaded:
            return
        try:
            tensors = self.transport.pull(session, version, PULL_TIMEOUT_S)
        except FileNotFoundError as e:
            raise RequestError(str(e)) from None
        params = dict(self.model.named_parameters())
        missing = sorted(set(params) - set(tensors))
        extra = sorted(set(tensors) - set(params))
        shapes = [n for n in params if n in tensors and tuple(tensors[n].shape) != tuple(params[n].shape)]
        if missing or extra or shapes:
            raise RequestError(f"the pushed weights do not fit the server's model {self.model_dir} (missing "
                               f"{missing[:2]}, unexpected {extra[:2]}, other shapes {shapes[:2]}); start the "
                               f"server with the trainer's model.path")
        dtype = next(iter(tensors.values())).dtype
        if next(self.model.parameters()).dtype != dtype:     # sample in the trainer's weight dtype
            self.model.to(dtype)
            params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(tensors[name])
        if session != self.loaded[0]:
            self.transport.forget_others(session)     # a new run: earlier runs' files go
        self.loaded = (session, version)
        if self.engine is not None:
            self.engine.dirty = True                  # the engine loads them before it samples again

    def attach(self, req: dict) -> dict:
        """A run's rank 0 announces its session: the group receiver joins its process group."""
        session, _ = _session({**req, "version": 0})
        if not hasattr(self.transport, "attach"):
            raise RequestError("this server takes weights as files (--weights files): nothing to attach")
        self.transport.attach(session)
        return {"session": session, **self.transport.describe()}

    def load(self, req: dict) -> dict:
        session, version = _session(req)
        with self.lock:
            self._ensure(session, version)
            digest = weights_digest(self.model.named_parameters()) if req.get("digest") else None
            return {"session": session, "version": version, "digest": digest}

    # -- sampling
    def generate(self, req: dict) -> dict:
        from ..model import gemm
        from ..model.logprobs import autocast_dtype
        from .hf import generate

        prompts, sizes, n_new, eos, decode, spec = _check(req)
        session, version = _session(req)
        if spec["kind"] != "none" and spec["device"] != self.device.type:
            raise RequestError(f"the trainer's generators are on {spec['device']}, this server samples on "
                               f"{self.device.type}: run both on the same device type (exact samples need it)")
        with self.lock:
            t0 = time.perf_counter()
            self._ensure(session, version)
            gemm.select(str(req.get("gemm", "torch")))         # the trainer's float32 products
            gens = make_generators(spec, self.device)
            temp, top_p, top_k = float(req.get("temperature", 1.0)), float(req.get("top_p", 1.0)), int(req.get("top_k", 0))
            if self.engine is not None:                  # the colocated vLLM backend's seeds and sampling
                roll = self._vllm(prompts, sizes, n_new, eos, temp, top_p, top_k, gens)
            else:
                roll = generate(self.model, self.tokenizer, prompts, sizes, n_new, eos, temp, top_p, top_k, gens,
                                decode=decode, autocast=autocast_dtype(req.get("autocast") or "none"), return_logp=True)
            enc = self.tokenizer(prompts, padding=True, add_special_tokens=False)
            prompt_ids = [[t for t, m in zip(ids, mask) if m] for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
            mask = roll.completion_mask.bool().cpu()
            ids, lps = roll.completion_ids.cpu(), roll.sampler_logp.float().cpu()
            rows = [[j, ids[i][mask[i]].tolist(), lps[i][mask[i]].tolist()] for i, j in enumerate(roll.group.tolist())]
            dt = time.perf_counter() - t0
        self.say(f"generate: {len(prompts)} prompts, {len(rows)} rows, {int(mask.sum())} tokens, weights version "
                 f"{version}, {dt:.2f} s")
        return {"session": session, "version": version, "prompt_ids": prompt_ids, "rows": rows,
                "generators": generator_states(gens)["states"], "seconds": dt}


    def _vllm(self, prompts, sizes, n_new, eos, temperature, top_p, top_k, gens):
        from .vllm import sample

        return sample(self.engine, self.model, self.tokenizer, prompts, sizes, n_new, eos, temperature, top_p, top_k,
                      gens)

def _session(req: dict) -> tuple:
    session, version = req.get("session"), req.get("version")
    if not isinstance(session, str) or not session.isalnum() or not isinstance(version, int) or version < 0:
        raise RequestError("a request needs 'session' (letters and digits) and 'version' (an integer >= 0)")
    return session, version


def _check(req: dict) -> tuple:
    """The validated fields of a generate request (one-line RequestError otherwise)."""
    prompts, sizes = req.get("prompts"), req.get("group_sizes")
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts) or not prompts:
        raise RequestError("'prompts' must be a non-empty list of strings")
    if not isinstance(sizes, list) or len(sizes) != len(prompts) or not all(isinstance(g, int) and g >= 0 for g in sizes):
        raise RequestError("'group_sizes' must be one integer >= 0 per prompt")
    if len(prompts) > MAX_PROMPTS or sum(sizes) > MAX_ROWS:
        raise RequestError(f"at most {MAX_PROMPTS} prompts and {MAX_ROWS} rows per request")
    n_new, eos = req.get("max_new_tokens"), req.get("eos_ids")
    if not isinstance(n_new, int) or not 0 < n_new <= MAX_NEW_TOKENS:
        raise RequestError(f"'max_new_tokens' must be an integer in 1..{MAX_NEW_TOKENS}")
    if not isinstance(eos, list) or not eos or not all(isinstance(e, int) for e in eos):
        raise RequestError("'eos_ids' must be a non-empty list of token ids")
    decode = req.get("decode", "lean")
    if decode not in DECODES:
        raise RequestError(f"'decode' must be one of {list(DECODES)}, got {decode!r}")
    spec = req.get("generators") or {"kind": "none", "states": []}
    if spec.get("kind") not in ("none", "one", "list") or (spec["kind"] == "list" and len(spec["states"]) != len(prompts)):
        raise RequestError("'generators' must be {kind: none|one|list, device, states} (list: one state per prompt)")
    return prompts, sizes, n_new, eos, decode, spec


class _Handler(BaseHTTPRequestHandler):
    server_version = "groupo-rollouts"
    protocol_version = "HTTP/1.1"

    def do_GET(self):           # noqa: N802 - http.server's naming
        if self.path.rstrip("/") == "/health":
            return self._reply(200, self.server.app.info())
        self._reply(404, {"error": f"no endpoint GET {self.path} (GET /health, POST /generate, POST /load)"})

    def do_POST(self):          # noqa: N802
        app = self.server.app
        route = {"/generate": app.generate, "/load": app.load, "/attach": app.attach}.get(self.path.rstrip("/"))
        n = int(self.headers.get("Content-Length") or 0)
        if route is None or n > MAX_BODY:
            self.rfile.read(min(n, MAX_BODY))
            return self._reply(404 if route is None else 413, {"error": f"no endpoint POST {self.path}"
                               if route is None else f"request body of {n} bytes is over the {MAX_BODY} limit"})
        try:
            req = json.loads(self.rfile.read(n) or b"{}")
            if not isinstance(req, dict):
                raise RequestError("the request body must be a JSON object")
            out = route(req)
        except (RequestError, json.JSONDecodeError) as e:
            return self._reply(400, {"error": _one_line(e)})
        except Exception as e:  # noqa: BLE001 - reported to the trainer in one line, traceback here
            from ..model.load import ModelError

            if isinstance(e, (ModelError, ValueError)):
                return self._reply(400, {"error": _one_line(e)})
            traceback.print_exc()
            return self._reply(500, {"error": f"{type(e).__name__}: {_one_line(e)}"})
        self._reply(200, out)

    def _reply(self, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):      # one line per generation is printed by the app instead
        return None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:500]


def main(argv: list[str]) -> int:
    """``groupo serve-rollouts`` (its options parsed here, so groupo/cli.py only routes to it)."""
    import argparse

    ap = argparse.ArgumentParser(prog="groupo serve-rollouts", description="serve generation to trainers with "
                                 "rollout.name=server; stop with Ctrl-C or kill PID (docs/scaling.md)")
    ap.add_argument("--model", required=True, help="the trainer's model.path (its weights are pushed at start)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    ap.add_argument("--port", type=int, default=8799, help="port (0: a free one, printed)")
    ap.add_argument("--weights-dir", help="where trainers write their weights, a directory both see "
                                          "(default: <tmp>/groupo-rollouts-<port>)")
    ap.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                    help="until the first push (then the trainer's weight dtype)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the free cores, as model.threads=0)")
    ap.add_argument("--engine", default="groupo", choices=("groupo", "vllm"),
                    help="groupo: groupo's sampler (CPU or GPU); vllm: a vLLM engine in this process (GPU, "
                         "pip install 'groupo[vllm]'); the trainer keeps rollout.tis_cap on")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="--engine vllm: vLLM's share of the GPU")
    ap.add_argument("--weights", default="files", choices=("files", "group"),
                    help="how trainers push weights: files (a directory both see, --weights-dir) or group (a "
                         "process group of two per run: gloo on CPU, NCCL on GPU, over --group-port)")
    ap.add_argument("--group-port", type=int, default=0, help="--weights group: the TCPStore's port (0: a free one)")
    a = ap.parse_args(argv)
    return serve(a.model, a.host, a.port, a.weights_dir, a.device, a.dtype, a.threads, a.engine,
                 a.gpu_memory_utilization, a.weights, a.group_port)


def serve(model: str, host: str = "127.0.0.1", port: int = 8799, weights_dir: str | None = None,
          device: str = "cpu", dtype: str = "float32", threads: int = 0, engine: str = "groupo",
          gpu_memory_utilization: float = 0.85, weights: str = "files", group_port: int = 0) -> int:
    """Load ``model`` and serve until interrupted (Ctrl-C or SIGTERM). ``port`` 0: a free port.
    ``weights_dir``: where trainers write their weights (default ``<tmp>/groupo-rollouts-<port>``)."""
    from .. import runtime

    n = runtime.set_threads(threads)
    httpd = ThreadingHTTPServer((host, port), _Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    wdir = Path(weights_dir) if weights_dir else Path(tempfile.gettempdir()) / f"groupo-rollouts-{port}"
    if weights == "files":
        wdir.mkdir(parents=True, exist_ok=True)
    try:
        httpd.app = RolloutServer(model, wdir, device, dtype, say=lambda s: print(s, flush=True), engine=engine,
                                  gpu_memory_utilization=gpu_memory_utilization, weights=weights, group_port=group_port)
    except BaseException:
        httpd.server_close()
        raise
    w = httpd.app.transport.describe()
    how = f"weights dir {wdir}" if weights == "files" else f"weights over {w['backend']} on port {w['port']}"
    print(f"serving rollouts of {model} on http://{host}:{port} (pid {os.getpid()}, {n} torch threads, {how}); "
          f"stop with Ctrl-C or kill {os.getpid()}", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        sys.stdout.flush()
    return 0
