"""MQR question reformulation (MathForge, "Harder Is Better", arXiv 2601.20614; ALGORITHMS.md §5).

An offline data step: a language model rewrites every training question in three ways
that make it harder while keeping its gold answer, and the training set becomes the
originals plus the rewrites (4x in the paper). The paper's three instructions:

* ``background``: add a story background unrelated to the core mathematics but seemingly
  related (replace an existing one with a new, more complex one);
* ``term``: invent a new abstract mathematical term for a concept central to the question
  and restate the question with it;
* ``subproblem``: turn a key numerical condition with a definite value into an
  independent sub-problem from any branch of mathematics.

Deviations / our design: the paper's prompt wrapper and rewriting model are not public, so
the instruction texts below are ours; the model is any local Hugging Face causal LM (its
chat template is used when it has one). Like the paper's pipeline as published, nothing
checks automatically that a rewrite still has the gold answer; we only reject empty,
unchanged or runaway outputs (counted per reason). Every written rewrite row carries
provenance (``mqr``: instruction, source line, source question, model, sampling settings,
groupo version). The output file is written atomically: a crash leaves no partial file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..tasks.jsonl import json_object

INSTRUCTIONS = {
    "background": (
        "Rewrite the math problem below by adding a short story background that is unrelated to the core "
        "mathematics but seems related to it. If the problem already has a background, replace it with a new, "
        "more complex one. Keep every number, condition and the question itself unchanged, so that the answer "
        "stays exactly the same. Output only the rewritten problem."),
    "term": (
        "Rewrite the math problem below by inventing a new abstract mathematical term for a concept that is "
        "central to it: define the term, then restate the problem using it. Keep every number, condition and "
        "the question itself unchanged, so that the answer stays exactly the same. Output only the rewritten "
        "problem."),
    "subproblem": (
        "Rewrite the math problem below by choosing one key numerical condition with a definite value and "
        "replacing that value with an independent sub-problem, from any branch of mathematics, whose answer is "
        "exactly that value. Keep everything else unchanged, so that the final answer stays exactly the same. "
        "Output only the rewritten problem."),
}


class MQRError(ValueError):
    """Bad input to the MQR step (one line naming the file, line or value)."""


def read_rows(path: str | Path, question_key: str = "question") -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise MQRError(f"{path}: file not found")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json_object(f"{path}:{lineno}", line, MQRError)
            if not isinstance(row.get(question_key), str) or not row[question_key].strip():
                raise MQRError(f"{path}:{lineno}: missing or empty string key '{question_key}'")
            rows.append((lineno, row))
    if not rows:
        raise MQRError(f"{path}: empty file (expected one JSON object per line)")
    return rows


def build_prompt(tokenizer, instruction: str, question: str) -> str:
    text = f"{INSTRUCTIONS[instruction]}\n\nProblem: {question}"
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return text + "\n\nRewritten problem:"


def clean(text: str, question: str, max_chars: int) -> tuple[str | None, str | None]:
    """(rewrite, None) or (None, reason)."""
    out = text.strip()
    for stop in ("\n\nProblem:", "\n\nRewritten problem:"):
        out = out.split(stop)[0].strip()
    if out.lower().startswith("rewritten problem:"):
        out = out[len("rewritten problem:"):].strip()
    if not out:
        return None, "empty"
    if out == question.strip():
        return None, "unchanged"
    if len(out) > max_chars:
        return None, "too_long"
    return out, None


def reformulate(model_dir, in_path, out_path, instructions=tuple(INSTRUCTIONS), max_new_tokens: int = 256,
                temperature: float = 0.0, seed: int = 0, batch_size: int = 8, limit: int | None = None,
                keep_original: bool = True, question_key: str = "question", progress=None) -> dict:
    """Rewrite every question of ``in_path`` with each instruction; write ``out_path``."""
    import torch

    from .. import __version__
    from ..model.load import eos_ids, load_model, load_tokenizer, set_threads
    from ..rollout import generate

    instructions = tuple(instructions)
    for name in instructions:
        if name not in INSTRUCTIONS:
            from ..registry import closest

            raise MQRError(f"unknown instruction '{name}'{closest(name, INSTRUCTIONS)}; "
                           f"valid: {', '.join(INSTRUCTIONS)}")
    if not instructions:
        raise MQRError("no instructions given")
    rows = read_rows(in_path, question_key)[: limit or None]
    set_threads(0)
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir).eval()
    eos = eos_ids(tok, model)
    gen = torch.Generator().manual_seed(seed)
    jobs = [(i, lineno, row, name) for i, (lineno, row) in enumerate(rows) for name in instructions]
    rewrites: dict[tuple[int, str], dict] = {}
    counts = {"rows_in": len(rows), "rewrites_written": 0, "rejected": {}}
    for a in range(0, len(jobs), batch_size):
        chunk = jobs[a:a + batch_size]
        prompts = [build_prompt(tok, name, row[question_key]) for _, _, row, name in chunk]
        roll = generate(model, tok, prompts, [1] * len(chunk), max_new_tokens, eos, temperature, generator=gen)
        for (i, lineno, row, name), text in zip(chunk, roll.texts):
            q = row[question_key]
            new, why = clean(text, q, max_chars=4 * len(q) + 2000)
            if new is None:
                counts["rejected"][why] = counts["rejected"].get(why, 0) + 1
                continue
            out = dict(row)
            out[question_key] = new
            out["mqr"] = {"instruction": name, "source_index": i, "source_line": lineno, "source_question": q,
                          "model": str(model_dir), "max_new_tokens": max_new_tokens, "temperature": temperature,
                          "seed": seed, "groupo_version": __version__}
            rewrites[(i, name)] = out
        if progress is not None:
            progress(min(a + batch_size, len(jobs)), len(jobs))
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for i, (_lineno, row) in enumerate(rows):
                if keep_original:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                for name in instructions:
                    if (i, name) in rewrites:
                        f.write(json.dumps(rewrites[(i, name)], ensure_ascii=False) + "\n")
                        counts["rewrites_written"] += 1
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return counts
