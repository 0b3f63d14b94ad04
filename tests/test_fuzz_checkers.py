"""Checker fuzz campaign (docs/reliability.md): hostile and malformed completions never
crash, never execute, stay fast, never score near misses, and the gold still scores 1.
The default run tries a few hundred inputs per checker; `make test-slow` runs 10,000."""
import pytest

from groupo.rewards.fuzzing import KINDS, campaign, gold_and_near, injections
from groupo.rewards.verify import verify


def _check(row, n, bound_s):
    assert row["inputs"] == n
    assert row["crashes"] == 0 and row["out_of_range"] == 0, row["examples"]
    assert row["executions"] == 0
    assert row["false_positives"] == 0, row["examples"]
    assert row["true_positives"] == row["positives_expected"] > 0
    assert row["worst_s"] < bound_s


@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_short(kind, tmp_path):
    n = 60 if kind == "math" else 400
    row = campaign(kind, n, seed=1, canary=str(tmp_path / "CANARY"), timeout=3.0)
    _check(row, n, bound_s=3.0 + 3.0 if kind == "math" else 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_long(kind, tmp_path):
    row = campaign(kind, 10000, seed=0, canary=str(tmp_path / "CANARY"))
    _check(row, 10000, bound_s=5.0 + 5.0 if kind == "math" else 2.0)


def test_canary_would_be_seen(tmp_path):
    """The execution check can fail: running a payload for real creates the canary."""
    canary = tmp_path / "CANARY"
    payload = injections(str(canary))[1]          # open(canary, 'w').write('pwned')
    exec(payload)  # noqa: S102 - our own string, to prove the detector works
    assert canary.exists()
    canary.unlink()
    assert verify(payload, "1", "number") == 0.0 and not canary.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_near_misses_are_not_the_gold(kind):
    import random

    gold, ok, near = gold_and_near(kind, random.Random(5))
    assert verify(ok, gold, kind) == 1.0 and near
    assert all(verify(n, gold, kind) == 0.0 for n in near)
