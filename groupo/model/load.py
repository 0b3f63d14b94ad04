"""Load a Hugging Face causal LM and its tokenizer from a local directory or a Hub id (as any
transformers tool does; offline mode is the user's choice), with one-line errors for the usual
mistakes (missing directory, unknown or uncached Hub id, no tokenizer, no weights)."""
from __future__ import annotations

import os
import re
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


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def source(path: str | Path) -> str:
    """``path`` as transformers should read it: a local directory, or a Hub id; else a one-line
    ModelError (a missing directory is not mistaken for a Hub id: ids have no ./ or leading /)."""
    text = str(path)
    if Path(text).exists():
        return str(Path(text).resolve())
    if text.startswith((".", "/", "~")) or os.sep in text.replace("/", "", 1) or not HUB_ID.match(text):
        raise ModelError(f"model directory '{text}' does not exist")
    return text


def _hub_error(what: str, name: str, e: Exception) -> ModelError:
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    if offline:
        return ModelError(f"{what} '{name}' is neither a local directory nor in the Hugging Face cache, and offline "
                          f"mode is on (HF_HUB_OFFLINE); download it first or give a local directory")
    return ModelError(f"{what} '{name}': not a local directory, and loading it from the Hub failed "
                      f"({str(e).splitlines()[0][:160]})")


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    src = source(path)
    try:
        tok = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError, TypeError) as e:
        if not Path(src).exists():
            raise _hub_error("tokenizer", src, e) from None
        raise ModelError(f"model directory '{path}' has no usable tokenizer ({str(e).splitlines()[0][:160]})") from None
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelError(f"tokenizer in '{path}' has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(path: str | Path, dtype: str = "float32", device: str = "cpu"):
    """A causal LM from a local directory. A directory holding a LoRA adapter
    (``adapter_config.json``, as groupo's LoRA checkpoints do) is loaded onto its base
    model with ``peft`` (imported only then), trainable."""
    from transformers import AutoModelForCausalLM

    src = source(path)
    local = Path(src).exists()
    if local and (Path(src) / "adapter_config.json").exists():
        return _load_adapter(Path(src), dtype, device)
    if local and not (Path(src) / "config.json").exists():
        raise ModelError(f"'{path}' is not a Hugging Face model directory (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=DTYPES[dtype])
    except (OSError, ValueError) as e:
        if not local:
            raise _hub_error("model", src, e) from None
        raise ModelError(f"cannot load the model in '{path}' ({str(e).splitlines()[0][:160]})") from None
    return model.to(pick_device(device) if isinstance(device, str) else device)


def _peft():
    try:
        import peft
    except ImportError:
        raise ModelError("LoRA needs peft: pip install 'groupo[lora]'") from None
    return peft


def _load_adapter(path: Path, dtype: str, device):
    import json

    peft = _peft()
    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base or not Path(base).exists():
        raise ModelError(f"LoRA adapter '{path}': its base model '{base}' is not a local directory")
    model = load_model(base, dtype, device)
    return peft.PeftModel.from_pretrained(model, str(path), is_trainable=True)


def add_lora(model, r: int, alpha: float, dropout: float, targets: str):
    """Wrap ``model`` with fresh LoRA adapters (Hu et al., arXiv 2106.09685) via peft;
    only the adapters train. ``targets``: "all-linear" (peft's choice of every linear
    layer but the output head) or a comma-separated list of module names."""
    peft = _peft()
    target = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target, task_type="CAUSAL_LM")
    try:
        return peft.get_peft_model(model, cfg)
    except ValueError as e:
        raise ModelError(f"model.lora_targets={targets!r}: {str(e).splitlines()[0][:160]}") from None


def is_lora(model) -> bool:
    return hasattr(model, "peft_config")


class AdapterOff:
    """The base model of a LoRA policy (adapters disabled), used as the frozen KL
    reference without a second copy of the weights."""

    def __init__(self, model):
        self.model = model
        self.config = model.config

    def __call__(self, **kw):
        with self.model.disable_adapter():
            return self.model(**kw)

    def parameters(self):
        return self.model.parameters()

    def get_decoder(self):
        return _AdapterOffPart(self.model, self.model.get_decoder())

    def get_output_embeddings(self):
        return _AdapterOffPart(self.model, self.model.get_output_embeddings())


class _AdapterOffPart:
    def __init__(self, peft_model, part):
        self.peft_model, self.part = peft_model, part

    def __call__(self, *a, **kw):
        with self.peft_model.disable_adapter():
            return self.part(*a, **kw)

    def __getattr__(self, name):        # config, layers, modules(): read from the wrapped part
        return getattr(self.part, name)


def export_merged(model, tokenizer, out: str | Path) -> Path:
    """Save a plain transformers model: LoRA adapters merged into the weights."""
    out = Path(out)
    if is_lora(model):
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


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
