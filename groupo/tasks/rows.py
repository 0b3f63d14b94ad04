"""Tasks read from rows of data (a JSONL file, a dataset): rows -> items, train/eval splits.

* A row's prompt is a string or a list of chat messages ``[{"role": ..., "content": ...}]``
  (TRL's conversational format); messages go to ``Item.messages`` and are rendered with the
  tokenizer's chat template.
* The gold answer follows the GSM8K convention (Cobbe et al. 2021, arXiv 2110.14168; TASKS.md
  §5.2): if it contains ``####``, the gold is the text after the last ``####``, stripped, commas
  removed. An empty gold is an error naming the row.
* Every column goes to ``Item.meta`` under its own name (the prompt and answer columns too), so
  reward functions receive them as TRL's keyword columns.
* The eval set is ``eval_path`` (or a split of the same data) if given, else a seeded
  ``eval_fraction`` split; only its first ``eval_size`` items are returned (0: all), but the whole
  held-out part stays out of training. Training items whose normalised question is in the eval
  set are dropped (TASKS.md §1.5); eval items are unique by normalised question.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

from ..registry import closest
from ..types import Item
from .base import Task, TaskError, dedupe, normalize_question

ROLES = ("system", "user", "assistant", "tool", "developer")


def gsm8k_gold(answer: str) -> str:
    """The gold of a GSM8K-style answer: text after the last '####', commas removed."""
    if "####" in answer:
        return answer.split("####")[-1].strip().replace(",", "")
    return answer.strip()


def messages_of(where: str, key: str, value) -> tuple[dict, ...]:
    """A conversational prompt as a tuple of {role, content} dicts, or a one-line TaskError."""
    bad = f"{where}: '{key}' must be a string or a list of {{role, content}} messages"
    if not isinstance(value, list) or not value:
        raise TaskError(bad + f", got {type(value).__name__}")
    out = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            raise TaskError(f"{bad}; message {len(out)} is {str(m)[:80]!r} (roles: {', '.join(ROLES)})")
        out.append({"role": m["role"], "content": m["content"]})
    return tuple(out)


def question_text(messages) -> str:
    """The text of a conversation, for dedupe keys and reports: 'role: content' lines."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


@dataclass(frozen=True)
class RowTask(Task):
    """Shared machinery; subclasses read ``path``/``eval_path`` into items (``_load``)."""

    path: str = ""
    eval_path: str = ""
    eval_fraction: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if not self.path:
            raise TaskError(f"task {self.component_name} needs 'path'")
        if not 0.0 <= float(self.eval_fraction) < 1.0:
            raise TaskError(f"eval_fraction must be in [0, 1), got {self.eval_fraction!r}")
        self._splits  # load now: data errors surface when the config is built, before any model loads

    def _load(self, path: str) -> list[Item]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _held_out(self, rows: list[Item]) -> tuple[list[Item], list[Item]] | None:
        """(train, eval) from a separate eval source, or None for a seeded fraction of ``rows``."""
        if self.eval_path:
            return rows, self._load(self.eval_path)
        return None

    def item(self, where: str, row: dict, prompt_key: str, answer_key: str, group_key: str, kind: str) -> Item:
        """One row -> an Item; errors name ``where`` (``file:line`` or ``source row i``)."""
        keys = [prompt_key] + ([answer_key] if answer_key else []) + ([group_key] if group_key else [])
        for key in keys:
            if key not in row:
                raise TaskError(f"{where}: missing key '{key}'{closest(key, row)}")
        prompt, messages = row[prompt_key], ()
        if not isinstance(prompt, str):
            messages = messages_of(where, prompt_key, prompt)
            prompt = question_text(messages)
        answer = ""
        if answer_key:
            raw = row[answer_key]
            if isinstance(raw, (dict, list)) or raw is None or isinstance(raw, bool):
                raise TaskError(f"{where}: '{answer_key}' must be a string or a number, got {raw!r:.60}")
            answer = gsm8k_gold(str(raw))
            if not answer:
                raise TaskError(f"{where}: empty gold answer in '{answer_key}' ({str(raw)!r:.60})")
        group = str(row[group_key]) if group_key else "all"
        return Item(prompt, answer, group, kind, dict(row), messages)

    @cached_property
    def _splits(self) -> tuple[tuple[Item, ...], tuple[Item, ...]]:
        """(train, held-out eval), both deduplicated; train excludes eval questions."""
        rows = self._load(self.path)
        given = self._held_out(rows)
        if given is not None:
            train, held = given
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
