"""Prompt samplers (axis ``sampler``): which task items each step trains on. ``uniform`` draws each
prompt independently; the stateful ``curriculum``, ``prompt_gdro`` and ``equitable``
adapt to what the model solves.

A sampler is a frozen dataclass (its hyperparameters); its mutable state is a plain dict the
loop owns and saves in checkpoints, so a resumed run draws the same prompts. The stateful three
draw from ``task.train_pool(pool_size, seed)`` (a fixed, seeded list of
distinct training items that never overlaps the eval set) *by index*, so per-prompt
and per-group statistics refer to stable prompts. Their state is a JSON-serialisable
dict (string keys, lists, floats): the loop saves it in checkpoints, and a resumed run
with the same RNG state draws the same prompts. Within one call a prompt is drawn at
most once while its bin/group still has unused prompts.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .difficulty import EDGES, Classifier, check_edges, ema_value, observe_bins, prompt_key
from ..eval.metrics import natural_key
from ..protocols import Sampler
from ..registry import register
from ..types import Item


def pool_keys(task, size: int, seed: int) -> tuple[list[Item], list[str]]:
    """The task's training pool and the ``prompt_key`` of each item (cached on the task)."""
    cache = task.__dict__.setdefault("_sampler_pool_keys", {})
    key = (int(size), int(seed))
    if key not in cache:
        pool = task.train_pool(size, seed)
        cache[key] = (pool, [prompt_key(it) for it in pool])
    return cache[key]


def pick(rng: random.Random, members: list[int], taken: set[int]) -> int:
    """A uniform member not yet taken this call (any member once all are taken)."""
    free = [m for m in members if m not in taken]
    choice = (free or members)[rng.randrange(len(free or members))]
    taken.add(choice)
    return choice


def _check_pool(pool_size: int) -> None:
    if pool_size < 0:
        raise ValueError(f"pool_size must be >= 0, got {pool_size}")


@register("sampler", "uniform")
@dataclass(frozen=True)
class Uniform(Sampler):
    """Draw each prompt independently from the task's training distribution."""

    def init_state(self) -> dict:
        return {}

    def __call__(self, task, rng: random.Random, n: int, state: dict) -> list[Item]:
        return [task.sample_train(rng) for _ in range(n)]

    def update(self, state: dict, items: list[Item], correct: list[list[float]]) -> None:
        """Observe the step's results: every prompt generated (all refill rounds) and the
        0/1 correctness of each of its completions. Stateful samplers update ``state``
        (a JSON-serialisable dict saved in checkpoints)."""


@register("sampler", "curriculum")
@dataclass(frozen=True)
class Curriculum(Sampler):
    """Groups (``Item.group`` labels of the pool, natural order: "n=2" < "n=3") from
    easiest to hardest. Train on the current group; move to the next once the EMA of
    its accuracy reaches ``advance_at`` after at least ``min_steps`` observed steps.
    A ``replay`` fraction of each call comes from the earlier groups (uniformly)."""

    pool_size: int = 2000
    seed: int = 0
    advance_at: float = 0.8
    min_steps: int = 5
    replay: float = 0.1
    ema: float = 0.7  # EMA decay of the current group's per-step accuracy

    def __post_init__(self):
        _check_pool(self.pool_size)
        if not 0.0 <= self.replay <= 1.0 or not 0.0 <= self.ema < 1.0:
            raise ValueError("replay must be in [0, 1] and ema in [0, 1)")

    def init_state(self) -> dict:
        return {"stage": 0, "acc": None, "steps": 0, "groups": []}

    def __call__(self, task, rng: random.Random, n: int, state: dict) -> list[Item]:
        pool, _ = pool_keys(task, self.pool_size, self.seed)
        groups = sorted({it.group for it in pool}, key=natural_key)
        state["groups"] = groups
        members = {g: [i for i, it in enumerate(pool) if it.group == g] for g in groups}
        stage = min(int(state["stage"]), len(groups) - 1)
        current = members[groups[stage]]
        earlier = [i for g in groups[:stage] for i in members[g]]
        taken: set[int] = set()
        out = []
        for _ in range(n):
            src = earlier if earlier and rng.random() < self.replay else current
            out.append(pool[pick(rng, src, taken)])
        return out

    def update(self, state: dict, items: list[Item], correct: list[list[float]]) -> None:
        groups = state.get("groups") or []
        if not groups:
            return
        label = groups[min(int(state["stage"]), len(groups) - 1)]
        res = [x for it, r in zip(items, correct) if it.group == label for x in r]
        if not res:
            return
        a = sum(res) / len(res)
        state["acc"] = a if state["acc"] is None else self.ema * state["acc"] + (1 - self.ema) * a
        state["steps"] += 1
        if (state["steps"] >= self.min_steps and state["acc"] >= self.advance_at
                and state["stage"] < len(groups) - 1):
            state.update(stage=state["stage"] + 1, acc=None, steps=0)


