"""Online difficulty classifier and bias-corrected EMA, shared by the Group-DRO
components (``samplers.PromptGDRO`` and ``allocation.RolloutGDRO``), ALGORITHMS.md §11.

[INFERRED] (ALGORITHMS.md §11 (b); the paper publishes no code, the numbers are ours):

* A prompt's difficulty is its pass@k on its *latest* rollouts, with the unbiased
  estimator of Chen et al. 2021 (``groupo.eval.metrics.pass_at_k``); k is clipped to
  the number of rollouts (default k=1, i.e. the plain success rate).
* Bins are the buckets of pass@k on ``edges`` (default [0, .125, .375, .625, .875, 1]),
  bin i = [edges[i], edges[i+1]), the last bin closed at 1.
* Hysteresis: a classified prompt leaves its bin only when its pass@k crosses one of
  the bin's edges by more than ``h``, i.e. p < lo - h or p > hi + h; it then goes to
  the plain bucket of p.
* Unseen prompts sit in an extra "new" bin, slot index ``nbins`` (one past the last).

State is a JSON-serialisable dict: ``{"bin": {key: int}, "pk": {key: float}}`` with
string keys (a pool index, or ``prompt_key(item)``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..eval.metrics import pass_at_k
from ..tasks.base import normalize_question

EDGES = (0.0, 0.125, 0.375, 0.625, 0.875, 1.0)


def prompt_key(item) -> str:
    """A short, process-independent key of an item (md5 of its normalised question)."""
    return hashlib.md5(normalize_question(item.question).encode("utf-8")).hexdigest()[:16]


def check_edges(edges) -> None:
    e = [float(x) for x in edges]
    if len(e) < 2 or any(b <= a for a, b in zip(e, e[1:])):
        raise ValueError(f"edges must be an increasing list of at least 2 numbers, got {list(edges)}")


def bucket(p: float, edges=EDGES) -> int:
    """Index of the bin [edges[i], edges[i+1]) holding p (clamped to the first/last bin)."""
    nb = len(edges) - 1
    for i in range(nb - 1, 0, -1):
        if p >= edges[i]:
            return i
    return 0


def rebin(prev: int | None, p: float, edges=EDGES, h: float = 0.05) -> int:
    """The new bin of a prompt now at pass@k ``p`` that was in bin ``prev`` (None or
    out of range = unclassified): it moves only if p crosses an edge of ``prev`` by > h."""
    nb = len(edges) - 1
    if prev is None or not 0 <= prev < nb:
        return bucket(p, edges)
    lo, hi = edges[prev], edges[prev + 1]
    if p < lo - h or p > hi + h:
        return bucket(p, edges)
    return prev


def estimate(correct: list[float], k: int = 1) -> float | None:
    """Unbiased pass@min(k, n) of one prompt's 0/1 results; None when there are none."""
    n = len(correct)
    if n == 0:
        return None
    c = int(round(sum(float(x) for x in correct)))
    return pass_at_k(n, min(max(c, 0), n), min(max(int(k), 1), n))


@dataclass(frozen=True)
class Classifier:
    """The online difficulty classifier (not a registered component: its knobs are
    fields of the components that use it)."""

    edges: tuple[float, ...] = EDGES
    hysteresis: float = 0.05
    k: int = 1

    @property
    def nbins(self) -> int:
        """Number of difficulty bins; slot ``nbins`` is the "new" bin."""
        return len(self.edges) - 1

    @staticmethod
    def init_state() -> dict:
        return {"bin": {}, "pk": {}}

    def bin_of(self, state: dict, key: str) -> int:
        return int(state["bin"].get(key, self.nbins))

    def observe(self, state: dict, key: str, correct: list[float]) -> int:
        """Record a prompt's latest rollouts and return its (possibly new) bin."""
        p = estimate(correct, self.k)
        if p is None:
            return self.bin_of(state, key)
        prev = state["bin"].get(key)
        b = rebin(None if prev is None else int(prev), p, self.edges, self.hysteresis)
        state["bin"][key] = b
        state["pk"][key] = float(p)
        return b


# -- Adam-style bias-corrected EMA (ALGORITHMS.md §11 (b)) ------------------------------
def ema_step(m: float, n: int, x: float, gamma: float) -> tuple[float, int]:
    """m <- gamma m + (1 - gamma) x, and one more update counted."""
    return gamma * m + (1.0 - gamma) * x, n + 1


def ema_value(m: float, n: int, gamma: float) -> float | None:
    """Bias-corrected value m / (1 - gamma^n); None before the first update."""
    if n <= 0:
        return None
    return m / (1.0 - gamma ** n)


def slot_means(values: dict[int, list[float]]) -> dict[int, float]:
    """Intensive (per-sample) mean of each slot's pooled samples, empty slots left out."""
    return {b: sum(v) / len(v) for b, v in values.items() if v}


def observe_bins(cls: Classifier, gamma: float, state: dict, items, correct, loss: bool) -> None:
    """Shared by Prompt-GDRO and Rollout-GDRO: pool each completion's value (1 - correct
    if ``loss`` else correct) into the bin its prompt was in *before* this step, update
    the bins' bias-corrected EMAs ``state["m"], state["n"]``, then re-classify the prompts."""
    obs = [(prompt_key(it), [float(x) for x in r]) for it, r in zip(items, correct) if len(r)]
    slots: dict[int, list[float]] = {}
    for key, res in obs:  # all values go to the bins the prompts were drawn from
        slots.setdefault(cls.bin_of(state["cls"], key), []).extend(1.0 - x if loss else x for x in res)
    for b, v in slot_means(slots).items():
        state["m"][b], state["n"][b] = ema_step(state["m"][b], state["n"][b], v, gamma)
    for key, res in obs:
        cls.observe(state["cls"], key, res)
