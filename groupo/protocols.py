"""What each axis offers: one ``typing.Protocol`` per axis.

A component is a frozen dataclass registered on an axis (``groupo.registry.register``); its
fields are its hyperparameters. It subclasses its axis's protocol, which states the methods the
loop calls and gives the optional capabilities their defaults (``needs_logp = False``, ...), so
the loop reads them as plain attributes instead of probing with ``getattr``. ``register`` checks
that a class has every member of its axis's protocol.

Shapes: N rows (completions), T completion tokens, K reward components.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:   # the protocols name these types; importing them here would load torch
    import torch

    from .rollout.base import Rollout
    from .types import AdvantageResult, Batch, Item


@runtime_checkable
class Component(Protocol):
    """Members every component has."""

    def check_config(self, cfg) -> None:
        """Check settings of other sections this component depends on (raise ValueError)."""
        return None


@runtime_checkable
class Task(Component, Protocol):
    """Prompts with gold answers. ``eval_items`` is fixed by the seed; ``sample_train`` never
    returns an item whose question is in the eval set (see ``groupo.tasks.base.Task``)."""

    def eval_items(self) -> list[Item]: ...

    def sample_train(self, rng: random.Random) -> Item: ...

    def train_pool(self, size: int, seed: int = 0) -> list[Item]: ...


@runtime_checkable
class Reward(Component, Protocol):
    """One reward per completion, or None (this reward does not apply to that row). ``prompts``:
    the rendered prompt of each row; ``completion_ids``: the generated token ids of each row;
    ``state``: the training step (``global_step``, ``max_steps``), as TRL's ``trainer_state``."""

    def __call__(self, completions: list[str], items: list[Item], prompts: list[str] | None = None,
                 completion_ids: list | None = None, state: Any = None) -> list[float | None]: ...


@runtime_checkable
class Shaping(Component, Protocol):
    """Transforms the step's rewards before the advantage. ``needs_logp``: the loop fills
    ``batch.extra["seq_logp"]`` [N] (old-policy mean token log-prob); ``needs_entropy``: also
    ``batch.extra["tok_entropy"]`` [N, T]."""

    needs_logp: ClassVar[bool] = False
    needs_entropy: ClassVar[bool] = False

    def __call__(self, batch: Batch) -> Batch: ...


@runtime_checkable
class Advantage(Component, Protocol):
    """Per-row advantages [N] (per-token [N, T] when ``per_token``), a keep mask [N] and per-row
    weights [N]. Optional inputs the loop provides when a component asks:

    * ``needs_greedy``: one greedy (temperature 0) completion per prompt, generated with the
      rollout backend and scored with the reward functions, not trained on; its reward reaches
      ``batch.extra["greedy_reward"]`` [P], one value per group id (ReMax);
    * ``needs_values``: ``batch.extra["values"]`` [N, T], the critic's values V(s_t) of the
      completion tokens before the update (the ``critic`` section; PPO with GAE);
    * ``needs_ref_logp``: ``batch.extra["old_logp"]`` and ``["ref_logp"]`` [N, T] (the old and
      the reference policy's token log-probs: a KL penalty folded into the rewards);
    * ``needs_sum_pi2``: ``batch.extra["old_logp"]`` and ``["sum_pi2"]`` [N, T], the old policy's
      token log-probs and sum over the vocabulary of pi^2 at each completion position, both of
      the temperature-scaled distribution the rows were sampled from (OTB; sum_pi2 is 0 on
      padding).

    ``per_token``: the advantages are [N, T] (the objective must accept them: its
    ``token_advantages``) and ``AdvantageResult.returns`` [N, T] holds the critic's targets."""

    needs_greedy: ClassVar[bool] = False
    needs_values: ClassVar[bool] = False
    needs_ref_logp: bool = False
    needs_sum_pi2: ClassVar[bool] = False
    per_token: ClassVar[bool] = False

    def __call__(self, batch: Batch) -> AdvantageResult: ...


@runtime_checkable
class Weighting(Component, Protocol):
    """Per-row (per-question) loss weights [N], multiplied into the advantage's weights."""

    def __call__(self, batch: Batch, result: AdvantageResult) -> torch.Tensor: ...


