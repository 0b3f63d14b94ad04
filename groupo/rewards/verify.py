"""``groupo.verify(completion, gold, kind)``: the reward-side answer check.

Extraction, then a checker (TASKS.md §5.3 recommendation: keep the two apart):

| kind      | extraction (``mode="auto"``)                          | checker                          |
|-----------|-------------------------------------------------------|----------------------------------|
| number    | tag, boxed, ``####``, last number                     | ``checkers.number``              |
| lego      | tag, boxed, ``####``, last number                     | ``checkers.lego``                |
| choice    | tag, boxed, ``####``, else the whole text             | ``checkers.choice``              |
| countdown | tag, boxed, ``####``, else the last non-empty line    | ``checkers.countdown``           |
| exact     | tag, boxed, ``####``, else the whole text             | ``checkers.exact``               |
| math      | none: the completion goes to math-verify in a worker  | ``mathpool.math_equal``          |
| reasoning_gym | tag, boxed, ``####``; nothing else (None: 0)      | the dataset's scorer in a worker |

Kind ``reasoning_gym`` (items of ``groupo.tasks.reasoning_gym``) needs the item's ``meta``
(``verify_item``, or ``meta=``): reasoning-gym's scorer reads the whole entry, and runs only in
``groupo.rewards.rgpool``'s workers (some scorers ``eval`` the answer). It is not offered to the
row tasks' ``kind`` (``Kind``). Without ``meta`` it falls back to ``exact``. Its answer is only an
explicit marker, never the whole completion: many of these scorers credit text that merely
contains the gold (docs/reasoning_gym.md).

Deviation from the plain ``auto`` chain for choice/countdown/exact: a last *number* can
never be a letter, an equation or a string answer, so their fallback is the text
itself (for countdown its last line, as TinyZero reads only the last line, §5.1).
Any other ``mode`` (tag, boxed, hash, last_number) is used strictly.

Guarantees (DESIGN.md "Public contract"): returns a float in [0, 1]; never raises on
any completion string (anything unexpected scores 0.0); never executes the
completion; bounded time (extraction reads the last 20,000 characters, checkers cap
their input, math-verify runs under a wall-clock timeout). An unknown ``kind`` is a
programmer error and raises ValueError.
"""
from __future__ import annotations

import math
from typing import Literal, get_args

from . import checkers, mathpool, rgpool
from .extract import MODES, TAIL, extract_answer, extract_structured, last_line

Kind = Literal["number", "math", "choice", "countdown", "lego", "exact"]   # what row tasks may choose
KINDS = get_args(Kind) + ("reasoning_gym",)
_TEXT_FALLBACK = {"choice", "exact", "countdown"}


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def extract_for(completion: str, kind: str, mode: str = "auto") -> str | None:
    """The answer span that the ``kind`` checker reads (see the table above)."""
    if kind == "reasoning_gym" and mode == "auto":
        return extract_structured(completion[-TAIL:])
    if mode != "auto" or kind not in _TEXT_FALLBACK:
        return extract_answer(completion, mode)
    text = completion[-TAIL:]
    found = extract_structured(text)
    if found is not None:
        return found
    return last_line(text) if kind == "countdown" else text.strip()


def verify(completion: str, gold, kind: str, mode: str = "auto", timeout: float = 5.0,
           meta: dict | None = None) -> float:
    """Score ``completion`` against ``gold`` with the ``kind`` checker: a float in [0, 1].

    ``mode`` picks the extraction (``auto`` = the kind's default, see the module doc);
    ``timeout`` bounds the math-verify call (kind ``math``) and the reasoning-gym scorer. An
    empty gold answer matches nothing (0.0): an empty answer tag must not score against a
    missing gold (kind ``reasoning_gym`` with ``meta``: its scorer decides, some golds are empty).
    ``meta``: the item's meta, read by kind ``reasoning_gym`` only.
    """
    check_kind(kind)
    if mode not in MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; valid: {', '.join(MODES)}")
    try:
        if not isinstance(completion, str):
            return 0.0
        if kind == "reasoning_gym":
            span = extract_for(completion, kind, mode)
            if meta is None or "reasoning_gym" not in meta:
                return checkers.exact(span, gold) if span is not None and gold and str(gold).strip() else 0.0
            return rgpool.score_many([span], [meta], timeout)[0]
        if gold is None or not str(gold).strip():
            return 0.0
        if kind == "math":
            score = mathpool.math_equal(completion, str(gold), timeout=timeout)
        else:
            span = extract_for(completion, kind, mode)
            if span is None:
                return 0.0
            score = checkers.CHECKERS[kind](span, gold)
        score = float(score)
        return min(1.0, max(0.0, score)) if math.isfinite(score) else 0.0
    except Exception:  # noqa: BLE001 - model output must never crash the trainer
        return 0.0


def verify_item(completion: str, item, mode: str = "auto", timeout: float = 5.0) -> float:
    """``verify`` of ``completion`` against a task ``Item`` (its answer, kind and meta)."""
    return verify(completion, item.answer, item.kind, mode=mode, timeout=timeout, meta=item.meta)
