"""Replay axis: R³'s cross-context replay and in-context self-reflection.

R³ (arXiv 2601.19620; ALGORITHMS.md §10) names three fixes for advantage collapse when a
group's samples are all wrong. The paper's equations and code are not public; the
design below is the spec's [INFERRED] one and every knob is configurable (OUR DESIGN):

* Cross-context replay (CCR). A per-question buffer keeps the most recent correct
  trajectories (token ids, text, truncation flag, step) of each question, at most
  ``buffer_size``. When a fresh group of a question has no correct row, its last
  ``replace_k`` rows are REPLACED by buffered correct trajectories of the SAME question
  (most recent first), so G stays constant and the group's reward variance returns.
  Replayed rows are re-scored under the current prompt (format rewards may depend on it)
  and their old log-probs are recomputed by the training step from the current policy,
  like any other row ("cross-context": the trajectory may come from another prompt
  wording, e.g. a reflection prompt). ``symmetric``: an all-correct group gets a buffered
  wrong trajectory instead. Replayed rows are never written back to the buffer.
  The buffer is keyed by the plain question text, so a row can only ever be replayed into
  a group of its own question (tested).
* In-context self-reflection (ISR). A question whose groups had no correct row on
  ``isr_after`` consecutive visits gets, on its next visit, the prompt
  ``isr_template.format(question=..., previous_attempt=...)`` with the last failed
  completion (cut to ``isr_max_chars``). The rollouts of that prompt form their own group.
  The paper's reflection text is not available; the default is the spec's placeholder
  without its ``\\boxed{}`` sentence (the task's own answer format applies).
* The structural-entropy ranking reward is a shaping component: ``entropy_rank`` in
  ``groupo/algo/shaping/entropy_rank.py``.

State (``init_state``) is JSON-serialisable and saved in checkpoints. The buffer holds
at most ``max_questions`` questions (least recently updated evicted first).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..protocols import Replay
from ..registry import register

DEFAULT_ISR = ("{question}\n\nA previous attempt at this problem was incorrect:\n{previous_attempt}\n\n"
               "Identify the mistake and solve the problem again.")


@register("replay", "none")
@dataclass(frozen=True)
class NoReplay(Replay):
    """No replay and no reflection: prompts and groups are used as generated."""

    active: ClassVar[bool] = False

    def init_state(self) -> dict:
        return {}

    def reflect(self, items, state) -> list:
        return [None] * len(items)

    def restore(self, roll, correct, items, state, pad_id):
        return roll, torch.zeros(len(roll.texts), dtype=torch.bool)

    def record(self, roll, correct, items, replayed, state, step) -> None:
        return None


def _touch(d: dict, key: str, default):
    """d[key] moved to the end of the insertion order (most recently used)."""
    v = d.pop(key, default)
    d[key] = v
    return v


@register("replay", "r3")
@dataclass(frozen=True)
class R3Replay(Replay):
    """R³ cross-context replay + in-context self-reflection (arXiv 2601.19620, §10 of the
    spec; equations not published, all of this is our design, see the module docstring)."""

    active: ClassVar[bool] = True

    ccr: bool = True
    replace_k: int = 1            # rows of an all-fail group replaced (capped at G - 1)
    buffer_size: int = 4          # trajectories kept per question (each of correct / wrong)
    symmetric: bool = False       # all-correct groups get a buffered wrong trajectory
    replay_weight: float = 1.0    # row weight of replayed rows in the loss
    max_questions: int = 20000
    isr: bool = True
    isr_after: int = 2            # consecutive all-fail visits before a reflection prompt
    isr_max_chars: int = 1000
    isr_template: str = DEFAULT_ISR

    def __post_init__(self):
        if self.replace_k < 1 or self.buffer_size < 1 or self.max_questions < 1:
            raise ValueError("replace_k, buffer_size and max_questions must be >= 1")
        if self.isr_after < 1 or self.isr_max_chars < 1:
            raise ValueError("isr_after and isr_max_chars must be >= 1")
        if not self.replay_weight >= 0.0:
            raise ValueError(f"replay_weight must be >= 0, got {self.replay_weight}")
        if "{question}" not in self.isr_template or "{previous_attempt}" not in self.isr_template:
            raise ValueError("isr_template must contain {question} and {previous_attempt}")

    def init_state(self) -> dict:
        return {"buf": {}, "fails": {}}

    # ------------------------------------------------------------------ ISR
    def reflect(self, items, state) -> list:
        """Per item: the reflection question text, or None for the plain question."""
        out = []
        for it in items:
            f = state["fails"].get(it.question) if self.isr else None
            if f and f[0] >= self.isr_after and f[1]:
                out.append(self.isr_template.format(question=it.question, previous_attempt=f[1]))
            else:
                out.append(None)
        return out

    # ------------------------------------------------------------------ CCR
    def restore(self, roll, correct: torch.Tensor, items, state, pad_id: int):
        """Replace rows of all-fail (and, if symmetric, all-correct) groups of one generation
        round by buffered trajectories of the same question. ``items[g]`` is the item of
        group g. Returns (new rollout, replayed bool [N])."""
        n = len(roll.texts)
        replayed = torch.zeros(n, dtype=torch.bool)
        if not self.ccr or n == 0:
            return roll, replayed
        plan: dict[int, list] = {}
        for gid in torch.unique(roll.group).tolist():
            rows = (roll.group == gid).nonzero().squeeze(1).tolist()
            if len(rows) < 2:
                continue
            c = correct[rows]
            kind = "pos" if c.sum() == 0 else ("neg" if self.symmetric and bool((c >= 1).all()) else None)
            if kind is None:
                continue
            stored = state["buf"].get(items[gid].question, {}).get(kind, [])
            k = min(self.replace_k, len(rows) - 1, len(stored))
            for row, traj in zip(rows[len(rows) - k:], reversed(stored[len(stored) - k:])):
                plan[row] = traj
        if not plan:
            return roll, replayed
        width = max([roll.completion_ids.shape[1]] + [len(t["ids"]) for t in plan.values()])
        ids, mask = roll.completion_ids, roll.completion_mask
        if width > ids.shape[1]:
            extra = width - ids.shape[1]
            ids = torch.cat([ids, ids.new_full((n, extra), pad_id)], dim=1)
            mask = torch.cat([mask, mask.new_zeros((n, extra))], dim=1)
        ids, mask, trunc, texts = ids.clone(), mask.clone(), roll.truncated.clone(), list(roll.texts)
        for row, t in plan.items():
            L = len(t["ids"])
            ids[row] = pad_id
            ids[row, :L] = torch.tensor(t["ids"], dtype=ids.dtype)
            mask[row] = 0
            mask[row, :L] = 1
            trunc[row] = bool(t["truncated"])
            texts[row] = t["text"]
            replayed[row] = True
        slp = roll.sampler_logp
        if slp is not None:     # replayed rows were not sampled now: NaN = no importance correction
            slp = torch.nn.functional.pad(slp, (0, width - slp.shape[1]))
            slp[replayed] = float("nan")
        pv = roll.policy_version
        if pv is not None:      # ... and have no weights version
            pv = pv.clone()
            pv[replayed] = -1
        return type(roll)(roll.prompt_ids, roll.prompt_mask, ids, mask, trunc, roll.group, texts, slp, pv), replayed

    def record(self, roll, correct: torch.Tensor, items, replayed: torch.Tensor, state, step: int) -> None:
        """After a step: buffer this step's fresh trajectories and count failures per question."""
        buf, fails = state["buf"], state["fails"]
        lengths = roll.completion_mask.sum(1).long().tolist()
        for gid in torch.unique(roll.group).tolist():
            rows = (roll.group == gid).nonzero().squeeze(1).tolist()
            q = items[gid].question
            fresh = [r for r in rows if not bool(replayed[r])]
            if not fresh:
                continue
            ok = [r for r in fresh if correct[r] >= 1]
            if self.ccr:
                entry = _touch(buf, q, {"pos": [], "neg": []})
                for r in fresh:
                    kind = "pos" if correct[r] >= 1 else "neg"
                    if kind == "neg" and not self.symmetric:
                        continue
                    entry[kind].append({"ids": roll.completion_ids[r, : lengths[r]].tolist(),
                                        "text": roll.texts[r], "truncated": bool(roll.truncated[r]),
                                        "step": int(step)})
                    del entry[kind][: -self.buffer_size]
                while len(buf) > self.max_questions:
                    del buf[next(iter(buf))]
            if self.isr:
                if ok:
                    fails.pop(q, None)
                else:
                    f = _touch(fails, q, [0, ""])
                    f[0] += 1
                    f[1] = roll.texts[fresh[0]][: self.isr_max_chars]
                    while len(fails) > self.max_questions:
                        del fails[next(iter(fails))]
