"""Rollout backends (axis ``rollout``): ``lean`` (default) / ``hf`` / ``reference`` (groupo's
sampler over a transformers model, hf.py) and ``vllm`` (a colocated vLLM engine, vllm.py).
``base.Rollout`` is what every backend returns; ``generate`` is groupo's sampler as a function."""
from .base import Rollout
from .hf import generate

__all__ = ["Rollout", "generate"]
