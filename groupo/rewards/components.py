"""Reward components (axis ``reward``): ``__call__(completions, items, prompts=None)``
returns one ``float`` or ``None`` (= skip, TRL/open-r1 convention) per completion.

* ``correct``: ``groupo.verify`` of each completion against ``item.answer`` with
  ``item.kind``; math items are scored in one parallel batch (``math_equal_many``), and so are
  reasoning-gym items (``rgpool.score_many``, their scorers run only in worker processes).
* ``format``: 1.0 if ``re.search(pattern, completion, re.DOTALL)`` matches, else 0.0.
  The default ``^\\s*<answer>.+?</answer>\\s*$`` is anchored, so it asks that the whole
  completion be one answer tag (open-r1 ``format_reward`` / TRL ``think_format_reward``
  style, TASKS.md §5.3); write an unanchored pattern to reward a tag anywhere.
* ``python`` / ``callable``: your own functions with TRL's signature (rewards/user.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from ..protocols import Reward
from ..registry import register
from ..types import Item
from . import mathpool, rgpool
from .extract import Mode
from .verify import extract_for, verify


def _check_lengths(name: str, completions, items) -> None:
    if len(completions) != len(items):
        raise ValueError(f"reward '{name}': {len(completions)} completions but {len(items)} items")


@register("reward", "correct")
@dataclass(frozen=True)
class Correct(Reward):
    """Task correctness in [0, 1]; ``extract`` = extraction mode (auto, tag, boxed, hash,
    last_number; ``auto`` is each kind's default). ``timeout``: seconds per item for math-verify
    and for reasoning-gym's scorers."""

    extract: Mode = "auto"
    timeout: float = 5.0

    def __call__(self, completions: list[str], items: list[Item], prompts: list[str] | None = None,
                 completion_ids=None, state=None) -> list[float | None]:
        _check_lengths("correct", completions, items)
        out: list[float | None] = [0.0] * len(completions)
        math_rows = [i for i, it in enumerate(items) if it.kind == "math"]
        if math_rows:
            preds = [completions[i] if isinstance(completions[i], str) else "" for i in math_rows]
            golds = [str(items[i].answer) for i in math_rows]
            for i, s in zip(math_rows, mathpool.math_equal_many(preds, golds, self.timeout)):
                out[i] = float(s)
        rg_rows = [i for i, it in enumerate(items) if it.kind == "reasoning_gym" and "reasoning_gym" in it.meta]
        if rg_rows:
            spans = [extract_for(completions[i], "reasoning_gym", self.extract) if isinstance(completions[i], str)
                     else None for i in rg_rows]
            for i, s in zip(rg_rows, rgpool.score_many(spans, [items[i].meta for i in rg_rows], self.timeout)):
                out[i] = float(s)
        done = set(math_rows) | set(rg_rows)
        for i, (c, it) in enumerate(zip(completions, items)):
            if i not in done:
                out[i] = verify(c, it.answer, it.kind, mode=self.extract, meta=it.meta)
        return out


@register("reward", "format")
@dataclass(frozen=True)
class Format(Reward):
    """1.0 if ``re.search(pattern, completion, re.DOTALL)`` matches, else 0.0."""

    pattern: str = r"^\s*<answer>.+?</answer>\s*$"

    def __post_init__(self):
        try:
            re.compile(self.pattern)
        except re.error as e:
            raise ValueError(f"format.pattern is not a valid regular expression ({e})") from None

    @cached_property
    def _regex(self) -> re.Pattern:
        return re.compile(self.pattern, re.DOTALL)

    def __call__(self, completions: list[str], items: list[Item], prompts: list[str] | None = None,
                 completion_ids=None, state=None) -> list[float | None]:
        _check_lengths("format", completions, items)
        rx = self._regex
        return [1.0 if isinstance(c, str) and rx.search(c) else 0.0 for c in completions]
