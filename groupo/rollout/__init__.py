"""Rollout engines: ``hf`` (our batched sampler over a transformers model with the
prompt's KV cache shared by its group) and ``reference`` (plain ``model.generate``)."""
from .hf import Rollout, generate

__all__ = ["Rollout", "generate"]
