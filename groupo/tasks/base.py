"""The ``Task`` protocol: deterministic eval items, seeded training draws, no leakage.

A task is a frozen dataclass (registered on axis ``task``) whose fields are its
parameters. Every task has ``seed`` and ``eval_size``. ``eval_items()`` is a fixed,
seed-determined list, unique by normalised question; ``sample_train(rng)`` draws one
training item and never returns an item whose normalised question is in the eval set
(TASKS.md §0 (c) and §1.5: seed overlap between splits is real, so dedupe by question).

``GeneratedTask`` is the shared machinery of the procedural generators
(``groupo.tasks.generators``): a subclass only writes ``generate(rng, level) -> Item``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

from ..protocols import Task as TaskProtocol
from ..types import Item

MAX_TRAIN_TRIES = 1000


class TaskError(ValueError):
    """A one-line, user-facing error about task data or parameters,
    e.g. ``data.jsonl:17: missing key 'answer'``."""


def normalize_question(text: str) -> str:
    """Lowercase, collapse runs of whitespace to one space, strip: the key used to
    dedupe questions within the eval set and between train and eval."""
    return " ".join(str(text).lower().split())


@dataclass(frozen=True)
class Task(TaskProtocol):
    """Base of every task. Subclasses implement ``_build_eval`` and ``sample_train``.

    The eval list is computed once and cached (``functools.cached_property`` writes to
    the instance ``__dict__``, which a frozen dataclass allows).
    """

    seed: int = 0
    eval_size: int = 200

    def __post_init__(self):
        if not isinstance(self.eval_size, int) or self.eval_size < 0:
            raise TaskError(f"eval_size must be a non-negative integer, got {self.eval_size!r}")

    # -- public API ---------------------------------------------------------------
    def eval_items(self) -> list[Item]:
        """The fixed evaluation items (a fresh list; the items themselves are frozen)."""
        return list(self._eval)

    def sample_train(self, rng: random.Random) -> Item:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return f"{getattr(self, 'component_name', type(self).__name__)} (seed {self.seed})"

    def train_pool(self, size: int, seed: int = 0) -> list[Item]:
        """A fixed, seeded list of distinct training items (unique by normalised
        question, none in the eval set), for samplers that keep per-prompt statistics
        and draw by index. Computed once per (size, seed) and cached on the instance."""
        cache = self.__dict__.setdefault("_train_pools", {})
        key = (int(size), int(seed))
        if key not in cache:
            pool = tuple(self._build_pool(int(size), int(seed)))
            if not pool:
                name = getattr(self, "component_name", type(self).__name__)
                raise TaskError(f"{name}: could not build a training pool of {size} items")
            cache[key] = pool
        return list(cache[key])

    def _build_pool(self, size: int, seed: int) -> list[Item]:
        """Default pool: distinct ``sample_train`` draws from an RNG seeded by (task, seed)."""
        name = getattr(self, "component_name", type(self).__name__)
        rng = random.Random(f"groupo-pool-{name}-{self.seed}-{seed}")
        seen, out, tries = set(self.eval_keys), [], 0
        while len(out) < size and tries < 20 * size + 100:
            tries += 1
            out.extend(dedupe([self.sample_train(rng)], seen))
        return out

    # -- shared helpers -----------------------------------------------------------
    @cached_property
    def _eval(self) -> tuple[Item, ...]:
        return tuple(self._build_eval())

    @cached_property
    def eval_keys(self) -> frozenset[str]:
        """Normalised questions of the eval set (train draws must avoid these)."""
        return frozenset(normalize_question(it.question) for it in self._eval)

    def _build_eval(self) -> list[Item]:  # pragma: no cover - abstract
        raise NotImplementedError


def target_text(fmt: str, item: Item) -> str:
    """A supervised completion for ``item``: ``fmt`` with ``{answer}`` and the item's text columns
    (e.g. ``{trace}``); a KeyError names a missing one."""
    fields = {k: v for k, v in item.meta.items() if isinstance(v, (str, int, float))}
    return fmt.format(**{**fields, "answer": item.answer})


def dedupe(items, seen: set[str] | None = None) -> list[Item]:
    """Items in order, dropping any whose normalised question was seen before."""
    seen = set() if seen is None else seen
    out = []
    for it in items:
        key = normalize_question(it.question)
        if key not in seen:
            seen.add(key)
            out.append(it)
    return out


def check_levels(name: str, levels, lo: int, hi: int | None = None) -> None:
    """Raise TaskError unless ``levels`` is a non-empty sequence of ints in [lo, hi]."""
    if not isinstance(levels, (tuple, list)) or not levels:
        raise TaskError(f"{name} must be a non-empty list of integers, got {levels!r}")
    for v in levels:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise TaskError(f"{name}: level {v!r} is out of range ({rng})")


@dataclass(frozen=True)
class GeneratedTask(Task):
    """A procedural task with difficulty ``levels`` (training) and ``eval_levels``.

    Eval items are spread evenly over ``eval_levels`` (round-robin counts), drawn from
    an RNG seeded by (task name, seed), so they are the same on every machine. A level
    whose item space is too small to give its share stops after a bounded number of
    tries; the task then returns what it has (at least one item, else TaskError).
    """

    levels: tuple[int, ...] = ()
    eval_levels: tuple[int, ...] = ()

    def generate(self, rng: random.Random, level: int) -> Item:  # pragma: no cover
        raise NotImplementedError

    def _spread(self, rng: random.Random, levels, size: int, seen: set[str]) -> list[Item]:
        """``size`` distinct items spread evenly over ``levels`` (round-robin counts; a level
        whose item space runs out gives what it has), skipping questions in ``seen``, and
        interleaved so that any prefix is balanced across levels."""
        k = len(levels)
        counts = [size // k + (1 if i < size % k else 0) for i in range(k)]
        per_level: list[list[Item]] = []
        for level, want in zip(levels, counts):
            got: list[Item] = []
            tries = 0
            while len(got) < want and tries < 20 * want + 100:
                tries += 1
                got.extend(dedupe([self.generate(rng, level)], seen))
            per_level.append(got)
        return [lv[i] for i in range(max(map(len, per_level), default=0)) for lv in per_level if i < len(lv)]

    def _build_eval(self) -> list[Item]:
        name = getattr(self, "component_name", type(self).__name__)
        out = self._spread(random.Random(f"groupo-eval-{name}-{self.seed}"), self.eval_levels, self.eval_size, set())
        if self.eval_size > 0 and not out:
            raise TaskError(f"{name}: could not generate any eval item")
        return out

    def _build_pool(self, size: int, seed: int) -> list[Item]:
        """``size`` distinct training items spread evenly over ``levels``, none in the eval set."""
        name = getattr(self, "component_name", type(self).__name__)
        return self._spread(random.Random(f"groupo-pool-{name}-{self.seed}-{seed}"), self.levels, size,
                            set(self.eval_keys))

    def sample_train(self, rng: random.Random) -> Item:
        keys = self.eval_keys
        for _ in range(MAX_TRAIN_TRIES):
            item = self.generate(rng, rng.choice(self.levels))
            if normalize_question(item.question) not in keys:
                return item
        name = getattr(self, "component_name", type(self).__name__)
        raise TaskError(
            f"{name}: no training item outside the eval set after {MAX_TRAIN_TRIES} tries "
            f"(the item space of levels {list(self.levels)} is too small; lower eval_size or change levels)"
        )
