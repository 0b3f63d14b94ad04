"""The value model of a run with a critic (``critic.name=value``; the maths: groupo/algo/critic.py).

* ``build``: the policy's architecture (its decoder, without the output head) loaded from
  ``critic.path`` or the policy's initial weights, plus a zero-initialised scalar head, with its
  own AdamW; ``restore`` loads both from a checkpoint (``critic.safetensors`` and the optimizer
  state in ``state.pt``), ``save_into`` writes the weights into a checkpoint being written.
* ``old_values``: V_old [N, T] of every row before the update, no gradient (with several
  processes each computes its own rows and they are gathered, as the old log-probs).
* ``micro_step``: the value loss of one micro-batch (token weights normalised on the step),
  backward; the loop calls it on the policy's micro-batches.
* ``finish``: gradients summed over processes, clipped; the norm.

Values are aligned with the log-probs: V(s_t) is read at the position that predicts completion
token t (the prompt and o_<t), as verl's critic.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..model.logprobs import autocast as autocast_ctx
from ..model.logprobs import build_inputs
from . import dist

WEIGHTS = "critic.safetensors"


class ValueModel(torch.nn.Module):
    """A decoder body and a scalar head: V(s_t) [N, T] for the completion tokens."""

    def __init__(self, body):
        super().__init__()
        self.body = body
        p = next(body.parameters())
        self.head = torch.nn.Linear(body.config.hidden_size, 1, device=p.device, dtype=p.dtype)
        torch.nn.init.zeros_(self.head.weight)        # V = 0 at the start; no random draw (algo/critic.py)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, prompt_ids, prompt_mask, completion_ids, completion_mask, autocast=None) -> torch.Tensor:
        input_ids, attn, pos = build_inputs(prompt_ids, prompt_mask, completion_ids, completion_mask)
        T = completion_ids.shape[1]
        if T:       # as the log-probs: the last completion token predicts nothing scored
            input_ids, attn, pos = input_ids[:, :-1], attn[:, :-1], pos[:, :-1]
        with autocast_ctx(input_ids.device, autocast):
            hidden = self.body(input_ids=input_ids, attention_mask=attn, position_ids=pos,
                               use_cache=False).last_hidden_state
            hidden = hidden[:, hidden.shape[1] - T:, :]                       # [N, T, H]
            return self.head(hidden).squeeze(-1).float()                      # [N, T]


@dataclass
class CriticRun:
    """A run's value model with its optimizer; what the loop and checkpoints call."""

    spec: Any                 # the critic component (algo/critic.py): its loss and settings
    model: ValueModel
    opt: Any
    autocast: Any = None

    def save_into(self, directory: Path) -> None:
        """The value model's weights into a checkpoint directory being written."""
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()},
                  str(Path(directory) / WEIGHTS))

    def restore(self, directory: Path, opt_state: dict | None) -> None:
        """Weights and optimizer state of a checkpoint."""
        from safetensors.torch import load_file

        from .checkpoint import CheckpointError

        path = Path(directory) / WEIGHTS
        if not path.exists() or opt_state is None:
            raise CheckpointError(f"{directory} has no critic (critic.safetensors and its optimizer state); it was "
                                  f"not written by a run with critic.name=value")
        self.model.load_state_dict(load_file(str(path), device=str(next(self.model.parameters()).device)))
        self.opt.load_state_dict(opt_state)

    def micro_step(self, d, sl, ps, cs) -> tuple[float, dict]:
        """Forward and backward of the value loss on rows ``sl`` (prompt columns ``ps``, token
        columns ``cs``); returns the loss (its share of the step's) and per-token metric tensors."""
        v = self.model(d.prompt_ids[sl, ps], d.prompt_mask[sl, ps], d.completion_ids[sl, cs],
                       d.completion_mask[sl, cs], self.autocast)                      # [n, t]
        loss_tok, m = self.spec(v, d.old_values[sl, cs], d.returns[sl, cs])
        loss = (d.value_weights[sl, cs].to(loss_tok.dtype) * loss_tok).sum()
        if loss.requires_grad:
            loss.backward()
        return float(loss.detach()), m

    def finish(self, trains: bool) -> torch.Tensor:
        """Gradients summed over processes (as the policy's), clipped at ``grad_clip``; the norm."""
        params = list(self.model.parameters())
        if dist.world() > 1 and trains:
            dist.sum_gradients(params)
        clip = self.spec.grad_clip
        return torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))


def build(run, source: str) -> CriticRun | None:
    """The run's value model (from ``critic.path``, else ``source``: the policy's initial
    weights) and its optimizer; None without a critic."""
    cfg = run.cfg
    if not cfg.critic.active:
        return None
    from ..model import gemm
    from ..model.load import ModelError, load_model

    body = load_model(cfg.critic.path or source, cfg.model.dtype, run.device).get_decoder()
    vocab, own = run.model.get_input_embeddings().weight.shape[0], body.get_input_embeddings().weight.shape[0]
    if own != vocab:
        raise ModelError(f"critic.path={cfg.critic.path}: its vocabulary ({own} tokens) is not the policy's "
                         f"({vocab}); the value model reads the policy's token ids")
    model = ValueModel(body).train()
    if cfg.model.gradient_checkpointing:
        body.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    gemm.install(model)
    c, t = cfg.critic, cfg.train
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=tuple(t.betas), eps=t.adam_eps,
                            weight_decay=c.weight_decay, fused=True)
    return CriticRun(c, model, opt, run.policy.autocast)


@torch.no_grad()
def _values(crit: CriticRun, d, micro_batches: int) -> torch.Tensor:
    from .loss import _trim, micro_slices

    out = torch.zeros(d.completion_ids.shape, dtype=torch.float32, device=d.completion_ids.device)
    for sl in micro_slices(d.completion_ids.shape[0], micro_batches):
        ps, cs = _trim(sl, d)
        out[sl, cs] = crit.model(d.prompt_ids[sl, ps], d.prompt_mask[sl, ps], d.completion_ids[sl, cs],
                                 d.completion_mask[sl, cs], crit.autocast)
    return out


def old_values(crit: CriticRun, d, micro_batches: int) -> torch.Tensor:
    """V_old [N, T] of every row of the step (0 on padding), before any update."""
    if d.mine is None:
        return _values(crit, d, micro_batches) * d.completion_mask
    own = d.select(d.mine.to(d.completion_ids.device))
    v = _values(crit, own, micro_batches) * own.completion_mask
    full = torch.zeros(d.completion_ids.shape, dtype=torch.float32)
    for rows, part in dist.gather_objects((d.mine.cpu(), v.cpu())):
        full[rows, : part.shape[1]] = part
    return full.to(d.completion_ids.device)


def value_weights(mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Token weights [N, T] of the value loss: the mean over the step's trained completion tokens."""
    w = mask.to(torch.float32) * keep.to(mask.device)[:, None].to(torch.float32)
    return w / w.sum().clamp(min=1.0)