@runtime_checkable
class Filter(Component, Protocol):
    """Which rows are trained: a bool mask [N]. With ``refill`` the loop samples more prompts,
    at most ``max_rounds`` extra rounds, until the step has its prompts."""

    refill: bool = False
    max_rounds: int = 0

    def __call__(self, batch: Batch) -> torch.Tensor: ...

    def signal(self, batch: Batch) -> torch.Tensor:
        """The per-row values [N] whose being equal within a group makes it a zero-variance group
        (the ``zero_var/frac`` metric): the filter's own signal, by default the rewards (equal
        rewards give a group-relative advantage of 0)."""
        return batch.rewards


@runtime_checkable
class Objective(Component, Protocol):
    """The per-token surrogate loss [N, T] (minimised) and token metrics. ``full_batch``
    objectives are not sums over tokens and implement ``batch_loss`` instead (DisCO).
    ``zero_advantage_no_gradient``: a row with advantage 0 adds exactly nothing to the loss, so
    the loop may skip its forward and backward passes. ``token_advantages``: ``advantages`` may
    be per-token [N, T] (a ``per_token`` advantage such as GAE) as well as per-row [N]."""

    full_batch: ClassVar[bool] = False
    zero_advantage_no_gradient: ClassVar[bool] = False
    token_advantages: ClassVar[bool] = False

    def __call__(self, logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                 mask: torch.Tensor) -> tuple[torch.Tensor, dict]: ...

    def batch_loss(self, logp, old_logp, mask, group, correct) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError(f"{type(self).__name__} is not a full-batch objective")


@runtime_checkable
class Aggregation(Component, Protocol):
    """Token weights [N, T] that turn token losses into one scalar (rows with keep False: 0)."""

    def __call__(self, mask: torch.Tensor, keep: torch.Tensor | None, max_length: int | None
                 ) -> torch.Tensor: ...


