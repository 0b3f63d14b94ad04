"""Bootstrap interval against hand-computed and exact values."""
import itertools

import pytest

from groupo.eval.stats import bootstrap_ci, mean


def test_mean_drops_missing():
    assert mean([1, None, 3, float("nan")]) == 2.0 and mean([]) is None


def test_bootstrap_degenerate_cases():
    assert bootstrap_ci([]) is None and bootstrap_ci([None]) is None
    assert bootstrap_ci([0.4]) == (0.4, 0.4)
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    with pytest.raises(ValueError):
        bootstrap_ci([1, 2], level=1.5)


def test_bootstrap_two_values_matches_the_exact_resampling_distribution():
    # resampling {0, 1} twice: means 0 (p 1/4), 0.5 (p 1/2), 1 (p 1/4); the 2.5% and 97.5%
    # quantiles of that distribution are 0 and 1
    assert bootstrap_ci([0.0, 1.0], n_boot=4000) == (0.0, 1.0)
    # with level 0.4 the 30% and 70% quantiles are both 0.5
    assert bootstrap_ci([0.0, 1.0], level=0.4, n_boot=4000) == (0.5, 0.5)


def test_bootstrap_three_values_against_exact_enumeration():
    xs = [0.2, 0.5, 0.9]
    exact = sorted(sum(c) / 3 for c in itertools.product(xs, repeat=3))     # 27 equally likely means
    lo, hi = bootstrap_ci(xs, level=0.8, n_boot=20000, seed=3)
    q = lambda p: exact[min(26, int(p * 27))]  # noqa: E731
    assert q(0.1) - 0.04 <= lo <= q(0.1) + 0.04 and q(0.9) - 0.04 <= hi <= q(0.9) + 0.04
    assert min(xs) <= lo <= mean(xs) <= hi <= max(xs)
    assert bootstrap_ci(xs, seed=1) == bootstrap_ci(xs, seed=1)
