"""Load a Hugging Face causal LM and its tokenizer from a local directory, with
one-line errors for the usual mistakes (missing directory, no tokenizer, no weights)."""
from __future__ import annotations

import os
from pathlib import Path

import torch


class ModelError(ValueError):
    """A user-facing model loading error (one line, exit code 2)."""


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("model.device=cuda but no CUDA device is available")
    return torch.device(device)


def set_threads(threads: int) -> int:
    """Set torch's CPU threads: ``threads`` or one per available core (at most 8).
    On a shared small machine the OpenMP default (all cores, spin-waiting) can make a
    step many times slower, so we always set it explicitly and log the number."""
    if threads <= 0:
        try:
            avail = len(os.sched_getaffinity(0))
        except AttributeError:
            avail = os.cpu_count() or 1
        threads = max(1, min(8, avail))
    torch.set_num_threads(threads)
    return threads


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.exists():
        raise ModelError(f"model directory '{path}' does not exist")
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, TypeError) as e:
        raise ModelError(f"model directory '{path}' has no usable tokenizer ({str(e).splitlines()[0][:160]})") from None
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelError(f"tokenizer in '{path}' has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(path: str | Path, dtype: str = "float32", device: str = "cpu"):
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not path.exists():
        raise ModelError(f"model directory '{path}' does not exist")
    if not (path / "config.json").exists():
        raise ModelError(f"'{path}' is not a Hugging Face model directory (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[dtype])
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the model in '{path}' ({str(e).splitlines()[0][:160]})") from None
    return model.to(pick_device(device) if isinstance(device, str) else device)


def eos_ids(tokenizer, model=None) -> list[int]:
    """Token ids that end a completion: the tokenizer's eos plus the model's generation config."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gc = getattr(model, "generation_config", None)
    extra = getattr(gc, "eos_token_id", None) if gc is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif isinstance(extra, (list, tuple)):
        ids.update(int(x) for x in extra)
    return sorted(ids)
