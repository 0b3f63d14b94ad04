"""Rollout allocation (axis ``allocation``): how many completions each prompt gets.

Protocol: a frozen dataclass with ``init_state() -> dict`` (JSON-serialisable, saved in
checkpoints), ``__call__(items, base, state) -> list[int]`` (rollouts per prompt; ``base``
is the configured group size) and ``update(state, items, correct)`` (every prompt of the
step and the 0/1 results of its completions, ragged). The loop calls it once per
sampling round, right after the sampler, and ``update`` once per step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .difficulty import EDGES, Classifier, check_edges, ema_value, observe_bins, prompt_key
from ..protocols import Allocation
from ..registry import register
from ..types import Item


@register("allocation", "fixed")
@dataclass(frozen=True)
class Fixed(Allocation):
    """Every prompt gets ``base`` rollouts (plain GRPO)."""

    def init_state(self) -> dict:
        return {}

    def __call__(self, items: list[Item], base: int, state: dict) -> list[int]:
        return [int(base)] * len(items)

    def update(self, state: dict, items: list[Item], correct: list[list[float]]) -> None:
        pass


def sqrt_rule(sigma: list[float], f: list[float], budget: float) -> list[float]:
    """Continuous optimum of min Σ f_b σ_b²/n_b s.t. Σ f_b n_b = budget (ALGORITHMS.md
    §11 (b)): n_b = σ_b/√μ with √μ = Σ f_b σ_b / budget. All σ = 0: every n_b = budget."""
    s = sum(fb * sb for fb, sb in zip(f, sigma))
    if s <= 0:
        return [float(budget)] * len(sigma)
    return [sb * budget / s for sb in sigma]


def to_arms(n: list[float], n_min: int, n_max: int) -> list[int]:
    """Round half up and clip to the discrete arms n_min..n_max."""
    return [min(n_max, max(n_min, int(math.floor(x + 0.5)))) for x in n]


@register("allocation", "rollout_gdro")
@dataclass(frozen=True)
class RolloutGDRO(Allocation):
    """Rollout-GDRO (ALGORITHMS.md §11; arXiv 2601.19280): more rollouts where the
    success signal is most uncertain, under a fixed mean budget. [INFERRED], our design:

    * Bins from the shared ``groupo.difficulty.Classifier`` (same knobs as prompt_gdro).
    * p̄_b = bias-corrected EMA (``gamma``) of bin b's per-step mean success (samples count
      for the bin their prompt was in when allocated); a bin without data uses the centre
      of its pass@k range, the "new" bin 0.5. σ_b = sqrt(p̄_b (1 - p̄_b)).
    * Square-root rule: n_b = clip(round(σ_b / √μ), n_min, n_max), f_b = share of this
      call's prompts in bin b, mean budget N̄ = ``budget`` (0: the base group size).
    * Dual-price controller: μ = μ*_t · e^λ with μ*_t = (Σ_b f_b σ_b / N̄)² this call's
      closed-form price, and λ <- clip(λ + eta_mu (Σ_b f_b n_b - N̄) / N̄, ±10) after each
      call. (§11 writes μ <- max(μ_min, μ + η_μ (Σ f n − N̄)); anchoring on μ*_t leaves the
      controller only the rounding/clipping error and makes η_μ scale-free.)
    """

    n_min: int = 4
    n_max: int = 32
    budget: float = 0.0
    eta_mu: float = 0.5
    gamma: float = 0.9
    edges: tuple[float, ...] = EDGES
    hysteresis: float = 0.05
    pass_k: int = 1

    def __post_init__(self):
        check_edges(self.edges)
        if not 1 <= self.n_min <= self.n_max:
            raise ValueError(f"need 1 <= n_min <= n_max, got n_min={self.n_min}, n_max={self.n_max}")
        if self.budget < 0 or self.eta_mu < 0 or not 0.0 <= self.gamma < 1.0:
            raise ValueError("budget and eta_mu must be >= 0 and gamma in [0, 1)")

    @property
    def classifier(self) -> Classifier:
        return Classifier(tuple(self.edges), self.hysteresis, self.pass_k)

    def init_state(self) -> dict:
        slots = self.classifier.nbins + 1
        return {"cls": Classifier.init_state(), "m": [0.0] * slots, "n": [0] * slots, "log_price": 0.0}

    def success(self, state: dict) -> list[float]:
        """p̄ of every slot (data, else the bin centre; 0.5 for the "new" bin)."""
        e, nb = self.edges, self.classifier.nbins
        prior = [0.5 * (e[b] + e[b + 1]) for b in range(nb)] + [0.5]
        return [v if (v := ema_value(m, n, self.gamma)) is not None else p
                for m, n, p in zip(state["m"], state["n"], prior)]

    def __call__(self, items: list[Item], base: int, state: dict) -> list[int]:
        if not items:
            return []
        cls = self.classifier
        budget = float(self.budget or base)
        slot = [cls.bin_of(state["cls"], prompt_key(it)) for it in items]
        used = sorted(set(slot))
        f = [slot.count(b) / len(items) for b in used]
        p = self.success(state)
        sigma = [math.sqrt(max(p[b] * (1 - p[b]), 0.0)) for b in used]
        cont = sqrt_rule(sigma, f, budget)
        scale = math.exp(-0.5 * float(state.get("log_price", 0.0)))  # 1/√(e^λ)
        n_b = to_arms([x * scale for x in cont], self.n_min, self.n_max)
        spent = sum(fb * nb for fb, nb in zip(f, n_b))
        lam = float(state.get("log_price", 0.0)) + self.eta_mu * (spent - budget) / budget
        state["log_price"] = max(-10.0, min(10.0, lam))
        per_bin = dict(zip(used, n_b))
        return [per_bin[b] for b in slot]

    def update(self, state: dict, items: list[Item], correct: list[list[float]]) -> None:
        observe_bins(self.classifier, self.gamma, state, items, correct, loss=False)
