"""``jsonl``: a task read from a JSON-lines file (one JSON object per line).

Conventions:
* GSM8K (Cobbe et al. 2021, arXiv 2110.14168; TASKS.md §5.2): if the answer contains
  ``####``, the gold is the text after the last ``####``, stripped, commas removed
  (``answer.split("####")[-1].strip().replace(",", "")``, as verl and lm-eval do).
* The eval set is ``eval_path`` if given, else a seeded ``eval_fraction`` split of
  ``path``; only its first ``eval_size`` items are returned (``eval_size=0``: all),
  but the whole held-out part stays out of training. Training items whose
  normalised question appears in the eval file/split are dropped (TASKS.md §1.5),
  and eval items are unique by normalised question.
* Every column other than the question and answer columns goes to ``Item.meta``
  (passed on to user reward functions as TRL-style keyword columns).
* Errors are ``TaskError`` one-liners with a ``file:line:`` prefix.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from functools import cached_property

from ..registry import closest, register
from ..rewards.verify import Kind
from ..types import Item
from .base import Task, TaskError, dedupe, normalize_question



def gsm8k_gold(answer: str) -> str:
    """The gold of a GSM8K-style answer: text after the last '####', commas removed."""
    if "####" in answer:
        return answer.split("####")[-1].strip().replace(",", "")
    return answer.strip()


def json_object(where: str, line: str, error=TaskError) -> dict:
    """One JSONL line as a dict, or ``error("file:line: ...")``."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


@register("task", "jsonl")
@dataclass(frozen=True)
class Jsonl(Task):
    path: str = ""
    eval_path: str = ""
    eval_fraction: float = 0.1
    question_key: str = "question"
    answer_key: str = "answer"
    group_key: str = ""
    kind: Kind = "number"

    def __post_init__(self):
        super().__post_init__()
        if not self.path:
            raise TaskError("task jsonl needs 'path' (a .jsonl file with one JSON object per line)")
        if not 0.0 <= float(self.eval_fraction) < 1.0:
            raise TaskError(f"eval_fraction must be in [0, 1), got {self.eval_fraction!r}")
        self._splits  # load now: data errors surface when the config is built, before any model loads

    # -- loading --------------------------------------------------------------------
    def _load(self, path: str) -> list[Item]:
        if not os.path.isfile(path):
            raise TaskError(f"{path}: file not found")
        items = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                items.append(self._row(path, lineno, line))
        if not items:
            raise TaskError(f"{path}: empty file (expected one JSON object per line)")
        return items

    def _row(self, path: str, lineno: int, line: str) -> Item:
        where = f"{path}:{lineno}"
        row = json_object(where, line)
        keys = [self.question_key, self.answer_key] + ([self.group_key] if self.group_key else [])
        for key in keys:
            if key not in row:
                raise TaskError(f"{where}: missing key '{key}'{closest(key, row)}")
        question, answer = row[self.question_key], row[self.answer_key]
        if not isinstance(question, str):
            raise TaskError(f"{where}: '{self.question_key}' must be a string, got {type(question).__name__}")
        if isinstance(answer, (dict, list)) or answer is None:
            raise TaskError(f"{where}: '{self.answer_key}' must be a string or a number")
        group = str(row[self.group_key]) if self.group_key else "all"
        meta = {k: v for k, v in row.items() if k not in (self.question_key, self.answer_key)}
        return Item(question, gsm8k_gold(str(answer)), group, self.kind, meta)

    @cached_property
    def _splits(self) -> tuple[tuple[Item, ...], tuple[Item, ...]]:
        """(train, held-out eval), both deduplicated; train excludes eval questions."""
        rows = self._load(self.path)
        if self.eval_path:
            held = self._load(self.eval_path)
            train = rows
        else:
            order = list(range(len(rows)))
            random.Random(f"groupo-jsonl-split-{self.seed}").shuffle(order)
            n_eval = round(self.eval_fraction * len(rows))
            if self.eval_fraction > 0 and n_eval == 0 and len(rows) > 1:
                n_eval = 1
            held = [rows[i] for i in order[:n_eval]]
            train = [rows[i] for i in sorted(order[n_eval:])]
        held = dedupe(held)
        keys = {normalize_question(it.question) for it in held}
        train = [it for it in train if normalize_question(it.question) not in keys]
        if not train:
            raise TaskError(f"{self.path}: no training items left after removing the eval questions")
        return tuple(train), tuple(held)

    # -- Task API -------------------------------------------------------------------
    def _build_eval(self) -> list[Item]:
        held = self._splits[1]
        return list(held[: self.eval_size] if self.eval_size > 0 else held)

    @cached_property
    def eval_keys(self) -> frozenset[str]:
        return frozenset(normalize_question(it.question) for it in self._splits[1])

    def train_items(self) -> list[Item]:
        return list(self._splits[0])

    def _build_pool(self, size: int, seed: int) -> list[Item]:
        """All training items (file order) if ``size`` is 0 or covers them, else the
        first ``size`` after a shuffle seeded by (task seed, seed)."""
        train = dedupe(self._splits[0])
        if size <= 0 or size >= len(train):
            return train
        random.Random(f"groupo-jsonl-pool-{self.seed}-{seed}").shuffle(train)
        return train[:size]

    def sample_train(self, rng: random.Random) -> Item:
        train = self._splits[0]
        return train[rng.randrange(len(train))]

    def describe(self) -> str:
        train, held = self._splits
        src = self.eval_path or f"{self.eval_fraction:g} split"
        return (f"jsonl: {self.path} ({len(train)} train, {len(self._eval)} eval from {src}, "
                f"kind {self.kind})")