@register("sampler", "prompt_gdro")
@dataclass(frozen=True)
class PromptGDRO(Sampler):
    """Prompt-GDRO (ALGORITHMS.md §11; arXiv 2601.19280). [INFERRED] parts, our design:

    * Difficulty bins from ``groupo.difficulty.Classifier`` (pass@``pass_k`` of each
      prompt's latest rollouts, bins on ``edges``, hysteresis ``hysteresis``, unseen
      prompts in a "new" bin, slot ``len(edges) - 1``).
    * A step's samples count for the bin their prompt was in when drawn (the arm pulled);
      bin loss = intensive mean of (1 - correct) over its completions; EMA with Adam-style
      bias correction: m_b <- gamma m_b + (1-gamma) l_b, L_b = m_b / (1 - gamma^n_b).
    * q_b ∝ exp(eta L_b) over the non-empty bins (a bin not yet updated uses the largest
      observed L, 1.0 before any: optimism), mixed with uniform: (1-eps_u) q + eps_u/|bins|.
    * Draw a bin from q, then a prompt uniformly in it. Empty bins are skipped.
    """

    pool_size: int = 2000
    seed: int = 0
    edges: tuple[float, ...] = EDGES
    hysteresis: float = 0.05
    pass_k: int = 1
    gamma: float = 0.9
    eta: float = 1.0
    eps_uniform: float = 0.1

    def __post_init__(self):
        _check_pool(self.pool_size)
        check_edges(self.edges)
        if not 0.0 <= self.gamma < 1.0 or not 0.0 <= self.eps_uniform <= 1.0:
            raise ValueError("gamma must be in [0, 1) and eps_uniform in [0, 1]")

    @property
    def classifier(self) -> Classifier:
        return Classifier(tuple(self.edges), self.hysteresis, self.pass_k)

    def init_state(self) -> dict:
        slots = self.classifier.nbins + 1
        return {"cls": Classifier.init_state(), "m": [0.0] * slots, "n": [0] * slots}

    def losses(self, state: dict) -> list[float | None]:
        """Bias-corrected EMA loss of each slot (None: never updated)."""
        return [ema_value(m, n, self.gamma) for m, n in zip(state["m"], state["n"])]

    def distribution(self, state: dict, nonempty: list[int]) -> list[float]:
        """q over all slots (0 on empty ones)."""
        q = [0.0] * len(state["m"])
        if not nonempty:
            return q
        L = self.losses(state)
        seen = [L[b] for b in nonempty if L[b] is not None]
        prior = max(seen) if seen else 1.0
        vals = [L[b] if L[b] is not None else prior for b in nonempty]
        top = max(vals)
        w = [math.exp(self.eta * (v - top)) for v in vals]
        z = sum(w)
        for b, wb in zip(nonempty, w):
            q[b] = (1 - self.eps_uniform) * wb / z + self.eps_uniform / len(nonempty)
        return q

    def __call__(self, task, rng: random.Random, n: int, state: dict) -> list[Item]:
        pool, keys = pool_keys(task, self.pool_size, self.seed)
        cls = self.classifier
        members: list[list[int]] = [[] for _ in range(cls.nbins + 1)]
        for i, key in enumerate(keys):
            members[cls.bin_of(state["cls"], key)].append(i)
        nonempty = [b for b, m in enumerate(members) if m]
        q = self.distribution(state, nonempty)
        taken: set[int] = set()
        out = []
        for _ in range(n):
            open_ = [b for b in nonempty if any(i not in taken for i in members[b])] or nonempty
            z = sum(q[b] for b in open_)
            u, acc, b_pick = rng.random() * z, 0.0, open_[-1]
            for b in open_:
                acc += q[b]
                if u < acc:
                    b_pick = b
                    break
            out.append(pool[pick(rng, members[b_pick], taken)])
        return out

    def update(self, state: dict, items: list[Item], correct: list[list[float]]) -> None:
        observe_bins(self.classifier, self.gamma, state, items, correct, loss=True)



