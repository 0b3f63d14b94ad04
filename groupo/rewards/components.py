"""Reward components (axis ``reward``): ``__call__(completions, items, prompts=None)``
returns one ``float`` or ``None`` (= skip, TRL/open-r1 convention) per completion.

* ``correct``: ``groupo.verify`` of each completion against ``item.answer`` with
  ``item.kind``; math items are scored in one parallel batch (``math_equal_many``).
* ``format``: 1.0 if ``re.search(pattern, completion, re.DOTALL)`` matches, else 0.0.
  The default ``^\\s*<answer>.+?</answer>\\s*$`` is anchored, so it asks that the whole
  completion be one answer tag (open-r1 ``format_reward`` / TRL ``think_format_reward``
  style, TASKS.md §5.3); write an unanchored pattern to reward a tag anywhere.
* ``python``: a user's reward function with TRL's signature
  ``fn(completions, prompts=None, **columns) -> list[float | None]`` (TRL
  ``GRPOTrainer`` ``reward_funcs`` convention); columns are ``answer``, ``question``
  and every ``Item.meta`` key, each a list aligned with ``completions``. If ``fn``
  takes no ``**kwargs``, only the columns it names are passed. The file is the
  user's own trusted code and is imported as such.
"""
from __future__ import annotations

import importlib.util
import inspect
import math
import os
import re
from dataclasses import dataclass
from functools import cached_property

from ..protocols import Reward
from ..registry import register
from ..types import Item


class RewardError(ValueError):
    """A user reward function broke its contract (one line for the user, exit code 2)."""
from . import mathpool
from .extract import Mode
from .verify import verify


def _check_lengths(name: str, completions, items) -> None:
    if len(completions) != len(items):
        raise ValueError(f"reward '{name}': {len(completions)} completions but {len(items)} items")


@register("reward", "correct")
@dataclass(frozen=True)
class Correct(Reward):
    """Task correctness in [0, 1]; ``extract`` = extraction mode (auto, tag, boxed, hash,
    last_number; ``auto`` is each kind's default). ``timeout``: math-verify seconds."""

    extract: Mode = "auto"
    timeout: float = 5.0

    def __call__(self, completions: list[str], items: list[Item], prompts: list[str] | None = None) -> list[float | None]:
        _check_lengths("correct", completions, items)
        out: list[float | None] = [0.0] * len(completions)
        math_rows = [i for i, it in enumerate(items) if it.kind == "math"]
        if math_rows:
            preds = [completions[i] if isinstance(completions[i], str) else "" for i in math_rows]
            golds = [str(items[i].answer) for i in math_rows]
            for i, s in zip(math_rows, mathpool.math_equal_many(preds, golds, self.timeout)):
                out[i] = float(s)
        for i, (c, it) in enumerate(zip(completions, items)):
            if it.kind != "math":
                out[i] = verify(c, it.answer, it.kind, mode=self.extract)
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

    def __call__(self, completions: list[str], items: list[Item], prompts: list[str] | None = None) -> list[float | None]:
        _check_lengths("format", completions, items)
        rx = self._regex
        return [1.0 if isinstance(c, str) and rx.search(c) else 0.0 for c in completions]


@register("reward", "python")
@dataclass(frozen=True)
class PythonReward(Reward):
    """A reward function ``function`` from the Python file ``path`` (TRL signature)."""

    path: str = ""
    function: str = "reward"

    def __post_init__(self):
        self._fn  # load now: a missing file or function is reported when the config is built

    @cached_property
    def _fn(self):
        from ..tasks.base import TaskError

        if not self.path:
            raise TaskError("reward 'python' needs 'path' (a .py file defining the reward function)")
        if not os.path.isfile(self.path):
            raise TaskError(f"{self.path}: reward file not found")
        name = "groupo_user_reward_" + re.sub(r"\W", "_", os.path.abspath(self.path))
        spec = importlib.util.spec_from_file_location(name, self.path)
        if spec is None or spec.loader is None:
            raise TaskError(f"{self.path}: cannot import this file as Python")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # the user's own code, trusted like a config file
        fn = getattr(module, self.function, None)
        if fn is None or not callable(fn):
            found = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
            raise TaskError(f"{self.path}: no function '{self.function}' (callables: {', '.join(found) or 'none'})")
        return fn

    @cached_property
    def _accepts(self) -> set[str] | None:
        """Parameter names of the function, or None if it takes ``**kwargs``."""
        params = inspect.signature(self._fn).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params}

    def __call__(self, completions: list[str], items: list[Item], prompts: list[str] | None = None) -> list[float | None]:
        _check_lengths("python", completions, items)
        where = f"{self.path}:{self.function}"
        columns: dict[str, list] = {}
        for key in dict.fromkeys(k for it in items for k in it.meta):
            columns[key] = [it.meta.get(key) for it in items]
        columns["answer"] = [it.answer for it in items]
        columns["question"] = [it.question for it in items]
        kwargs = {"completions": list(completions), "prompts": prompts, **columns}
        if self._accepts is not None:
            kwargs = {k: v for k, v in kwargs.items() if k in self._accepts}
        values = self._fn(**kwargs)
        try:
            values = list(values)
        except TypeError:
            raise RewardError(f"{where} returned {type(values).__name__}, expected a list of floats") from None
        if len(values) != len(completions):
            raise RewardError(f"{where} returned {len(values)} values for {len(completions)} completions")
        out: list[float | None] = []
        for i, v in enumerate(values):
            if v is None:
                out.append(None)
                continue
            try:
                if isinstance(v, (str, bytes)):
                    raise TypeError
                x = float(v)
            except (TypeError, ValueError):
                raise RewardError(f"{where} returned a non-numeric value {v!r} at index {i}") from None
            out.append(x if math.isfinite(x) else None)  # NaN or +-inf: the row is skipped (reward/skipped)
        return out
