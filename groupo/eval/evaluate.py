"""Held-out evaluation: generate on the task's eval split and score with ``verify``.

Items are scored with ``verify_item`` (answer, kind and meta: reasoning-gym items need their
meta). Returns ``summarize`` output (accuracy, pass@k, maj@k, per-group and worst-group
accuracy). Greedy by default; with ``samples > 1`` and temperature > 0 it estimates
pass@k with the unbiased estimator.
"""
from __future__ import annotations

import torch

from ..prompts.render import render
from ..rewards.extract import extract_answer
from ..rewards.verify import verify_item
from ..rollout import generate
from .metrics import summarize


def evaluate(model, tokenizer, items, template, eos_ids, max_new_tokens: int, samples: int = 1,
             temperature: float = 0.0, ks=(1,), batch_size: int = 64, seed: int = 0,
             top_p: float = 1.0, top_k: int = 0, return_records: bool = False, autocast=None):
    """Greedy (or sampled) completions for ``items``, checked with ``verify_item``; ``autocast``: the
    compute dtype training samples with (None: the weights' dtype)."""
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    records = []
    per_batch = max(1, batch_size // samples)
    try:
        for start in range(0, len(items), per_batch):
            chunk = items[start:start + per_batch]
            prompts = [render(template, it, tokenizer) for it in chunk]
            roll = generate(model, tokenizer, prompts, [samples] * len(chunk), max_new_tokens, eos_ids,
                            temperature=temperature, top_p=top_p, top_k=top_k, generator=gen, autocast=autocast)
            for j, it in enumerate(chunk):
                texts = roll.texts[j * samples:(j + 1) * samples]
                records.append({
                    "group": it.group,
                    "correct": [verify_item(t, it) >= 1.0 for t in texts],
                    "answers": [extract_answer(t, "auto") for t in texts],
                    "question": it.question, "gold": it.answer, "completion": texts[0],
                })
    finally:
        model.train(was_training)
    summary = summarize(records, ks=tuple(k for k in ks if k <= samples))
    return (summary, records) if return_records else summary
