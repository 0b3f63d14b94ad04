"""``train.parallel=fsdp``: the model (and the KL reference) sharded over processes with FSDP2
(``torch.distributed.fsdp.fully_shard``), for models that do not fit once per GPU.

* Units: every decoder layer, then the root (embeddings, final norm and head: tied embeddings stay
  in one unit). Gradients are SUMMED over ranks (``set_gradient_divide_factor(1.0)``; on gloo also
  ``set_force_sum_reduction_for_comms``): the loss is already normalised on the global batch, as in
  the plain data-parallel path (train/dist.py).
* Collectives: every layer's forward all-gathers and its backward reduce-scatters, so all ranks run
  the same number of forward/backward passes; update.py pads a rank's rows with zero-weight rows.
  The training forward goes through the model's own ``forward`` (the naive path): the Prefix Grouper
  paths and chunked log-probs call the decoder and the head directly, outside FSDP's hooks.
* Generation and evaluation run inside ``full_weights``: every unit gathered once, no resharding
  after each forward, so ranks may generate different numbers of tokens without collectives.
* Checkpoints: ``torch.distributed.checkpoint`` (every rank writes its shards of the model and the
  optimizer state) next to a full Hugging Face copy of the weights written by rank 0 (for
  ``groupo eval`` / ``export``); resume loads the shards.
* bf16: ``model.autocast=bfloat16`` becomes FSDP2's ``MixedPrecisionPolicy`` (bf16 compute, float32
  gradient reduction) instead of an autocast context.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch


def _fsdp():
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    return FSDPModule, MixedPrecisionPolicy, fully_shard


def layers_of(model) -> list:
    """The decoder layers (peft-wrapped models included): modules named ``...layers.<i>``."""
    found = [m for name, m in model.named_modules() if name.rsplit(".", 2)[-2:-1] == ["layers"]]
    return found or [m for m in model.modules() if type(m).__name__.endswith(("DecoderLayer", "Block"))]


def shard(model, mixed_precision: torch.dtype | None = None):
    """``fully_shard`` every decoder layer, then the root; gradients summed, not averaged."""
    FSDPModule, MixedPrecisionPolicy, fully_shard = _fsdp()
    kw = {}
    if mixed_precision is not None:
        kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=mixed_precision, reduce_dtype=torch.float32)
    for layer in layers_of(model):
        fully_shard(layer, **kw)
    fully_shard(model, **kw)
    gloo = torch.distributed.get_backend() == "gloo"
    for m in units(model):
        m.set_gradient_divide_factor(1.0)
        if gloo:
            m.set_force_sum_reduction_for_comms(True)     # gloo has no pre-multiplied sum
    return model


def units(model) -> list:
    FSDPModule = _fsdp()[0]
    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def is_sharded(model) -> bool:
    return hasattr(model, "modules") and bool(units(model))


@contextlib.contextmanager
def full_weights(model):
    """Every unit gathered for the duration (generation, evaluation): forwards then issue no
    collectives, so ranks may run different numbers of them. A no-op for an unsharded model."""
    us = units(model) if hasattr(model, "modules") else []
    if not us:
        yield
        return
    for u in us:
        u.unshard()
        u.set_reshard_after_forward(False)
    try:
        yield
    finally:
        for u in us:
            u.set_reshard_after_forward(True)
            u.reshard()


def full_state_dict(model) -> dict:
    """The whole model's weights on the CPU (a collective: every rank calls it; rank 0 keeps them)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save(path: Path, model, opt) -> None:
    """Model and optimizer shards with ``torch.distributed.checkpoint`` (every rank calls it)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(path))


def load(path: Path, model, opt) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    msd, osd = get_state_dict(model, opt)
    state = {"model": msd, "optim": osd}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
