"""Steps that train no row, and settings that make every advantage 0.

A step trains no row when no row is both trained (kept by the filter and by the advantage) and
has a non-zero advantage: its policy-gradient update is zero (a KL penalty may still move the
weights). ``no_signal`` names the first reason that applies, in this order:

    no_reward      no row had a finite reward (every reward function returned None, NaN or inf)
    filter         the filter dropped every group
    group_size_1   every group has one completion: a group-relative advantage is 0
    temperature_0  greedy sampling makes a prompt's completions identical: equal rewards
    zero_variance  every trained group had equal rewards, so every advantage was 0

Every step's metrics have ``rows/no_signal`` (1 or 0); such a step also has
``rows/no_signal_reason`` (the word above; metrics.jsonl only, trackers take numbers), and
``NoSignalWarning`` prints it on the console, at most once every ``log.warn_every`` steps.
``start_warning`` is the same check made once before training, from the configuration.
"""
from __future__ import annotations

import torch

from ..types import Batch
from .completions import StepRows

REASONS = {
    "no_reward": "no row had a finite reward (every reward function returned None, NaN or inf)",
    "filter": "the filter ({filter}) dropped every group",
    "group_size_1": "every group has one completion, so its group-relative advantage is 0",
    "temperature_0": "generation.temperature=0 makes a prompt's completions identical, so every advantage is 0",
    "zero_variance": "every group's rewards were equal, so every advantage was 0",
}


def no_signal(rows: StepRows, temperature: float) -> dict:
    """``rows/no_signal`` and, when it is 1, ``rows/no_signal_reason`` for one step's rows."""
    if rows.advantages is not None and bool((rows.trained & (rows.advantages != 0)).any()):
        return {"rows/no_signal": 0}
    return {"rows/no_signal": 1, "rows/no_signal_reason": _reason(rows, temperature)}


def _reason(rows: StepRows, temperature: float) -> str:
    if not bool(torch.isfinite(rows.rewards).any()):
        return "no_reward"
    if not bool(rows.kept.any()):
        return "filter"
    if bool((torch.unique(rows.group[rows.kept], return_counts=True)[1] == 1).all()):
        return "group_size_1"
    return "temperature_0" if temperature == 0 else "zero_variance"


class NoSignalWarning:
    """One console line for a step that trains no row: the first such step, then at most one
    every ``every`` steps, counting the ones not printed in between (no flood)."""

    def __init__(self, say, every: int, filter_name: str):
        self.say, self.every, self.filter = say, max(1, every), filter_name
        self.last: int | None = None     # the step last warned about
        self.quiet = 0                   # such steps since then, not printed

    def __call__(self, step: int, m: dict) -> None:
        if not m.get("rows/no_signal"):
            return
        if self.last is not None and step - self.last < self.every:
            self.quiet += 1
            return
        why = REASONS[m["rows/no_signal_reason"]].format(filter=self.filter)
        if m["rows/no_signal_reason"] == "filter" and isinstance(m.get("zero_var/frac"), float):
            why += f" (zero-variance groups {m['zero_var/frac']:.0%})"
        more = f" ({self.quiet} more such steps since step {self.last})" if self.quiet else ""
        self.say(f"[yellow]warning: step {step} trained no row: {why}{more}[/]")
        self.last, self.quiet = step, 0


def start_warning(cfg) -> str | None:
    """One line when ``generation.group_size=1`` or ``temperature=0`` makes every advantage of
    the configured advantage 0, else None. The advantage is tried on a batch whose groups have
    equal rewards (different across groups), so advantages that do not centre on the group's
    rewards (NGRPO's virtual sample, ...) are not warned about."""
    g = cfg.generation
    if g.group_size > 1 and g.temperature > 0:
        return None
    if not _all_zero(cfg.advantage, list(cfg.rewards.names), 1 if g.group_size == 1 else g.group_size):
        return None
    what = "generation.group_size=1" if g.group_size == 1 else "generation.temperature=0"
    why = "a group of one" if g.group_size == 1 else "a prompt's completions are identical, so a group"
    return (f"[yellow]warning: {what}: {why} has equal rewards and advantage '{cfg.advantage.component_name}' "
            f"gives it 0: no row will train[/]")


def _all_zero(advantage, names: list[str], size: int) -> bool:
    """Whether ``advantage`` gives 0 to every kept row of groups of ``size`` equal rewards."""
    levels = torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, 0.25], dtype=torch.float64)
    group = torch.arange(len(levels)).repeat_interleave(size)
    r, lengths = levels[group], 3 + 2 * group
    mask = (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).float()
    batch = Batch(rewards=r, group=group, reward_components=r[:, None].repeat(1, max(1, len(names))),
                  reward_weights=torch.ones(max(1, len(names))), reward_names=tuple(names) or ("reward",),
                  correct=(r >= 1).float(), lengths=lengths, truncated=torch.zeros(len(r), dtype=torch.bool),
                  max_length=int(lengths.max()), completion_mask=mask)
    try:
        res = advantage(batch)
    except Exception:  # noqa: BLE001 - a component this probe does not fit: no warning
        return False
    return bool((res.advantages[res.keep] == 0).all())
