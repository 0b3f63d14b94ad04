"""Evaluation metrics: pass@k, maj@k and a per-group summary of an eval run.

Pure functions over Python lists (numpy only for means); no torch, no model code.

* ``pass_at_k`` is the unbiased estimator of Chen et al. 2021, "Evaluating Large
  Language Models Trained on Code" (arXiv 2107.03374, Sec. 2.1 and Fig. 3):
  with n samples of which c are correct, ``pass@k = 1 - C(n-c, k) / C(n, k)``,
  the probability that a random k-subset of the n samples holds a correct one.
  The ratio of binomials is evaluated in the numerically stable product form
  ``C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)`` (as in that paper),
  which never forms the huge binomials themselves.
* ``maj_at_k`` is majority voting ("self-consistency", Wang et al. 2022,
  arXiv 2203.11171) over the first k sampled final answers.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

__all__ = ["pass_at_k", "maj_at_k", "summarize", "natural_key"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate from n samples with c correct (Chen et al. 2021).

    Raises ValueError unless ``1 <= k <= n`` and ``0 <= c <= n``.
    """
    n, c, k = int(n), int(c), int(k)
    if k < 1:
        raise ValueError(f"pass@k needs k >= 1, got k={k}")
    if k > n:
        raise ValueError(f"pass@k needs k <= n, got k={k} > n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got c={c}, n={n}")
    if c == 0:
        return 0.0
    if n - c < k:  # every k-subset must contain a correct sample
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i)
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(1.0 - np.prod(1.0 - k / i))


def maj_at_k(answers: list[str | None], correct: list[bool], k: int) -> float:
    """Majority vote over the first k answers; 1.0 if the winning answer is correct.

    ``None`` (no extractable answer) never receives a vote; if all k answers are None
    the result is 0.0. Ties between answers with equal vote counts go to the answer
    whose first occurrence is earliest. The winner's correctness is read from
    ``correct`` at that first occurrence (samples with equal answers are checked
    identically, so any of them would give the same result).
    """
    if len(answers) != len(correct):
        raise ValueError(f"answers ({len(answers)}) and correct ({len(correct)}) differ in length")
    if not 1 <= k <= len(answers):
        raise ValueError(f"maj@k needs 1 <= k <= {len(answers)} samples, got k={k}")
    votes: Counter = Counter()
    first: dict[str, int] = {}
    for i, a in enumerate(answers[:k]):
        if a is None:
            continue
        votes[a] += 1
        first.setdefault(a, i)
    if not votes:
        return 0.0
    winner = min(votes, key=lambda a: (-votes[a], first[a]))
    return 1.0 if correct[first[winner]] else 0.0


def natural_key(s: str) -> tuple:
    """Sort key that orders digit runs numerically: "n=9" < "n=10"."""
    parts = re.split(r"(\d+)", str(s))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def summarize(records: list[dict[str, Any]], ks: tuple[int, ...] = (1,)) -> dict[str, Any]:
    """Summarize per-item eval records into headline and per-group numbers.

    Each record is ``{"group": str, "correct": [bool, ...], "answers": [str|None, ...]}``
    (one entry per sample; ``answers`` may be omitted, then maj@k is not reported).
    Item accuracy is the mean correctness of its samples; ``accuracy`` averages it
    over items (plain accuracy for one greedy sample per item). ``pass@k`` and
    ``maj@k`` are reported for each k in ``ks`` that every item has samples for.
    ``group_gap`` is best minus worst group accuracy. With no records the accuracies
    are None. Keys are in a fixed order; groups sorted with ``natural_key``.
    """
    item_acc: list[float] = []
    groups: dict[str, list[float]] = {}
    for j, r in enumerate(records):
        corr = [bool(x) for x in r["correct"]]
        if not corr:
            raise ValueError(f"record {j} has no samples")
        answers = r.get("answers")
        if answers is not None and len(answers) != len(corr):
            raise ValueError(f"record {j}: {len(answers)} answers for {len(corr)} samples")
        acc = sum(corr) / len(corr)
        item_acc.append(acc)
        groups.setdefault(str(r.get("group", "all")), []).append(acc)

    min_samples = min((len(r["correct"]) for r in records), default=0)
    has_answers = bool(records) and all(r.get("answers") is not None for r in records)
    ks_ok = sorted({int(k) for k in ks if 1 <= int(k) <= min_samples})

    pass_k = {k: _mean([pass_at_k(len(r["correct"]), sum(map(bool, r["correct"])), k)
                        for r in records]) for k in ks_ok}
    maj_k = ({k: _mean([maj_at_k(list(r["answers"]), [bool(x) for x in r["correct"]], k)
                        for r in records]) for k in ks_ok} if has_answers else {})

    per_group = {g: {"n": len(groups[g]), "accuracy": _mean(groups[g])}
                 for g in sorted(groups, key=natural_key)}
    if per_group:
        # min/max keep the first of equal values in natural order
        worst = min(per_group, key=lambda g: per_group[g]["accuracy"])
        best = max(per_group, key=lambda g: per_group[g]["accuracy"])
        worst_group = {"group": worst, "accuracy": per_group[worst]["accuracy"]}
        gap = per_group[best]["accuracy"] - per_group[worst]["accuracy"]
    else:
        worst_group, gap = {"group": None, "accuracy": None}, None
    return {
        "n": len(records),
        "accuracy": _mean(item_acc),
        "pass@k": pass_k,
        "maj@k": maj_k,
        "per_group": per_group,
        "worst_group": worst_group,
        "group_gap": gap,
    }
