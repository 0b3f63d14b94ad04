"""``rollout.name: server``: generation in a rollout server (``groupo serve-rollouts``, server.py).

The trainer's side of disaggregated generation (TRL's ``vllm_mode="server"``):

* ``prepare`` (before step 1, on every process): ``GET /health`` (an unreachable server stops
  the run with one line naming the url, exit code 2, before any training), a new session id,
  then version 0 of the weights (the trainer's weights now: after a warm start, LoRA merged, or
  resumed) is pushed and loaded by the server (one line when they do not fit its model);
* ``generate``: ``POST /generate`` with the prompts, sampling settings, decode step, the
  trainer's CPU product backend and autocast dtype, the generators' states and the weights
  version; the rows come back as token ids (the ``Rollout`` is built by ``to_rollout``, padded
  as groupo's sampler pads) with the sampler's log-probs (``sampler_logp``, for the importance
  correction at ``tis_cap``) and the version that sampled them (``policy_version``). The
  server's final generator states are set into the caller's generators, so they advance exactly
  as when sampling runs in this process: same seeds, same samples (tests/test_rollout_server.py);
* ``weights_changed`` (after every optimizer update): version + 1, pushed at once (rank 0
  writes a file or, when the server takes ``--weights group``, broadcasts over a group of two it
  joined at ``prepare``; a sharded model is gathered on every rank for it; with several processes
  the others wait at a barrier), so the server's model can follow every update and equals the
  trainer's at the end of a run;
* several servers (``url`` comma-separated, data-parallel rollouts, as TRL's
  ``--data-parallel-size``): rank r sends its prompts to server r mod n; for each weights
  directory (or group server) the lowest rank using it pushes. The samples do not depend on which
  server drew them (the generators' states travel with each request);
* ``overlap`` (one-step off-policy, train/prefetch.py): ``prefetch`` sends the next step's
  first request from a background thread with the current version, and the step trains
  meanwhile. The next ``generate`` whose request is identical apart from the version takes that
  result; any other request (refill rounds, a state that changed) waits for the prefetched one
  to end, drops it with a warning and is generated now.

The HTTP client is the standard library's (no proxy; ``timeout_s`` per request; bodies up to
``server.MAX_BODY``); every failure is one ``ModelError`` line naming the url.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal

import torch

from ..model.load import ModelError
from ..protocols import RolloutBackend
from ..registry import register
from .base import empty_rollout, to_rollout
from .server import MAX_BODY
from .transport import FileTransport, generator_states, set_generator_states

HEALTH_TIMEOUT_S = 10.0
_CLIENT = None          # this process's connection to the server (one per run: replaced by prepare)


@register("rollout", "server")
@dataclass(frozen=True)
class Server(RolloutBackend):
    """Generation in a rollout server process (``groupo serve-rollouts``; TRL's ``trl vllm-serve``
    pattern), weights pushed after every update; ``overlap`` generates the next step while this
    one trains (one-step off-policy, corrected by truncated importance sampling at ``tis_cap``)."""

    url: str = "http://127.0.0.1:8799"       # the server's address; several, comma-separated: rank r uses server r mod n
    timeout_s: float = 600.0                 # seconds one generation request may take before the run stops
    decode: Literal["lean", "hf"] = "lean"   # the server's decode step (as rollout.name=lean or hf colocated)
    overlap: bool = False                    # generate step t+1 while step t trains (rows one update old)
    tis_cap: float = 2.0                     # truncated importance-sampling cap (0 = no correction)

    def __post_init__(self):
        for u in self.urls():
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"url must start with http:// (e.g. http://127.0.0.1:8799; several servers "
                                 f"comma-separated), got {u!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.tis_cap < 0:
            raise ValueError(f"tis_cap must be >= 0 (0 = no importance correction), got {self.tis_cap}")

    def urls(self) -> list[str]:
        """The servers named by ``url`` (comma-separated), without trailing slashes."""
        return [u.strip().rstrip("/") for u in self.url.split(",")] if self.url.strip() else [""]

    def my_url(self) -> str:
        """This process's server: rank r sends its prompts to server r mod n (data-parallel
        rollouts; more servers than processes would leave some idle, so that is refused)."""
        from ..train import dist

        urls = self.urls()
        if len(urls) > dist.world():
            raise ModelError(f"rollout.url lists {len(urls)} servers but this run has {dist.world()} process(es): "
                             f"each process sends its prompts to one server (rank r to server r mod {len(urls)}); "
                             f"start it with torchrun --nproc_per_node {len(urls)} (or more), or list fewer servers")
        return urls[dist.rank() % len(urls)]

    def prepare(self, model, autocast=None) -> None:
        global _CLIENT
        _CLIENT = Client(self.my_url(), self.timeout_s)
        _CLIENT.connect()
        _CLIENT.push(model)
        _CLIENT.check_load()

    def generate(self, model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature=1.0,
                 top_p=1.0, top_k=0, generator=None, autocast=None):
        dev = next(model.parameters()).device
        if not prompts:
            return empty_rollout(dev, sampler_logp=True)
        client = self._client(model, autocast)
        if client.info.get("pad_token_id") != tokenizer.pad_token_id:
            raise ModelError(f"rollout server {client.url} pads with token {client.info.get('pad_token_id')}, the "
                             f"trainer's tokenizer with {tokenizer.pad_token_id}: start it with the trainer's model.path")
        body = self._body(prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p, top_k, generator, autocast)
        res = client.take(body)
        if res is None:
            res = client.generate(body, client.version)
        set_generator_states(generator, res["generators"])
        roll = to_rollout(res["prompt_ids"], [(j, ids, lps) for j, ids, lps in res["rows"]], tokenizer, eos_ids, dev)
        roll.policy_version = torch.full((len(roll.texts),), int(res["version"]), dtype=torch.long)
        return roll

    def prefetch(self, model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature=1.0,
                 top_p=1.0, top_k=0, generator=None, autocast=None) -> None:
        if prompts:
            body = self._body(prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p, top_k, generator,
                              autocast)
            self._client(model, autocast).start(body)

    def weights_changed(self, model) -> None:
        if _CLIENT is not None:
            _CLIENT.version += 1
            _CLIENT.push(model)

    def policy_version(self) -> int | None:
        return _CLIENT.version if _CLIENT is not None else 0

    def _client(self, model, autocast) -> Client:
        if _CLIENT is None or _CLIENT.url != self.my_url():
            self.prepare(model, autocast)
        return _CLIENT

    def _body(self, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p, top_k, generator,
              autocast) -> dict:
        """A generation request, without the weights version (what a prefetched one is matched on)."""
        from ..model import gemm

        return {"prompts": list(prompts), "group_sizes": [int(g) for g in group_sizes],
                "max_new_tokens": int(max_new_tokens), "eos_ids": [int(e) for e in eos_ids],
                "temperature": float(temperature), "top_p": float(top_p), "top_k": int(top_k), "decode": self.decode,
                "autocast": None if autocast is None else str(autocast).removeprefix("torch."),
                "gemm": gemm.backend(), "generators": generator_states(generator)}


class Client:
    """One training run's connection: session, weights version, transport, the pending prefetch."""

    def __init__(self, url: str, timeout_s: float):
        self.url, self.timeout_s = url.rstrip("/"), timeout_s
        self.session = uuid.uuid4().hex[:16]
        self.version = 0                  # optimizer updates applied (and pushed) so far
        self.info: dict = {}
        self.transport = None             # FileTransport, or collective.GroupSender (the pusher only)
        self.pusher = True                # this process writes the weights its server reads (see connect)
        self.pending: tuple | None = None     # (request key, version, Future) of a prefetched request
        self.misses = 0
        self._open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open   # never via a proxy

    def call(self, path: str, payload: dict | None = None, timeout: float | None = None) -> dict:
        """One request; any failure -> one ModelError line naming the url."""
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        timeout = timeout or self.timeout_s
        try:
            with self._open(req, timeout=timeout) as r:
                body = r.read(MAX_BODY + 1)
        except urllib.error.HTTPError as e:
            try:
                msg = json.loads(e.read(MAX_BODY)).get("error") or e.reason
            except ValueError:
                msg = f"HTTP {e.code} {e.reason}"
            raise ModelError(f"rollout server {self.url}{path}: {msg}") from None
        except TimeoutError:
            raise ModelError(f"rollout server {self.url}{path} did not answer within {timeout:.0f} s "
                             f"(rollout.timeout_s)") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise ModelError(f"rollout server {self.url} is unreachable ({reason}); start it with `groupo "
                             f"serve-rollouts --model MODEL_DIR --port PORT` or set rollout.url") from None
        if len(body) > MAX_BODY:
            raise ModelError(f"rollout server {self.url}{path}: answer over {MAX_BODY} bytes")
        try:
            return json.loads(body)
        except ValueError:
            raise ModelError(f"rollout server {self.url}{path}: not a JSON answer (is that a groupo rollout "
                             f"server?)") from None

    def connect(self) -> None:
        """Health check; the session id is rank 0's on every process (one run, one session).
        One process per destination pushes: the lowest rank that writes into a weights directory
        (files; keyed by host and path) or whose server takes a group (one group per server)."""
        import socket

        from ..train import dist

        self.session = dist.gather_objects(self.session)[0]
        self.info = self.call("/health", timeout=HEALTH_TIMEOUT_S)
        w = self.info.get("weights") or ({"kind": "files", "dir": self.info["weights_dir"]}
                                         if "weights_dir" in self.info else {})
        if not self.info.get("ok") or w.get("kind") not in ("files", "group"):
            raise ModelError(f"{self.url} answered /health without a weights transport: not a groupo rollout server")
        dest = ("files", socket.gethostname(), w["dir"]) if w["kind"] == "files" else ("group", self.url)
        dests = dist.gather_objects(dest)
        self.pusher = dests.index(dest) == dist.rank()
        if w["kind"] == "files":
            self.transport = FileTransport(w["dir"])
        elif self.pusher:             # a process group of two with the server
            self.transport = self._join_group(w)

    def _join_group(self, w: dict):
        """``POST /attach`` (the server's receiver joins), then join the group as its rank 1."""
        from urllib.parse import urlparse

        from .collective import GroupSender

        if w["backend"] == "nccl" and not torch.cuda.is_available():
            raise ModelError(f"rollout server {self.url} takes weights over NCCL (it runs on a GPU) but this trainer "
                             f"has no CUDA device: start the server with --weights files")
        self.call("/attach", {"session": self.session}, timeout=HEALTH_TIMEOUT_S)
        host = urlparse(self.url).hostname
        try:
            return GroupSender(host, int(w["port"]), w["backend"], self.session, self.timeout_s)
        except Exception as e:  # noqa: BLE001 - one line naming the server's group port
            raise ModelError(f"cannot join the weights group of rollout server {self.url} at {host}:{w['port']} "
                             f"({w['backend']}): {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None

    def push(self, model) -> None:
        """Write the current version (the pushers), keeping any version a prefetched request still
        names. A sharded model (train.parallel=fsdp) is gathered on every rank for it (a collective)."""
        from ..train import dist, fsdp
        from .vllm import inference_weights

        with fsdp.full_weights(model):
            if self.pusher:
                keep = self.version - 1 if self.pending is None else min(self.version - 1, self.pending[1])
                try:
                    self.transport.push(inference_weights(model), self.session, self.version, keep_from=keep)
                except RuntimeError as e:        # the group transport: the server went away mid-push
                    raise ModelError(f"pushing weights version {self.version} to rollout server {self.url} failed: "
                                     f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if dist.world() > 1:
            dist.barrier()

    def check_load(self, digest: bool = False) -> dict:
        """Have the server load the current version now: weights that do not fit its model stop the
        run here, before step 1. ``digest``: the answer has a sha256 of the server's weights."""
        return self.call("/load", {"session": self.session, "version": self.version, "digest": digest})

    def generate(self, body: dict, version: int) -> dict:
        return self.call("/generate", {**body, "session": self.session, "version": version})

    def start(self, body: dict) -> None:
        """Send ``body`` with the current version from a background thread (the trainer goes on)."""
        self.drop()
        fut: Future = Future()
        version = self.version

        def work():
            try:
                fut.set_result(self.generate(body, version))
            except BaseException as e:  # noqa: BLE001 - handed to whoever takes the result
                fut.set_exception(e)

        threading.Thread(target=work, name="groupo-prefetch", daemon=True).start()
        self.pending = (_key(body), version, fut)

    def take(self, body: dict) -> dict | None:
        """The prefetched answer when it was for exactly ``body``, else None (the prefetched
        request is finished and dropped first: the server generates one request at a time)."""
        if self.pending is None:
            return None
        key, _, fut = self.pending
        if key == _key(body):
            self.pending = None
            return fut.result()
        self.drop()
        self.misses += 1
        from ..train import dist

        if dist.is_main():
            print("warning: rollout.overlap: the prefetched request differs from the step's (prompts, sizes or "
                  "generator states changed); generating it again now", flush=True)
        return None

    def drop(self) -> None:
        if self.pending is not None:
            fut, self.pending = self.pending[2], None
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - a dropped request's failure does not matter
                pass


def _key(body: dict) -> str:
    return json.dumps(body, sort_keys=True)
