"""``reasoning_gym``: reasoning-gym's procedural datasets as a task (optional extra ``groupo[reasoning]``).

reasoning-gym (open-thought/reasoning-gym, Apache-2.0; PyPI ``reasoning-gym`` 0.1.25; TASKS.md §1)
has about 100 generators, each with a ``score_answer(answer, entry)`` scorer. ``datasets`` names
one or several of them (mixed uniformly, or by ``weights``); ``config`` holds each one's generator
parameters (``{"chain_sum": {"min_terms": 2}}``: the fields of its config dataclass, without
``seed`` and ``size``); ``size`` is the number of training indices per dataset.

Splits (TASKS.md §1.5): item i of reasoning-gym seed s is drawn from ``Random(s + i)``, so seeds
that differ by less than the number of items overlap. Per dataset, the eval set uses seed
``E`` (a hash of the task seed and the dataset name, below 2**31: some generators seed numpy,
which takes seeds below 2**32) and indices ``0..``, training uses seed ``E + 10**7`` and indices
``0..size-1``: the two ranges of ``Random`` seeds are disjoint. On top,
as in groupo's other tasks, eval items are unique by normalised question and a training draw
whose question is an eval question is redrawn. Eval items are spread evenly over the datasets.

Items: ``group`` = the dataset name (per-group accuracy and the worst group are per
reasoning-gym task), ``kind`` = ``reasoning_gym``, ``answer`` = the gold (``""`` for the
datasets whose answers are checked by a simulator: boxnet, graph_color, propositional_logic,
rubiks_cube, rush_hour), ``meta["metadata"]`` = the entry's metadata (JSON-safe copy) and
``meta["reasoning_gym"]`` = what the scorer needs (dataset, generator keyword arguments, index,
question, gold, ``partial_credit``). Scoring: ``groupo.rewards.rgpool``, in worker processes
only, with a time and memory limit (several scorers run the answer as Python); the answer is
the ``<answer>`` tag (or ``\\boxed{}`` / ``####``), nothing else of the completion.

Scorer quality (measured by scripts/rg_audit.py on 3 entries of each of the 105 datasets; table
in docs/reasoning_gym.md): 65 gave a partial score to some malformed answer (54 to the gold inside
other text: the base scorer gives ``len(gold) / len(answer)``); ``partial_credit=False`` (default)
counts only 1.0. Still 1.0 through groupo: the gold inside other text in ``gsm_symbolic`` (first
number), ``kakurasu``, ``knights_knaves``, ``quantum_lock``, ``sokoban``, ``survo``, and the hedge
``GOLD or 7`` in ``fraction_simplification``, ``letter_jumble``, ``spell_backward``,
``time_intervals``. ``game_of_life_halting`` (1.0 for any non-empty answer) is refused. Prompts: reasoning-gym's system prompt asks for ``<answer>`` tags; with
``template.name=chat`` set ``template.system`` to it (``reasoning_gym.utils.SYSTEM_PROMPTS``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from functools import cached_property

from ..registry import closest, register
from ..types import Item
from .base import MAX_TRAIN_TRIES, Task, TaskError, dedupe, normalize_question

TRAIN_OFFSET = 10**7      # eval and training reasoning-gym seeds are this far apart (> any eval index)
REFUSED = {"composite": "list several datasets in 'datasets' instead",
           "game_of_life_halting": "its scorer gives 1.0 to any non-empty answer (docs/reasoning_gym.md)"}


def reasoning_gym():
    """The ``reasoning_gym`` package, or a one-line TaskError naming the extra."""
    try:
        import reasoning_gym as rg
    except ImportError:
        raise TaskError("task reasoning_gym needs `pip install groupo[reasoning]`") from None
    return rg


def jsonable(x):
    """A JSON-safe copy: tuples and sets become lists, keys strings, other objects ``str``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted((jsonable(v) for v in x), key=repr)
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if hasattr(x, "tolist"):           # numpy scalars and arrays
        return jsonable(x.tolist())
    return str(x)


