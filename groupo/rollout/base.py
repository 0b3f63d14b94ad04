"""The ``Rollout`` record every generation backend returns, and operations on it.

A rollout is one step's completions: prompts left-padded, completions right-padded with the pad
id, the completion mask 1 up to and including the first EOS, ``truncated`` where no EOS came
within the budget, ``group`` = index of each row's prompt.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rollout:
    prompt_ids: torch.Tensor        # [N, Lp] left-padded prompt of each row
    prompt_mask: torch.Tensor       # [N, Lp]
    completion_ids: torch.Tensor    # [N, T] right-padded with pad id
    completion_mask: torch.Tensor   # [N, T] 1 on real tokens (EOS included)
    truncated: torch.Tensor         # [N] bool, no EOS within max_new_tokens
    group: torch.Tensor             # [N] long, index of the prompt of each row
    texts: list                     # [N] decoded completions (special tokens skipped)
    sampler_logp: torch.Tensor | None = None   # [N, T] the sampler's token log-probs (backends with tis_cap)
    policy_version: torch.Tensor | None = None  # [N] long (CPU): version of the weights that sampled each row
    #   = optimizer updates applied before it (backends whose rows can be older: rollout.name=server); -1: replayed

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(1).long()


def empty_rollout(device, sampler_logp: bool = False) -> Rollout:
    z = torch.zeros(0, 0, dtype=torch.long, device=device)
    e = torch.zeros(0, dtype=torch.long)
    return Rollout(z, z, z, z, e.bool(), e, [], torch.zeros(0, 0, device=device) if sampler_logp else None)


def completion_ids(r: Rollout) -> list[list[int]]:
    """Each row's generated token ids (EOS included, padding removed), as plain lists."""
    ids, mask = r.completion_ids.cpu(), r.completion_mask.cpu().bool()
    return [row[m].tolist() for row, m in zip(ids, mask)]


def check_context(model, prompt_len: int, max_new_tokens: int) -> None:
    """A prompt plus the generation budget must fit the model's context window."""
    ctx = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if ctx and prompt_len + max_new_tokens > ctx:
        from ..model.load import ModelError

        raise ModelError(f"a prompt of {prompt_len} tokens + generation.max_new_tokens={max_new_tokens} exceeds the "
                         f"model's context of {ctx} tokens; shorten the prompts or lower generation.max_new_tokens")


def _pad_cat(tensors: list[torch.Tensor], value, left: bool) -> torch.Tensor:
    width = max(t.shape[1] for t in tensors)
    out = []
    for t in tensors:
        pad = width - t.shape[1]
        if pad:
            fill = torch.full((t.shape[0], pad), value, dtype=t.dtype, device=t.device)
            t = torch.cat([fill, t] if left else [t, fill], dim=1)
        out.append(t)
    return torch.cat(out, dim=0)


def cat_rollouts(parts: list[Rollout], pad_id: int, renumber: bool = True) -> Rollout:
    """Concatenate rollouts of several generation rounds (group ids made unique, unless
    ``renumber`` is False: the parts' ids are already distinct)."""
    if len(parts) == 1:
        return parts[0]
    offset, groups = 0, []
    for r in parts:
        groups.append(r.group + offset if renumber else r.group)
        if renumber:
            offset += int(r.group.max()) + 1 if r.group.numel() else 0
    return Rollout(
        prompt_ids=_pad_cat([r.prompt_ids for r in parts], pad_id, left=True),
        prompt_mask=_pad_cat([r.prompt_mask for r in parts], 0, left=True),
        completion_ids=_pad_cat([r.completion_ids for r in parts], pad_id, left=False),
        completion_mask=_pad_cat([r.completion_mask for r in parts], 0, left=False),
        truncated=torch.cat([r.truncated for r in parts]),
        group=torch.cat(groups),
        texts=[t for r in parts for t in r.texts],
        sampler_logp=(_pad_cat([r.sampler_logp for r in parts], 0.0, left=False)
                      if all(r.sampler_logp is not None for r in parts) else None),
        policy_version=(torch.cat([r.policy_version for r in parts])
                        if all(r.policy_version is not None for r in parts) else None),
    )


def select_rows(r: Rollout, rows: torch.Tensor) -> Rollout:
    rl = rows.tolist()
    return Rollout(r.prompt_ids[rows], r.prompt_mask[rows], r.completion_ids[rows], r.completion_mask[rows],
                   r.truncated[rows], r.group[rows], [r.texts[i] for i in rl],
                   None if r.sampler_logp is None else r.sampler_logp[rows],
                   None if r.policy_version is None else r.policy_version[rows.cpu()])


def to_rollout(enc: list, comps: list, tokenizer, eos_ids, device) -> Rollout:
    """Token lists -> Rollout (for engines that return token ids: vLLM, a rollout server).
    ``enc``: prompt ids per prompt; ``comps``: (prompt index, completion ids, sampled-token
    log-probs) per row, grouped by prompt. Completions are cut after their first EOS."""
    pad, eos = tokenizer.pad_token_id, set(int(e) for e in eos_ids)
    kept = []
    for j, ids, lps in comps:
        first = next((t for t, tok in enumerate(ids) if tok in eos), None)
        end = len(ids) if first is None else first + 1
        kept.append((j, ids[:end], lps[:end], first is not None))
    n, Lp = len(kept), max(len(e) for e in enc)
    T = max([len(c) for _, c, _, _ in kept] + [0])
    p_ids = torch.full((n, Lp), pad, dtype=torch.long)
    p_mask = torch.zeros(n, Lp, dtype=torch.long)
    c_ids = torch.full((n, T), pad, dtype=torch.long)
    c_mask = torch.zeros(n, T, dtype=torch.long)
    s_lp = torch.zeros(n, T)
    trunc = torch.zeros(n, dtype=torch.bool)
    for i, (j, c, lp, stopped) in enumerate(kept):
        L = len(enc[j])
        if L:
            p_ids[i, Lp - L:] = torch.tensor(enc[j], dtype=torch.long)
            p_mask[i, Lp - L:] = 1
        if c:
            c_ids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            c_mask[i, : len(c)] = 1
            s_lp[i, : len(c)] = torch.tensor(lp, dtype=torch.float32)
        trunc[i] = not stopped
    texts = tokenizer.batch_decode([c for _, c, _, _ in kept], skip_special_tokens=True)
    group = torch.tensor([j for j, _, _, _ in kept], dtype=torch.long)
    return Rollout(p_ids.to(device), p_mask.to(device), c_ids.to(device), c_mask.to(device), trunc, group, texts,
                   sampler_logp=s_lp.to(device))
