"""``dataset``: a task from your own data, as TRL reads it.

``path`` is a JSONL/JSON file, a parquet or CSV file, a ``datasets`` ``save_to_disk`` directory,
or a Hugging Face Hub dataset id (``subset``, ``split``). The prompt column (``prompt_key``,
default ``prompt``) holds a string or a list of chat messages (TRL's conversational format); the
gold answer column (``answer_key``; ``auto``: the first of ``ANSWER_KEYS`` the data has, else none)
is what the ``correct`` reward and evaluation check (``answer_key=""``: no gold column, for reward
functions that read other columns). Every column reaches reward
functions under its own name. The eval set: ``eval_path`` (same forms), else ``eval_split`` of the
same dataset (e.g. ``test``), else a seeded ``eval_fraction`` split.

JSON lines are read by groupo itself (errors name file and line); everything else goes through
the ``datasets`` library (``pip install groupo[data]``), whose rows are named ``source row i``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..registry import register
from ..rewards.verify import Kind
from ..types import Item
from .base import TaskError
from .jsonl import json_object, read_lines
from .rows import RowTask

ANSWER_KEYS = ("answer", "solution", "ground_truth", "target", "final_answer")   # TRL datasets' usual names
FILE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".arrow": "arrow"}


def _datasets(why: str):
    try:
        import datasets
    except ImportError:
        raise TaskError(f"{why} needs the datasets library: pip install 'groupo[data]'") from None
    return datasets


def read_rows(source: str, split: str = "train", subset: str = "") -> list[dict]:
    """The rows of ``source`` (see the module docstring) as dicts, in order."""
    low = source.lower()
    if os.path.isfile(source) and low.endswith((".jsonl", ".json")):
        with open(source, "rb") as f:
            head = f.read(64).lstrip(b"\xef\xbb\xbf").lstrip()
        if head.startswith(b"["):           # a JSON array of objects
            return _json_array(source)
        return [json_object(f"{source}:{n}", line) for n, line in read_lines(source)]
    ext = os.path.splitext(low)[1]
    if os.path.isfile(source) and ext in FILE_FORMATS:
        ds = _datasets(f"reading {source}")
        kw = {"delimiter": "\t"} if ext == ".tsv" else {}
        data = ds.load_dataset(FILE_FORMATS[ext], data_files=source, split="train", **kw)
    elif os.path.isdir(source):
        ds = _datasets(f"reading the directory {source}")
        try:
            data = ds.load_from_disk(source)
        except FileNotFoundError:
            raise TaskError(f"{source}: not a datasets save_to_disk directory (no dataset_info.json / state.json)") from None
        if isinstance(data, ds.DatasetDict):
            data = _split(data, split, source)
    elif os.path.exists(source):
        raise TaskError(f"{source}: unknown data format (use .jsonl, .json, .parquet, .csv, .tsv, .arrow "
                        f"or a save_to_disk directory)")
    else:
        data = _hub(source, split, subset)
    return [dict(r) for r in data]


def _json_array(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            rows = json.load(f)
    except UnicodeDecodeError:
        raise TaskError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    except json.JSONDecodeError as e:
        raise TaskError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise TaskError(f"{path}: element {bad} of the JSON array is not an object")
    return rows


def _split(data, split: str, source: str):
    if split not in data:
        raise TaskError(f"{source}: no split '{split}' (splits: {', '.join(data)}); set task.split")
    return data[split]


def _hub(name: str, split: str, subset: str):
    """A Hub dataset through ``datasets.load_dataset``; offline without a cached copy: one line."""
    ds = _datasets(f"the Hub dataset '{name}'")
    try:
        return ds.load_dataset(name, subset or None, split=split)
    except ValueError as e:
        if "split" in str(e).lower():
            raise TaskError(f"{name}: no split '{split}' ({str(e).splitlines()[0][:160]})") from None
        raise TaskError(f"{name}: {str(e).splitlines()[0][:200]}") from None
    except (FileNotFoundError, ConnectionError, OSError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = " (offline mode is on and it is not in the local cache)" if offline else ""
        raise TaskError(f"task.path={name}: not a local file or directory, and not loadable as a Hub dataset"
                        f"{hint}: {str(e).splitlines()[0][:160]}") from None


@register("task", "dataset")
@dataclass(frozen=True)
class Dataset(RowTask):
    """Your own data (file, save_to_disk directory or Hub dataset id), prompts as text or chat
    messages, every column passed to reward functions (TRL's dataset conventions)."""

    split: str = "train"
    subset: str = ""
    eval_split: str = ""
    prompt_key: str = "prompt"
    answer_key: str = "auto"
    group_key: str = ""
    kind: Kind = "math"

    def _load(self, path: str, split: str | None = None) -> list[Item]:
        if os.path.isfile(path) and path.lower().endswith(".jsonl"):     # errors name the line
            rows = [(f"{path}:{n}", json_object(f"{path}:{n}", line)) for n, line in read_lines(path)]
        else:
            rows = [(f"{path} row {i}", r) for i, r in enumerate(read_rows(path, split or self.split, self.subset))]
        if not rows:
            raise TaskError(f"{path}: no rows")
        answer = self.answer_key
        if answer == "auto":
            answer = next((k for k in ANSWER_KEYS if k in rows[0][1]), "")
        return [self.item(where, row, self.prompt_key, answer, self.group_key, self.kind) for where, row in rows]

    def _held_out(self, rows):
        if self.eval_path:
            return rows, self._load(self.eval_path)
        if self.eval_split:
            return rows, self._load(self.path, self.eval_split)
        return None

    def check_config(self, cfg) -> None:
        if not self._splits[0][0].answer and any(c.component_name == "correct" for c in cfg.rewards.components):
            raise ValueError(f"reward 'correct' needs a gold answer column, and {self.path} has none of "
                             f"{', '.join(ANSWER_KEYS)} (task.answer_key names it); or use your own reward function")

    def describe(self) -> str:
        train, held = self._splits
        src = self.eval_path or (f"split {self.eval_split}" if self.eval_split else f"{self.eval_fraction:g} split")
        return f"dataset: {self.path} ({len(train)} train, {len(self._eval)} eval from {src}, kind {self.kind})"