@register("sampler", "equitable")
@dataclass(frozen=True)
class Equitable(Sampler):
    """Share each call's prompts across task groups (``Item.group``) to maximise the
    *worst* group's accuracy, after "Adaptive Sampling Strategies to Construct Equitable
    Training Datasets" (Jan 2022; /work/shared/seeds/papers.txt): allocate a budget over
    subgroups by maximising a function (here the minimum) of group performance predicted
    from estimated group learning rates, estimated sequentially.

    Our rule (the paper's setting is data collection, not RL; the details are ours):
    * a_g = EMA (decay ``acc_decay``) of group g's per-step accuracy (mean of its results);
    * r_g = EMA (decay ``rate_decay``) of (change of a_g in a step) / (share g had),
      the accuracy gained per step per unit of budget share;
    * predicted accuracy with share s_g: a_g + r_g s_g. Shares maximise min_g of it over
      the groups with r_g > 0 by water-filling: s_g = max(floor, (t - a_g) / r_g) with the
      level t chosen so that the shares sum to 1; groups with r_g <= 0 get the floor
      ``min_share`` (at most 1/#groups). Low-accuracy, fast-learning groups get more.
    * Uniform shares until every group has ``warmup`` observed steps, or when no
      group has a positive rate. Counts per call: largest remainder of n·s_g.
    """

    pool_size: int = 2000
    seed: int = 0
    min_share: float = 0.05
    acc_decay: float = 0.7
    rate_decay: float = 0.7
    warmup: int = 2

    def __post_init__(self):
        _check_pool(self.pool_size)
        if not 0.0 <= self.min_share <= 1.0:
            raise ValueError(f"min_share must be in [0, 1], got {self.min_share}")

    def init_state(self) -> dict:
        return {"acc": {}, "rate": {}, "share": {}, "steps": {}}

    def shares(self, state: dict, groups: list[str]) -> dict[str, float]:
        G = len(groups)
        uniform = {g: 1.0 / G for g in groups}
        if any(state["steps"].get(g, 0) < self.warmup or g not in state["rate"] for g in groups):
            return uniform
        floor = min(self.min_share, 1.0 / G)
        acc = {g: state["acc"][g] for g in groups}
        rate = {g: state["rate"][g] for g in groups}
        pos = [g for g in groups if rate[g] > 0]
        if not pos:
            return uniform

        def alloc(t: float) -> dict[str, float]:
            return {g: max(floor, (t - acc[g]) / rate[g]) if g in pos else floor for g in groups}

        lo = min(acc[g] for g in pos)
        hi = lo + 1.0
        while sum(alloc(hi).values()) < 1.0:
            hi = lo + 2 * (hi - lo)
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if sum(alloc(mid).values()) < 1.0 else (lo, mid)
        s = alloc(hi)
        z = sum(s.values())
        return {g: v / z for g, v in s.items()}

    @staticmethod
    def counts(shares: dict[str, float], n: int) -> dict[str, int]:
        """Largest-remainder rounding of n·share (ties: group order)."""
        raw = {g: n * s for g, s in shares.items()}
        out = {g: int(math.floor(v)) for g, v in raw.items()}
        rest = sorted(shares, key=lambda g: -(raw[g] - out[g]))
        for g in rest[: n - sum(out.values())]:
            out[g] += 1
        return out

    def __call__(self, task, rng: random.Random, n: int, state: dict) -> list[Item]:
        pool, _ = pool_keys(task, self.pool_size, self.seed)
        groups = sorted({it.group for it in pool}, key=natural_key)
        members = {g: [i for i, it in enumerate(pool) if it.group == g] for g in groups}
        shares = self.shares(state, groups)
        state["share"] = dict(shares)
        taken: set[int] = set()
        out = [pool[pick(rng, members[g], taken)] for g, c in self.counts(shares, n).items() for _ in range(c)]
        rng.shuffle(out)
        return out

    def update(self, state: dict, items: list[Item], correct: list[list[float]]) -> None:
        res: dict[str, list[float]] = {}
        for it, r in zip(items, correct):
            res.setdefault(it.group, []).extend(float(x) for x in r)
        G = max(len(state["share"]), 1)
        floor = min(self.min_share, 1.0 / G) or 1e-3
        for g, v in res.items():
            if not v:
                continue
            a = sum(v) / len(v)
            old = state["acc"].get(g)
            new = a if old is None else self.acc_decay * old + (1 - self.acc_decay) * a
            state["acc"][g] = new
            state["steps"][g] = state["steps"].get(g, 0) + 1
            if old is not None:
                d = (new - old) / max(state["share"].get(g, 1.0 / G), floor)
                r = state["rate"].get(g)
                state["rate"][g] = d if r is None else self.rate_decay * r + (1 - self.rate_decay) * d
