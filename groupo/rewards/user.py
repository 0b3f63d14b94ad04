"""Your own reward functions, called as TRL's ``GRPOTrainer`` calls ``reward_funcs``.

    fn(prompts, completions, completion_ids, trainer_state, **columns) -> list[float | None]

* ``prompts``: the prompt the model saw (a string), or, for a conversational dataset, its chat
  messages; ``completions``: strings, or for conversational prompts ``[{"role": "assistant",
  "content": ...}]`` per completion (an assistant prefill is prepended, as TRL does);
  ``completion_ids``: the generated token ids (EOS included); ``trainer_state``: ``global_step``
  and ``max_steps``; ``columns``: every dataset column under its own name, plus ``question`` and
  ``answer`` (the task's question text and gold answer).
* A function without ``**kwargs`` gets only the arguments it names; ``async def`` functions are
  awaited; ``None`` means "this reward does not apply to this row" (NaN in the reward table).
* ``python``: the function ``function`` of the file ``path`` (imported once, like a plug-in);
  ``callable``: a function handed to ``groupo.Trainer(reward_funcs=[...])`` in this process
  (``ref`` names it; a run started this way resumes from Python with the same functions).
* ``check(...)``: a dry call on one row before the model loads, so a signature that does not
  match the data is one line naming the function and the columns there are.
"""
from __future__ import annotations

import asyncio
import inspect
import math
from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace

from ..protocols import Reward
from ..registry import register
from ..types import Item

LIVE: dict[str, object] = {}      # callables handed over in this process: ref -> function


class RewardError(ValueError):
    """A user reward function broke its contract (one line for the user, exit code 2)."""


def trainer_state(step: int = 0, max_steps: int = 0) -> SimpleNamespace:
    """The subset of TRL's ``TrainerState`` reward functions read."""
    return SimpleNamespace(global_step=step, max_steps=max_steps, epoch=None)


def _conversational(completions, items):
    """TRL's completion format for conversational prompts: a list with one assistant message."""
    out = []
    for c, it in zip(completions, items):
        if it.messages:
            pre = it.messages[-1]["content"] if it.messages[-1]["role"] == "assistant" else ""
            out.append([{"role": "assistant", "content": pre + c}])
        else:
            out.append(c)
    return out


class UserReward:
    """The TRL calling convention, shared by ``python`` and ``callable`` rewards."""

    where: str = "reward"

    @cached_property
    def _accepts(self) -> set[str] | None:
        """Parameter names of the function, or None if it takes ``**kwargs``."""
        params = inspect.signature(self._fn).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params}

    def _kwargs(self, completions, items, prompts, completion_ids, state) -> dict:
        columns: dict[str, list] = {}
        for key in dict.fromkeys(k for it in items for k in it.meta):
            columns[key] = [it.meta.get(key) for it in items]
        columns["answer"] = [it.answer for it in items]
        columns["question"] = [it.question for it in items]
        kw = {**columns, "completions": _conversational(list(completions), items),
              "prompts": [[dict(m) for m in it.messages] if it.messages else p
                          for it, p in zip(items, prompts or [None] * len(items))],
              "completion_ids": completion_ids, "trainer_state": state or trainer_state()}
        if self._accepts is not None:
            kw = {k: v for k, v in kw.items() if k in self._accepts}
        return kw

    def __call__(self, completions: list[str], items: list[Item], prompts: list[str] | None = None,
                 completion_ids: list | None = None, state=None) -> list[float | None]:
        if len(completions) != len(items):
            raise ValueError(f"reward '{self.where}': {len(completions)} completions but {len(items)} items")
        values = self._fn(**self._kwargs(completions, items, prompts, completion_ids, state))
        if inspect.isawaitable(values):
            values = asyncio.run(_await(values))
        try:
            values = list(values)
        except TypeError:
            raise RewardError(f"{self.where} returned {type(values).__name__}, expected a list of floats") from None
        if len(values) != len(completions):
            raise RewardError(f"{self.where} returned {len(values)} values for {len(completions)} completions")
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
                raise RewardError(f"{self.where} returned a non-numeric value {v!r} at index {i}") from None
            out.append(x if math.isfinite(x) else None)  # NaN or +-inf: the row is skipped (reward/skipped)
        return out

    def check(self, item: Item, prompt: str) -> None:
        """A dry call on one row with an empty completion: a signature that does not fit the data, or
        a function that fails, is one RewardError line (before any model loads)."""
        kw = self._kwargs([""], [item], [prompt], [[]], trainer_state())
        try:
            inspect.signature(self._fn).bind(**kw)
        except TypeError as e:
            cols = ", ".join(sorted(set(item.meta) | {"question", "answer"}))
            raise RewardError(f"{self.where}: {e} (the arguments are prompts, completions, completion_ids, "
                              f"trainer_state and the data's columns: {cols})") from None
        try:
            self([""], [item], [prompt], [[]], trainer_state())
        except RewardError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's code: one line naming it
            raise RewardError(f"{self.where} failed on a test call with an empty completion: "
                              f"{type(e).__name__}: {e}") from None


async def _await(x):
    return await x


@register("reward", "python")
@dataclass(frozen=True)
class PythonReward(UserReward, Reward):
    """A reward function ``function`` from the Python file ``path`` (TRL's signature)."""

    path: str = ""
    function: str = "reward"

    def __post_init__(self):
        self._fn  # load now: a missing file or function is reported when the config is built

    @property
    def where(self) -> str:
        return f"{self.path}:{self.function}"

    @cached_property
    def _fn(self):
        from ..plugins import PluginError, import_file
        from ..tasks.base import TaskError

        if not self.path:
            raise TaskError("reward 'python' needs 'path' (a .py file defining the reward function)")
        try:
            module = import_file(self.path, "reward")
        except PluginError as e:
            raise TaskError(str(e)) from None
        fn = getattr(module, self.function, None)
        if fn is None or not callable(fn):
            found = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
            raise TaskError(f"{self.path}: no function '{self.function}' (callables: {', '.join(found) or 'none'})")
        return fn


@register("reward", "callable")
@dataclass(frozen=True)
class CallableReward(UserReward, Reward):
    """A function handed to ``groupo.Trainer(reward_funcs=[...])`` in this process, by name."""

    ref: str = ""

    def __post_init__(self):
        self._fn

    @property
    def where(self) -> str:
        return f"reward function {self.ref}"

    @cached_property
    def _fn(self):
        from ..tasks.base import TaskError

        if self.ref not in LIVE:
            raise TaskError(f"reward '{self.ref}' is a Python function of the process that started the run; "
                            f"resume it from Python with groupo.Trainer(..., reward_funcs=[{self.ref}])")
        return LIVE[self.ref]
