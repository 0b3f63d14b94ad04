"""How the trainer's weights reach a rollout server (``rollout.name=server``), and the small wire
helpers both sides share (generator states, a digest of weights).

A weight transport has two sides: ``push(tensors, session, version)`` runs in the trainer after
every optimizer update, ``pull(session, version)`` in the server before a request that names that
version. ``session`` is a random id per training run (a server outlives runs: a new run's version
0 must never be taken for an old run's), ``version`` counts the optimizer updates applied.

Two transports. ``FileTransport`` (here, ``--weights files``, the default): the trainer writes
each version as one safetensors file ``<dir>/<session>-v<version>.safetensors`` (written to a
temporary name, then renamed: a reader never sees half a file) into a directory both processes
see; the server names the directory (``groupo serve-rollouts --weights-dir``, reported by its
/health) and loads the version a request names. The version is part of the name, so with
``rollout.overlap`` the trainer writes v+1 while the server still samples from v; trainer and
server start, stop and restart independently. ``collective.py`` (``--weights group``): the same
versions over a process group of two per run (gloo on CPU, NCCL on GPUs), received by a thread
in the server, for machines without a shared directory and for GPU-to-GPU pushes. On CPU the files
are faster (bench/weight_push.py: 100 MiB 0.065 s as files vs 0.25 s over gloo on loopback).
"""
from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path
from typing import Iterable, Protocol

import torch

KEEP = 2        # versions kept on disk besides any still named by a request in flight


class WeightTransport(Protocol):
    """Trainer -> server weights. ``push`` in the trainer (its rank 0), ``pull`` in the server."""

    def push(self, tensors: Iterable[tuple[str, torch.Tensor]], session: str, version: int,
             keep_from: int | None = None) -> None: ...

    def pull(self, session: str, version: int, timeout_s: float) -> dict[str, torch.Tensor]: ...

    def forget_others(self, session: str) -> None: ...


class FileTransport:
    """Weights as versioned safetensors files in a directory both processes see."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def describe(self) -> dict:
        return {"kind": "files", "dir": str(self.root.resolve())}

    def path(self, session: str, version: int) -> Path:
        return self.root / f"{session}-v{version:06d}.safetensors"

    def push(self, tensors, session: str, version: int, keep_from: int | None = None) -> None:
        """Write ``version`` atomically, then delete this session's versions below ``keep_from``
        (default: all but the last ``KEEP``)."""
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        flat = {name: t.detach().to("cpu").contiguous() for name, t in tensors}
        final = self.path(session, version)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        save_file(flat, str(tmp), metadata={"session": session, "version": str(version)})
        os.replace(tmp, final)
        keep_from = version - KEEP + 1 if keep_from is None else keep_from
        for old in self.root.glob(f"{session}-v*.safetensors"):
            v = old.name[len(session) + 2: -len(".safetensors")]
            if v.isdigit() and int(v) < keep_from:
                old.unlink(missing_ok=True)

    def forget_others(self, session: str) -> None:
        """Delete the files of every other session (the server calls it when a new run starts:
        one trainer at a time, so earlier runs' last versions are not kept forever)."""
        for old in self.root.glob("*-v*.safetensors"):
            if not old.name.startswith(f"{session}-v"):
                old.unlink(missing_ok=True)

    def pull(self, session: str, version: int, timeout_s: float = 60.0) -> dict[str, torch.Tensor]:
        """The tensors of ``version``, waiting up to ``timeout_s`` for the file to appear (with
        several trainer processes another rank's request may come before rank 0 has written it)."""
        from safetensors.torch import load_file

        path, deadline = self.path(session, version), time.monotonic() + timeout_s
        while not path.exists():
            if time.monotonic() > deadline:
                raise FileNotFoundError(f"weights version {version} of session {session} not in {self.root} "
                                        f"after {timeout_s:.0f} s (is --weights-dir a directory the trainer sees?)")
            time.sleep(0.05)
        return load_file(str(path))


# ----------------------------------------------------------------------------- wire helpers
def generator_states(generator) -> dict:
    """A generator argument (None, one torch.Generator, or one per prompt) as JSON: its kind,
    device type and base64 states."""
    if generator is None:
        return {"kind": "none", "device": "cpu", "states": []}
    gens = list(generator) if isinstance(generator, (list, tuple)) else [generator]
    return {"kind": "list" if isinstance(generator, (list, tuple)) else "one", "device": gens[0].device.type,
            "states": [base64.b64encode(g.get_state().numpy().tobytes()).decode("ascii") for g in gens]}


def _state_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def make_generators(spec: dict, device):
    """``generator_states``' JSON -> the generator argument, on ``device``."""
    if spec["kind"] == "none":
        return None
    gens = []
    for text in spec["states"]:
        g = torch.Generator(device=device)
        g.set_state(_state_tensor(text))
        gens.append(g)
    return gens if spec["kind"] == "list" else gens[0]


def set_generator_states(generator, states: list) -> None:
    """Put the final states a server returned into the caller's generators, so they advance
    exactly as if the sampling had run in this process."""
    if generator is None:
        return
    gens = list(generator) if isinstance(generator, (list, tuple)) else [generator]
    if len(gens) != len(states):
        raise ValueError(f"{len(states)} generator states for {len(gens)} generators")
    for g, text in zip(gens, states):
        g.set_state(_state_tensor(text))


def weights_digest(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors`` in name order: equal
    digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, t in sorted(tensors, key=lambda x: x[0]):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
