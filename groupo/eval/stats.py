"""Small statistics for comparing runs across seeds.

``bootstrap_ci``: percentile bootstrap interval of the mean (Efron & Tibshirani 1993,
ch. 13), seeded so a report is reproducible. With very few seeds (3) the interval is
coarse (it cannot be wider than the range of the values); the report says how many
seeds each interval is based on.
"""
from __future__ import annotations

import math
import random


def mean(xs) -> float | None:
    xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    return sum(xs) / len(xs) if xs else None


def bootstrap_ci(xs, level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``xs`` (None values dropped).
    One value gives (x, x); no value gives None."""
    xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0], xs[0]
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = random.Random(seed)
    n = len(xs)
    means = sorted(sum(rng.choice(xs) for _ in range(n)) / n for _ in range(n_boot))
    lo = means[int(math.floor((1 - level) / 2 * (n_boot - 1)))]
    hi = means[int(math.ceil((1 + level) / 2 * (n_boot - 1)))]
    return lo, hi
