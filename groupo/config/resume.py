"""A resumed run is the same run: its saved ``config.yaml`` wins.

``groupo train --out RUN --resume`` needs nothing else. Settings given on resume (a recipe, or
``key=value`` overrides) are compared with the saved configuration: only ``SAFE`` keys may change
(extend ``train.steps``, logging, checkpoint frequency, evaluation cadence, threads, a rollout
server's address); any other difference is refused with one line naming the key. Accepted changes
are written to the run's ``config.yaml`` and recorded in ``history.jsonl``.
"""
from __future__ import annotations

import fnmatch
import json
import sys
import time
from pathlib import Path

import yaml

from .recipes import ConfigError

# keys that may change when a run is resumed: they change how it is run or reported, not what is learnt
SAFE = ("train.steps", "log.*", "checkpoint.every", "checkpoint.keep", "eval.every", "eval.batch_size",
        "model.threads", "out", "rollout.url", "rollout.timeout_s")


def flatten(d, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values (a reward list is one value per index)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out.update(flatten(x, f"{key}.{i}."))
            out[f"{key}.#"] = len(v)
        else:
            out[key] = v
    return out


def saved_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"--resume: {path} not found (is '{run_dir}' a groupo run directory?)")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"--resume: cannot read {path} ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--resume: {path} is not a configuration mapping")
    return data


def is_safe(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pat) for pat in SAFE)


def changes(saved_raw: dict, new_raw: dict) -> dict:
    """{key: (saved value, new value)} where the two resolved configurations differ."""
    a, b = flatten(saved_raw), flatten(new_raw)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check(saved_raw: dict, new_raw: dict, run_dir: Path) -> dict:
    """The safe changes; a one-line ConfigError for the first other one."""
    diff = changes(saved_raw, new_raw)
    for key, (old, new) in diff.items():
        if not is_safe(key):
            raise ConfigError(f"--resume: '{key}' is {new!r} here but {old!r} in {Path(run_dir) / 'config.yaml'}; "
                              f"a resumed run keeps its settings (resume with just `--out {run_dir} --resume`; "
                              f"only {', '.join(SAFE)} may change)")
    return diff


def record(run_dir: Path, event: str, step: int | None = None, changed: dict | None = None) -> None:
    """Append one line to ``RUN/history.jsonl``: what happened to the run, when, by which command
    (the first process only, under torchrun)."""
    import os

    if os.environ.get("RANK", "0") != "0":
        return
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "event": event, "argv": sys.argv[1:]}
    if step is not None:
        row["step"] = step
    if changed:
        row["changes"] = {k: {"from": a, "to": b} for k, (a, b) in changed.items()}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / "history.jsonl", "a") as f:
        f.write(json.dumps(row, default=str) + "\n")