@runtime_checkable
class KL(Component, Protocol):
    """A per-token KL estimate [N, T] against the reference policy, scaled by ``coef``."""

    coef: float

    def __call__(self, logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Critic(Component, Protocol):
    """A learned value function for advantages that need ``batch.extra["values"]`` (GAE).
    ``active`` False (``none``): no value model. Active: the loop builds a value model (the
    policy's architecture with a scalar head, train/critic.py), computes V_old [N, T] before the
    update and trains it with its own optimizer on the same micro-batches; ``__call__`` is the
    per-token value loss [N, T] (minimised) and per-token metrics."""

    active: ClassVar[bool] = False

    def __call__(self, values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor
                 ) -> tuple[torch.Tensor, dict]: ...


@runtime_checkable
class Sampler(Component, Protocol):
    """Which task items each step trains on. Its state is a JSON-serialisable dict kept in
    checkpoints; ``update`` sees every prompt of the step and the 0/1 result of each completion."""

    def init_state(self) -> dict: ...

    def __call__(self, task: Task, rng: random.Random, n: int, state: dict) -> list[Item]: ...

    def update(self, state: dict, items: list[Item], correct: list[list[float]]) -> None: ...


@runtime_checkable
class Allocation(Component, Protocol):
    """Rollouts per prompt (``base`` = generation.group_size); state as for samplers."""

    def init_state(self) -> dict: ...

    def __call__(self, items: list[Item], base: int, state: dict) -> list[int]: ...

    def update(self, state: dict, items: list[Item], correct: list[list[float]]) -> None: ...


@runtime_checkable
class Replay(Component, Protocol):
    """Past rollouts mixed into the step (R³). ``active`` False: the loop skips every hook.
    ``replay_weight``: loss weight of replayed rows."""

    active: ClassVar[bool] = False
    replay_weight: float = 1.0

    def init_state(self) -> dict: ...

    def reflect(self, items: list[Item], state: dict) -> list[str | None]: ...

    def restore(self, roll: Rollout, correct: torch.Tensor, items: list[Item], state: dict,
                pad_id: int) -> tuple[Rollout, torch.Tensor]: ...

    def record(self, roll: Rollout, correct: torch.Tensor, items: list[Item], replayed: torch.Tensor,
               state: dict, step: int) -> None: ...


@runtime_checkable
class Template(Component, Protocol):
    """A task question -> the model's prompt text. ``render_at`` is what the loop calls: prompt
    ``index`` of ``step``; templates that vary per prompt (prompt augmentation) key on it."""

    def __call__(self, question: str, tokenizer) -> str: ...

    def render_at(self, question: str, tokenizer, step: int, index: int) -> str:
        return self(question, tokenizer)

    def render_messages(self, messages, tokenizer) -> str:
        """A conversational prompt (chat messages): the tokenizer's chat template."""
        from .prompts.render import chat_prompt

        return chat_prompt(messages, tokenizer)


@runtime_checkable
class RolloutBackend(Component, Protocol):
    """A generation backend: ``group_sizes[j]`` completions of ``prompts[j]`` as a ``Rollout``.
    ``generator``: one torch.Generator, or one per prompt. ``autocast``: the training forward's
    compute dtype (None: the weights' dtype). ``weights_changed`` is called after every
    optimizer update (backends holding their own copy of the weights resynchronise).
    ``tis_cap`` > 0: the backend returns its own token log-probs and the loss corrects the
    mismatch with truncated importance weights capped at ``tis_cap``. ``overlap``: the loop
    calls ``prefetch`` with the next step's first request right after a step's rollouts are
    collected, so generation runs while the step trains (one-step off-policy, train/prefetch.py)."""

    tis_cap: float = 0.0
    overlap: bool = False

    def generate(self, model, tokenizer, prompts: list[str], group_sizes: list[int], max_new_tokens: int,
                 eos_ids: list[int], temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 generator: Any = None, autocast: Any = None) -> Rollout: ...

    def weights_changed(self, model) -> None:
        return None

    def prepare(self, model, autocast: Any = None) -> None:
        """Called by every process before step 1 (an engine whose creation is a collective must exist
        on every rank, even one that gets no prompt)."""
        return None

    def prefetch(self, model, tokenizer, prompts: list[str], group_sizes: list[int], max_new_tokens: int,
                 eos_ids: list[int], temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 generator: Any = None, autocast: Any = None) -> None:
        """Start generating what ``generate`` is expected to be called with next (``overlap``);
        a later ``generate`` with exactly these arguments returns that result. Leaves
        ``generator`` as it is."""
        return None

    def policy_version(self) -> int | None:
        """The version of the weights being trained (optimizer updates applied so far) for a
        backend whose rows carry ``Rollout.policy_version`` (they may be older: ``overlap``); None:
        rows always come from the current weights."""
        return None


@runtime_checkable
class Forward(Component, Protocol):
    """Log-probs [N, T] (and entropies [N, T] when asked, else None) of completion tokens under
    ``model``; every path equals the naive forward (tested). Called with ``with_sum_pi2=True``
    (only for an advantage with ``needs_sum_pi2``), a third output: sum_v pi_v^2 [N, T] of each
    token's distribution (``groupo.model.logprobs.token_logprobs``)."""

    def logprobs(self, model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                 temperature: float = 1.0, with_entropy: bool = False, autocast: Any = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


AXES: dict[str, type] = {
    "task": Task, "reward": Reward, "shaping": Shaping, "advantage": Advantage, "weighting": Weighting,
    "filter": Filter, "objective": Objective, "aggregation": Aggregation, "kl": KL, "critic": Critic, "sampler": Sampler,
    "allocation": Allocation, "replay": Replay, "template": Template, "rollout": RolloutBackend, "forward": Forward,
}


def members(proto: type) -> list[str]:
    """The names a class must have to satisfy ``proto`` (methods and attributes, inherited ones too)."""
    out: dict[str, None] = {}
    for klass in reversed(proto.__mro__):
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        for name in list(getattr(klass, "__annotations__", {})) + list(vars(klass)):
            if name == "__call__" or not name.startswith("_"):
                out[name] = None
    return list(out)