@register("task", "reasoning_gym")
@dataclass(frozen=True)
class ReasoningGym(Task):
    """reasoning-gym datasets (one or several, mixed); group = dataset name; scored in workers."""

    datasets: tuple[str, ...] = ("chain_sum",)
    config: dict[str, dict] = field(default_factory=dict, hash=False)
    weights: tuple[float, ...] = ()
    size: int = 10_000
    partial_credit: bool = False

    def __post_init__(self):
        super().__post_init__()
        reasoning_gym()
        from reasoning_gym.factory import DATASETS

        if isinstance(self.datasets, str) or not self.datasets:
            raise TaskError(f"reasoning_gym: 'datasets' must be a non-empty list of names, got {self.datasets!r}")
        for name in self.datasets:
            if name in REFUSED:
                raise TaskError(f"reasoning_gym: dataset {name} is refused: {REFUSED[name]}")
            if name not in DATASETS:
                raise TaskError(f"reasoning_gym: unknown dataset '{name}'{closest(name, DATASETS)}")
        if len(set(self.datasets)) != len(self.datasets):
            raise TaskError(f"reasoning_gym: a dataset is listed twice in {list(self.datasets)}")
        if self.weights and (len(self.weights) != len(self.datasets) or min(self.weights) < 0 or sum(self.weights) <= 0):
            raise TaskError(f"reasoning_gym: 'weights' needs one non-negative number per dataset "
                            f"({len(self.datasets)}), not all 0; got {list(self.weights)}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 1 <= self.size <= 10**9:
            raise TaskError(f"reasoning_gym: size must be an integer in 1..10**9, got {self.size!r}")
        if not isinstance(self.config, dict):
            raise TaskError(f"reasoning_gym: 'config' must map dataset names to parameters, got {self.config!r}")
        for name, params in self.config.items():
            if name not in self.datasets:
                raise TaskError(f"reasoning_gym: config for '{name}', which is not in datasets "
                                f"{list(self.datasets)}{closest(name, self.datasets)}")
            fields = [f.name for f in dataclasses.fields(DATASETS[name][1]) if f.name not in ("seed", "size")]
            if not isinstance(params, dict):
                raise TaskError(f"reasoning_gym: config.{name} must be a mapping of parameters, got {params!r}")
            for key in params:
                if key not in fields:
                    raise TaskError(f"reasoning_gym: unknown parameter '{key}' for {name}{closest(key, fields)}; "
                                    f"valid: {', '.join(fields)}")
        self._sources  # build now: a bad parameter surfaces before any model loads

    # -- reasoning-gym datasets --------------------------------------------------------------
    def _kwargs(self, name: str, split: str) -> dict:
        digest = hashlib.sha256(f"groupo-reasoning-gym-{self.seed}-{name}".encode()).hexdigest()
        seed = int(digest[:15], 16) % 2**31 + (TRAIN_OFFSET if split == "train" else 0)   # numpy needs < 2**32
        size = self.size if split == "train" else 20 * self._eval_counts()[name] + 100
        kwargs = {**self.config.get(name, {}), "seed": seed, "size": size}
        try:
            return json.loads(json.dumps(kwargs))   # what a scoring worker will rebuild the dataset from
        except (TypeError, ValueError):
            raise TaskError(f"reasoning_gym: config.{name} must hold plain values (numbers, strings, lists)") from None

    def _eval_counts(self) -> dict[str, int]:
        k = len(self.datasets)
        return {n: self.eval_size // k + (1 if i < self.eval_size % k else 0) for i, n in enumerate(self.datasets)}

    @cached_property
    def _sources(self) -> dict:
        """(dataset name, split) -> (reasoning-gym dataset, its keyword arguments)."""
        rg = reasoning_gym()
        out = {}
        for name in self.datasets:
            for split in ("train", "eval"):
                kwargs = self._kwargs(name, split)
                try:
                    out[name, split] = (rg.create_dataset(name, **kwargs), kwargs)
                except Exception as e:  # noqa: BLE001 - reasoning-gym validates with assert/ValueError
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise TaskError(f"reasoning_gym: config for {name} is refused by reasoning-gym: {msg}") from None
        return out

    def _make(self, name: str, split: str, index: int) -> Item:
        ds, kwargs = self._sources[name, split]
        try:
            entry = ds[index]
        except Exception as e:  # noqa: BLE001 - a generator bug is a task error, not a crash in the loop
            raise TaskError(f"reasoning_gym: {name} failed to generate item {index}: {type(e).__name__}: {e}"
                            .splitlines()[0]) from None
        question, answer = str(entry["question"]), entry.get("answer")
        gold = None if answer is None else str(answer)
        meta = {"metadata": jsonable(entry.get("metadata", {})),
                "reasoning_gym": {"dataset": name, "kwargs": kwargs, "index": index, "question": question,
                                  "answer": gold, "partial_credit": bool(self.partial_credit)}}
        return Item(question, gold or "", name, "reasoning_gym", meta)

    # -- Task API ----------------------------------------------------------------------------
    def _build_eval(self) -> list[Item]:
        seen: set[str] = set()
        per: list[list[Item]] = []
        for name, want in self._eval_counts().items():
            got: list[Item] = []
            limit = self._sources[name, "eval"][1]["size"]
            for index in range(limit):
                if len(got) >= want:
                    break
                got.extend(dedupe([self._make(name, "eval", index)], seen))
            per.append(got)
        out = [lv[i] for i in range(max(map(len, per), default=0)) for lv in per if i < len(lv)]
        if self.eval_size > 0 and not out:
            raise TaskError("reasoning_gym: could not generate any eval item")
        return out

    def sample_train(self, rng: random.Random) -> Item:
        keys = self.eval_keys
        for _ in range(MAX_TRAIN_TRIES):
            name = rng.choices(self.datasets, self.weights)[0] if self.weights else rng.choice(self.datasets)
            item = self._make(name, "train", rng.randrange(self.size))
            if normalize_question(item.question) not in keys:
                return item
        raise TaskError(f"reasoning_gym: no training item outside the eval set after {MAX_TRAIN_TRIES} tries "
                        f"(the item space of {list(self.datasets)} is too small; lower eval_size or widen config)")

    def describe(self) -> str:
        mix = ", ".join(self.datasets) + (f" (weights {list(self.weights)})" if self.weights else "")
        return (f"reasoning_gym: {mix}; {self.size} training indices each, eval {self.eval_size} items, "
                f"seed {self.seed}{', partial credit' if self.partial_credit else ''}")
