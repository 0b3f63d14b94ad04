"""What a step generated, row by row, and the sample of it that goes to ``RUN/completions.jsonl``.

``collect`` keeps every row of the step (all refill rounds, the rows the filter dropped too) in a
``StepRows``; the loop adds the scoring step's advantages. The log takes the step's first groups,
whole, until ``log.completions_per_step`` rows (the last group may be cut): prompts are drawn at
random, so these are a random sample of prompts, and rows the filter dropped are in it, so a step
that trains nothing still shows what the model wrote. One JSON object per row:

    step, group (the prompt's index in the step), prompt (the rendered prompt, its end kept),
    completion (its start kept), rewards ({label: value}, None where a reward function returned
    None or a non-finite value), reward (the weighted total; None when no reward was finite),
    advantage (None for rows never scored: the filter dropped them), trained (the row is in the
    update: kept by the filter and by the advantage)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class StepRows:
    """Every row generated in one step, in generation order."""

    prompts: list[str]            # [N] the rendered prompt of each row
    texts: list[str]              # [N] completion text
    group: torch.Tensor           # [N] group (prompt) index within the step
    components: torch.Tensor      # [N, K] each reward function's value, NaN = None
    rewards: torch.Tensor         # [N] weighted total, NaN = no finite reward
    kept: torch.Tensor            # [N] bool, rows the filter kept (with a finite reward)
    advantages: torch.Tensor | None = None   # [N] float64 once scored, NaN on rows not kept
    trained: torch.Tensor | None = None      # [N] bool once scored: kept and in the advantage's keep mask

    def add_scores(self, advantages: torch.Tensor, keep: torch.Tensor) -> None:
        """The scoring step's ``advantages`` and ``keep`` ([n] over the kept rows, in order)."""
        idx = self.kept.nonzero().squeeze(1)
        self.advantages = torch.full((len(self.texts),), math.nan, dtype=torch.float64)
        self.advantages[idx] = advantages.detach().to(torch.float64).cpu()
        self.trained = torch.zeros(len(self.texts), dtype=torch.bool)
        self.trained[idx] = keep.cpu()


def sample_rows(group: torch.Tensor, n: int) -> list[int]:
    """Row indices of the first groups (in order of appearance), whole, until ``n`` rows."""
    rows_of: dict[int, list[int]] = {}
    for i, g in enumerate(group.tolist()):
        rows_of.setdefault(g, []).append(i)
    out: list[int] = []
    for rows in rows_of.values():
        if len(out) >= n:
            break
        out += rows[: n - len(out)]
    return out


def due(step: int, every: int) -> bool:
    """Steps that log completions: step 1 and every ``every``-th (never when ``every`` is 0)."""
    return every > 0 and (step == 1 or step % every == 0)


def completion_rows(step: int, rows: StepRows, names, n: int, max_chars: int) -> list[dict]:
    """The JSON objects of the step's sample (see the module docstring)."""
    out = []
    for i in sample_rows(rows.group, n):
        adv = None if rows.advantages is None else _num(rows.advantages[i])
        out.append({"step": step, "group": int(rows.group[i]), "prompt": clip(rows.prompts[i], max_chars, tail=True),
                    "completion": clip(rows.texts[i], max_chars),
                    "rewards": {name: _num(rows.components[i, k]) for k, name in enumerate(names)},
                    "reward": _num(rows.rewards[i]), "advantage": adv,
                    "trained": bool(rows.trained[i]) if rows.trained is not None else False})
    return out


def clip(text: str, n: int, tail: bool = False) -> str:
    """``text`` cut to ``n`` characters with an ellipsis (its end with ``tail``); 0 = whole."""
    if n <= 0 or len(text) <= n:
        return text
    return "…" + text[len(text) - n + 1:] if tail else text[: n - 1] + "…"


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
