"""Base models worth doing RL on, built offline: ``groupo base build NAME``.

A base spec (``groupo/recipes/base/NAME.yaml``) names a model size, a task with step-by-step
solutions and a supervised pre-training budget. Building it writes a random-init Llama-style model
with the character tokenizer (model/tiny.py) and trains it on the task's traces
(``pretrain.target``, e.g. ``"{trace}<answer>{answer}</answer>"``: the supervised warm start of
train/warmstart.py) for ``pretrain.steps`` steps on ``pretrain.levels`` only, so the held-out
levels never appear in its corpus. Single-threaded, so a rebuild gives the same weights.

The result is cached by content: ``$XDG_CACHE_HOME/groupo/base/NAME-<hash>`` (``~/.cache`` by
default), the hash covering the spec and the source of the code that builds it, so a changed spec
or builder builds anew and an unchanged one is built once. ``model.path=base:NAME`` in a recipe
uses it (built on first use). ``info.json`` next to the weights records the spec, the build time
and the per-level accuracy measured at the end of the build.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import yaml

from ..config import ConfigError

SPECS = Path(__file__).resolve().parent.parent / "recipes" / "base"
CODE = ("model/tiny.py", "model/pretrain.py", "train/warmstart.py", "tasks/chains.py", "tasks/base.py")


def names() -> list[str]:
    return sorted(p.stem for p in SPECS.glob("*.yaml"))


def spec(name: str) -> dict:
    path = SPECS / f"{name}.yaml"
    if not path.is_file():
        from ..registry import closest

        raise ConfigError(f"unknown base model '{name}'{closest(name, names())}; known: {', '.join(names())}")
    return yaml.safe_load(path.read_text())


def digest(name: str) -> str:
    """Hash of the spec and of the builder's source: a change in either means another model."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.blake2b(digest_size=6)
    h.update(json.dumps(spec(name), sort_keys=True).encode())
    for rel in CODE:
        h.update((root / rel).read_bytes())
    return h.hexdigest()


def path(name: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "groupo" / "base" / f"{name}-{digest(name)}"


def resolve(model_path: str, say=print) -> str:
    """``base:NAME`` -> the built base model's directory (built now if it is not yet)."""
    if not str(model_path).startswith("base:"):
        return model_path
    name = str(model_path)[5:]
    out = path(name)
    if not (out / "info.json").exists():
        say(f"base model {name}: not built yet, building it into {out} (once)")
        build(name, say=say)
    return str(out)


def build(name: str, say=print) -> Path:
    """Build (or find) the base model ``name``; returns its directory."""
    import torch

    from ..config import load_config
    from ..eval.evaluate import evaluate
    from ..model.load import eos_ids, load_model, load_tokenizer
    from ..model.tiny import build_tiny
    from ..train.warmstart import warm_start

    out = path(name)
    if (out / "info.json").exists():
        return out
    s = spec(name)
    m, p = s.get("model", {}), s.get("pretrain", {})
    cfg = load_config(None, [], base={"model": {"path": "unused"}, "task": s["task"], "template": s.get("template", "plain"),
                                      "warmstart": p, "seed": int(s.get("seed", 0)),
                                      "generation": {"max_new_tokens": int(s.get("max_new_tokens", 128))},
                                      "eval": {"n": int(s.get("eval_n", 240))}})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                         # one thread: the same weights on every rebuild
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        build_tiny(tmp, seed=cfg.seed, hidden=int(m.get("hidden", 128)), layers=int(m.get("layers", 4)),
                   heads=int(m.get("heads", 4)))
        tok, model = load_tokenizer(tmp), load_model(tmp)
        torch.manual_seed(cfg.seed)
        say(f"base model {name}: {sum(x.numel() for x in model.parameters()) / 1e6:.2f}M parameters, "
            f"{cfg.warmstart.steps} pre-training steps on levels {list(cfg.warmstart.levels)}")
        warm_start(model, tok, cfg.task, cfg.template, cfg.warmstart, eos_ids(tok, model),
                   cfg.generation.max_new_tokens, cfg.seed)
        built_s = time.perf_counter() - t0
        res = evaluate(model, tok, cfg.task.eval_items()[: cfg.eval.n], cfg.template, eos_ids(tok, model),
                       cfg.generation.max_new_tokens, batch_size=120, seed=cfg.seed)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        weights = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
        info = {"name": name, "spec": s, "digest": digest(name), "pretrain_s": round(built_s, 1),
                "weights_sha256": weights, "accuracy": res["accuracy"],
                "per_level": {k: v["accuracy"] for k, v in res["per_group"].items()}}
        (tmp / "info.json").write_text(json.dumps(info, indent=1))
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        torch.set_num_threads(threads)
    say(f"base model {name}: built in {built_s:.0f} s; greedy accuracy per level "
        f"{info['per_level']}; {out}")
    return out
