"""``RewardSet``: several reward components, their weights and the combined reward.

Specs follow TRL's ``reward_funcs`` + ``reward_weights`` (GRPOTrainer) and open-r1's
list of reward names: ``[{"name": "correct", "weight": 1.0}, {"name": "format",
"weight": 0.1, "pattern": "..."}]``; each spec's other keys are the component's
parameters (validated by ``registry.build``); ``label`` names the column in logs.

Combination = TRL's ``nansum(rewards * weights)`` over components: a ``None``
(NaN) component counts as 0, except that a row whose components are all NaN
stays NaN, so that the caller can skip it (TRL would give it 0).
"""
from __future__ import annotations

import torch

from ..registry import RegistryError, build
from ..types import Item


class RewardSet:
    """Components built from ``specs``; ``names`` (labels, made unique) and ``weights`` [K]."""

    def __init__(self, specs: list[dict | str]):
        if isinstance(specs, (dict, str)) or not specs:
            raise RegistryError("rewards: expected a non-empty list of reward specs, e.g. [{name: correct}]")
        self.components, names, weights = [], [], []
        for i, spec in enumerate(specs):
            where = f"rewards[{i}]"
            if isinstance(spec, str):
                spec = {"name": spec}
            if not isinstance(spec, dict) or "name" not in spec:
                raise RegistryError(f"{where}: expected a mapping with a 'name', got {spec!r}")
            params = dict(spec)
            name = params.pop("name")
            weight = params.pop("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise RegistryError(f"{where}.weight: expected a number, got {weight!r}")
            label = params.pop("label", None) or str(name)
            self.components.append(build("reward", str(name), params, where=where))
            names.append(str(label))
            weights.append(float(weight))
        self.names = _unique(names)
        self.weights = torch.tensor(weights, dtype=torch.float32)  # [K]

    def __len__(self) -> int:
        return len(self.components)

    def __call__(self, completions: list[str], items: list[Item], prompts: list[str] | None = None,
                 completion_ids: list | None = None, state=None) -> torch.Tensor:
        """Per-component rewards, float32 [N, K]; NaN where a component returned None. ``completion_ids``
        and ``state`` reach the components (TRL's ``completion_ids`` and ``trainer_state``)."""
        n = len(completions)
        if len(items) != n or (prompts is not None and len(prompts) != n):
            raise ValueError(f"RewardSet: {n} completions, {len(items)} items"
                             + (f", {len(prompts)} prompts" if prompts is not None else ""))
        out = torch.full((n, len(self.components)), float("nan"), dtype=torch.float32)  # [N, K]
        for k, (comp, name) in enumerate(zip(self.components, self.names)):
            values = comp(completions, items, prompts=prompts, completion_ids=completion_ids, state=state)
            if len(values) != n:
                raise ValueError(f"reward '{name}' returned {len(values)} values for {n} completions")
            out[:, k] = torch.tensor([float("nan") if v is None else float(v) for v in values], dtype=torch.float32)
        return out

    def combine(self, components: torch.Tensor) -> torch.Tensor:
        """Weighted sum over K with NaN as 0 ([N, K] -> [N]); all-NaN rows give NaN."""
        if components.dim() != 2 or components.shape[1] != len(self.components):
            raise ValueError(f"combine: expected [N, {len(self.components)}], got {list(components.shape)}")
        w = self.weights.to(components.device, components.dtype)
        total = torch.nansum(components * w, dim=1)  # [N]
        return torch.where(torch.isnan(components).all(dim=1), torch.full_like(total, float("nan")), total)

    def check(self, item: Item, prompt: str) -> None:
        """A dry call of every user reward function on one row (before any model loads)."""
        from .user import UserReward

        for comp in self.components:
            if isinstance(comp, UserReward):
                comp.check(item, prompt)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}*{w:g}" for n, w in zip(self.names, self.weights.tolist()))
        return f"RewardSet({parts})"


def _unique(names: list[str]) -> list[str]:
    """Make labels unique: a repeated label gets ``_2``, ``_3``, ..."""
    out: list[str] = []
    for name in names:
        label, k = name, 1
        while label in out:
            k += 1
            label = f"{name}_{k}"
        out.append(label)
    return out
