"""Supervised warm start: teach a model the answer format before RL.

A from-scratch tiny model produces no parseable answers, so RL has no reward signal.
The demo first fine-tunes it on task items rendered as ``template(question)`` ->
``target.format(answer=..., **meta)`` + EOS (loss on the target tokens only; ``{trace}`` is a
step-by-step solution where the task provides one, e.g. ``chains``). Optionally it
stops as soon as greedy accuracy on a dev set drawn from the *training* distribution
reaches ``stop_at_accuracy`` (the eval split is never used), which makes the starting
accuracy of RL less dependent on the seed (shared/notes/tiny-demo-feasibility.md).
"""
from __future__ import annotations

import dataclasses
import random

import torch

from ..model.forward import completion_logprobs
from ..prompts.render import render
from ..rewards.verify import verify_item
from ..rollout import generate
from ..tasks.base import target_text


def _encode_pairs(tokenizer, prompts, targets, device):
    tok = tokenizer
    p = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    old_side = tok.padding_side
    tok.padding_side = "right"
    try:
        c = tok([t + tok.eos_token for t in targets], return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tok.padding_side = old_side
    return (p["input_ids"].to(device), p["attention_mask"].to(device),
            c["input_ids"].to(device), c["attention_mask"].to(device))


def warm_start(model, tokenizer, task, template, cfg, eos_ids, max_new_tokens: int, seed: int,
               on_step=None) -> dict:
    """Run ``cfg.steps`` SFT steps (``cfg`` is a WarmstartCfg); returns a summary dict."""
    if cfg.levels and hasattr(task, "levels"):
        task = dataclasses.replace(task, levels=tuple(cfg.levels))
    rng = random.Random(seed + 7919)
    dev_rng = random.Random(seed + 104729)
    dev = [task.sample_train(dev_rng) for _ in range(128)] if cfg.stop_at_accuracy > 0 else []
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    model.train()
    info = {"steps": 0, "dev_accuracy": None, "loss": None}
    for step in range(1, cfg.steps + 1):
        items = [task.sample_train(rng) for _ in range(cfg.batch_size)]
        prompts = [render(template, it, tokenizer) for it in items]
        targets = [target_text(cfg.target, it) for it in items]
        p_ids, p_mask, c_ids, c_mask = _encode_pairs(tokenizer, prompts, targets, device)
        logp, _ = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask)
        loss = -(logp * c_mask).sum() / c_mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        info.update(steps=step, loss=float(loss.detach()))
        if dev and step % cfg.check_every == 0:
            info["dev_accuracy"] = dev_accuracy(model, tokenizer, dev, template, eos_ids, max_new_tokens)
            if info["dev_accuracy"] >= cfg.stop_at_accuracy:
                break
        if on_step is not None:
            on_step(step, info)
    opt.zero_grad(set_to_none=True)
    return info


def dev_accuracy(model, tokenizer, items, template, eos_ids, max_new_tokens) -> float:
    model.eval()
    try:
        prompts = [render(template, it, tokenizer) for it in items]
        roll = generate(model, tokenizer, prompts, [1] * len(items), max_new_tokens, eos_ids, temperature=0)
        return sum(verify_item(t, it) >= 1.0 for t, it in zip(roll.texts, items)) / len(items)
    finally:
        model.train()
