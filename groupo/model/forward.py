"""Forward paths (axis ``forward``): log-probabilities of completion tokens under a causal LM.

* ``naive``: prompts left-padded to Lp and completions right-padded to T, concatenated to
  [N, Lp+T], one forward pass; the last column is left out (the last completion token predicts
  nothing scored). ``completion_logprobs`` is this path as a function, the reference every other
  path is tested against.
* ``shared``: Prefix Grouper (arXiv 2506.05433): each prompt computed once for its group, with
  split attention where the model family allows, else one dense 4D mask (``model/prefix.py``).
* ``dense``: Prefix Grouper with the dense mask only.
* ``auto`` (default): the cheapest of the three by the cost model of ``model/prefix.py``, when
  it saves at least 10%, else ``naive``.

``logprob_chunk`` > 0 (every path, when it ends up naive): the output head and log-softmax run on
chunks of that many positions under activation checkpointing, so [N, T, V] logits never live at
once. Models the prefix paths cannot run (``prefix.supports``) take the naive path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..protocols import Forward
from ..registry import register
from . import prefix
from .logprobs import autocast as autocast_ctx
from .logprobs import build_inputs, token_logprobs


def completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                        temperature: float = 1.0, with_entropy: bool = False, chunk: int = 0, autocast=None,
                        with_sum_pi2: bool = False):
    """The naive forward: per-token log pi(o_t | q, o_<t) [N, T] (and entropies [N, T], else None);
    with ``with_sum_pi2`` a third output, sum_v pi_v^2 [N, T] (``logprobs.token_logprobs``)."""
    input_ids, attn, pos = build_inputs(prompt_ids, prompt_mask, completion_ids, completion_mask)
    T = completion_ids.shape[1]
    if T:       # the last completion token is no input to anything scored: left out of the forward
        input_ids, attn, pos = input_ids[:, :-1], attn[:, :-1], pos[:, :-1]
    with autocast_ctx(input_ids.device, autocast):
        if chunk:
            return _chunked(model, input_ids, attn, pos, completion_ids, temperature, with_entropy, chunk,
                            with_sum_pi2)
        out = model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=False,
                    logits_to_keep=T)
    logits = out.logits[:, out.logits.shape[1] - T:, :].float()   # [N, T, V] predicting the completion tokens
    return token_logprobs(logits, completion_ids, temperature, with_entropy, with_sum_pi2)


def _chunked(model, input_ids, attn, pos, completion_ids, temperature, with_entropy, chunk: int,
             with_sum_pi2: bool = False):
    """The same numbers with at most ``chunk`` completion positions' logits alive at once: the
    decoder runs once, then the output head + log-softmax run per chunk under activation
    checkpointing, so backward recomputes each chunk's logits instead of storing [N, T, V]. For
    heads that are one linear layer on the final hidden state (no logit soft-capping)."""
    from torch.utils.checkpoint import checkpoint

    T = completion_ids.shape[1]
    body, head = model.get_decoder(), model.get_output_embeddings()
    hidden = body(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=False).last_hidden_state
    hidden = hidden[:, hidden.shape[1] - T:, :]              # [N, T, H] (the input ends before the last token)

    def part(h, ids):
        return token_logprobs(head(h).float(), ids, temperature, False)[0]

    logps, ents, s2 = [], [], []
    for a in range(0, T, chunk):
        h, ids = hidden[:, a:a + chunk], completion_ids[:, a:a + chunk]
        logps.append(checkpoint(part, h, ids, use_reentrant=False) if torch.is_grad_enabled() else part(h, ids))
        if with_entropy or with_sum_pi2:
            with torch.no_grad():
                out = token_logprobs(head(h.detach()).float(), ids, temperature, with_entropy, with_sum_pi2)
            if with_entropy:
                ents.append(out[1])
            if with_sum_pi2:
                s2.append(out[2])
    out = torch.cat(logps, 1), (torch.cat(ents, 1) if with_entropy else None)
    return (*out, torch.cat(s2, 1)) if with_sum_pi2 else out


@dataclass(frozen=True)
class _Path(Forward):
    logprob_chunk: int = 0        # > 0: output head in chunks of this many positions (naive path)
    mode: ClassVar[str] = "off"   # prefix.choose's mode

    def __post_init__(self):
        if self.logprob_chunk < 0:
            raise ValueError(f"logprob_chunk must be >= 0, got {self.logprob_chunk}")

    def logprobs(self, model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                 temperature: float = 1.0, with_entropy: bool = False, autocast=None, with_sum_pi2: bool = False):
        if self.mode != "off":
            groups = prefix.plan(prompt_ids, prompt_mask, completion_mask)[0] if prefix.supports(model) else None
            path = prefix.choose(model, prompt_ids, prompt_mask, completion_mask, self.mode, groups)
            if path != "naive":
                fn = prefix.grid_logprobs if path == "split" else prefix.shared_prefix_logprobs
                with autocast_ctx(prompt_ids.device, autocast):
                    return fn(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature,
                              with_entropy, groups=groups, with_sum_pi2=with_sum_pi2)
        return completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature,
                                   with_entropy, self.logprob_chunk, autocast, with_sum_pi2=with_sum_pi2)


@register("forward", "naive")
@dataclass(frozen=True)
class Naive(_Path):
    """Every row's prompt and completion in one padded forward pass (the reference path)."""

    mode: ClassVar[str] = "off"


@register("forward", "auto")
@dataclass(frozen=True)
class Auto(_Path):
    """The cheapest of naive, split-attention and dense-mask prefix sharing by the cost model
    (``prefix.costs``), when it saves at least 10%."""

    mode: ClassVar[str] = "auto"


@register("forward", "shared")
@dataclass(frozen=True)
class Shared(_Path):
    """Prefix Grouper (arXiv 2506.05433, §2): split attention for Llama, Mistral and Qwen2/3
    without activation checkpointing, else the dense mask."""

    mode: ClassVar[str] = "on"


@register("forward", "dense")
@dataclass(frozen=True)
class Dense(_Path):
    """Prefix Grouper with one dense 4D attention mask over each packed group (any decoder with
    RoPE positions and sdpa/eager attention, no sliding window)."""

    mode: ClassVar[str] = "dense"
