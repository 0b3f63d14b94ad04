"""Multi-process data parallelism over ``torch.distributed`` (launched by ``torchrun``).

How a step runs on W ranks (docs/scaling.md):
* every rank draws the same global prompt list (same seeded RNG) and keeps a contiguous
  share of whole prompts: a group never spans ranks;
* each rank generates and scores its share; every prompt's sampling RNG is seeded from
  (seed, step, global prompt index), so the samples do not depend on how prompts are
  split (``generation.seed_per_prompt``, forced on when W > 1);
* the rows are gathered, so every rank holds the same global batch and computes the
  batch-level statistics on all of it (GDPO batch normalisation, DAPO's global token
  mean, DGPO's valid-token normalisation, question weights, sampler and replay state);
* each rank runs forward/backward on its own rows only, with token weights normalised
  on the global batch, and the gradients are summed over ranks with ``all_reduce``. The
  sum is the full-batch gradient exactly, so the optimizer step is the single-process
  one. (This is DDP's data parallelism with an explicit all-reduce instead of the DDP
  wrapper: ranks may hold different numbers of rows, even none, and micro-batches need
  no ``no_sync`` bookkeeping.)
* rank 0 alone writes metrics, checkpoints, evaluations and reports.
Backend: gloo on CPU, nccl on CUDA. With W = 1 every function here is the identity.
"""
from __future__ import annotations

import os

import torch


def world() -> int:
    return torch.distributed.get_world_size() if _on() else 1


def rank() -> int:
    return torch.distributed.get_rank() if _on() else 0


def is_main() -> bool:
    return rank() == 0


def _on() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init_from_env(device: torch.device, timeout_s: float = 600.0) -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1). ``timeout_s``: how long a
    collective waits for the other ranks before it fails (``train.pg_timeout``)."""
    from datetime import timedelta

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _on():
        return _on()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return True


def stalled(e: BaseException) -> str | None:
    """One line for a collective that failed because another rank stopped or timed out, else None."""
    text = f"{type(e).__name__}: {e}".lower()
    if not _on() and "torch.distributed" not in text and "gloo" not in text and "nccl" not in text:
        return None
    if any(k in text for k in ("timed out", "timeout", "connection closed", "connection reset", "broken pipe",
                               "peer", "gloo", "nccl")):
        who = f"rank {os.environ.get('RANK', '?')} of {os.environ.get('WORLD_SIZE', '?')}"
        return (f"{who}: waiting for the other processes failed ({str(e).splitlines()[0][:160]}); "
                f"another rank stopped or is stuck (see its log); train.pg_timeout sets how long to wait")
    return None


def local_device(device: torch.device) -> torch.device:
    if device.type == "cuda" and _on():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def share(n: int) -> slice:
    """This rank's contiguous share of n items (sizes differ by at most one)."""
    w, r = world(), rank()
    return slice(r * n // w, (r + 1) * n // w)


def gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (``[obj]`` alone)."""
    if not _on():
        return [obj]
    out = [None] * world()
    torch.distributed.all_gather_object(out, obj)
    return out


def all_sum(x: float) -> float:
    if not _on():
        return x
    t = torch.tensor([float(x)], dtype=torch.float64, device=_comm_device())
    torch.distributed.all_reduce(t)
    return float(t)


def _comm_device() -> torch.device:
    """Where small collective tensors live: nccl only reduces CUDA tensors."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_gradients(params) -> None:
    """Sum .grad over ranks, flattened into one buffer per dtype (missing grads count as 0)."""
    if not _on():
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict = {}
    for p in params:
        by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        torch.distributed.all_reduce(flat)
        i = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(flat[i:i + n].view_as(p.grad))
            i += n


def any_true(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any rank (one all_reduce)."""
    if not _on():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier() -> None:
    if _on():
        torch.distributed.barrier()


def prompt_generators(seed: int, step: int, first_index: int, n: int, device) -> list:
    """One torch.Generator per prompt, seeded from (seed, step, global prompt index)."""
    gens = []
    for j in range(first_index, first_index + n):
        g = torch.Generator(device=device)
        g.manual_seed((seed * 1_000_003 + step * 7_919 + j * 104_729 + 12_345) % (2 ** 63 - 1))
        gens.append(g)
    return gens
