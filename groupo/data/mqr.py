"""MQR question reformulation (MathForge, "Harder Is Better", arXiv 2601.20614; ALGORITHMS.md §5).

An offline data step, run before training: a language model rewrites every training
question in three ways that make it harder while keeping its gold answer, and the
training set becomes the originals plus the rewrites (4x in the paper; their data set is
``YanqiDai/MathForge_MATH-augmented``). The paper's three instructions:

* ``background``: add a story background unrelated to the core mathematics but seemingly
  related; if the question already has one, replace it with a new, more complex one;
* ``term``: invent a new abstract mathematical term for a concept central to the question
  and restate the question using it;
* ``subproblem``: turn a key numerical condition with a definite value into an
  independent sub-problem, from any branch of mathematics.

Usage::

    groupo mqr --model /models/qwen2.5-7b-instruct --input math_train.jsonl --output math_mqr.jsonl
    groupo mqr --model DIR --input IN.jsonl --output OUT.jsonl --instructions term,subproblem \\
        --max-new-tokens 512 --limit 100 --seed 0          # --rewrites-only: no original rows

    from groupo.data.mqr import reformulate
    counts = reformulate("/models/m", "in.jsonl", "out.jsonl", max_new_tokens=512)
    # {"rows_in": 7500, "rewrites_written": ..., "rows_out": ..., "rejected": {"empty": 0, ...}}

Input: one JSON object per line with a string ``question`` and a string-or-number
``answer`` (the ``jsonl`` task's conventions and one-line ``file:line:`` errors; other keys
are free). Output: each original row (unless ``keep_original=False``) followed by its
rewrites; a rewrite is the source row with only the question replaced (same gold answer,
every other column copied) plus ``mqr``: ``instruction``, ``source_index`` (0-based row
index), ``source_line``, ``source_question``, ``model``, ``max_new_tokens``,
``temperature``, ``seed``, ``groupo_version``. The output trains directly with
``task.name=jsonl task.path=OUT.jsonl`` (``mqr`` goes to ``Item.meta``).

How it differs from the paper (our design):

* The paper's prompt wrapper and rewriting model are not public (only the core
  instructions above, from the MathForge README and figure); the instruction texts in
  ``INSTRUCTIONS`` and the prompt layout are ours. Any local Hugging Face causal LM can
  rewrite; its chat template is used when it has one, else a plain text prompt.
* Generation is groupo's own sampler (``groupo.rollout.generate``), one completion per
  (question, instruction), greedy at ``temperature=0``. Each prompt has its own random
  stream, seeded from (seed, source index, instruction), so a sampled rewrite does not
  depend on ``batch_size``, ``limit`` or the other instructions chosen.
* Rewrites are cleaned (stripped, cut where the model starts a new prompt block or a
  solution) and rejected, counted per reason and skipped (the original row stays), when
  they are empty, unchanged, cut off by ``max_new_tokens``, longer than
  ``4 * len(question) + 2000`` characters, contain a ``\\boxed`` answer, or when the prompt
  plus ``max_new_tokens`` does not fit the model's context.
* Nothing checks that a rewrite still has the gold answer (no solver, no verifier). The
  MathForge README and code and ALGORITHMS.md describe no such automatic check either;
  whether the authors filtered or inspected rewrites otherwise is not documented there.
  Rewrites from a weak model can change the answer: inspect a sample before training.

The output file is written atomically (a temporary file in the same directory, then
``os.replace``): a crash or Ctrl-C never leaves a partial output file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ..registry import closest
from ..tasks.jsonl import json_object

INSTRUCTIONS = {
    "background": (
        "Rewrite the math problem below by adding a short story background that is unrelated to the core "
        "mathematics but seems related to it. If the problem already has a background, replace it with a new, "
        "more complex one. Keep every number, condition and the question itself unchanged, so that the answer "
        "stays exactly the same. Do not solve the problem. Output only the rewritten problem."),
    "term": (
        "Rewrite the math problem below by inventing a new abstract mathematical term for a concept that is "
        "central to it: define the term, then restate the whole problem using it. Keep every number, condition "
        "and the question itself unchanged, so that the answer stays exactly the same. Do not solve the problem. "
        "Output only the rewritten problem."),
    "subproblem": (
        "Rewrite the math problem below by choosing one key numerical condition with a definite value and "
        "replacing that value with an independent sub-problem, from any branch of mathematics, whose answer is "
        "exactly that value. Keep everything else unchanged, so that the final answer stays exactly the same. "
        "Do not solve the problem. Output only the rewritten problem."),
}
REASONS = ("empty", "unchanged", "truncated", "too_long", "boxed_answer", "prompt_too_long")

# Where a completion stops being the rewrite: the model starts another block of our prompt
# layout, or starts solving. (Not "Problem:", which a ``term`` rewrite may use after its definition.)
_STOP = re.compile(r"(?:Original problem:|Rewritten problem:|Rewrite the math problem below"
                   r"|^[ \t]*(?:Solution|Answer|Final answer)[ \t]*:)", re.IGNORECASE | re.MULTILINE)
_LABEL = re.compile(r"^\s*rewritten problem\s*:\s*", re.IGNORECASE)


class MQRError(ValueError):
    """Bad input to the MQR step (one line naming the file, line or value)."""


def read_rows(path: str | Path, question_key: str = "question",
              answer_key: str | None = "answer") -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line; the ``jsonl`` task's key rules and
    ``file:line:`` errors. ``answer_key=None`` skips the answer check."""
    path = Path(path)
    if not path.is_file():
        raise MQRError(f"{path}: file not found")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            row = json_object(where, line, MQRError)
            for key in (question_key, answer_key):
                if key is not None and key not in row:
                    raise MQRError(f"{where}: missing key '{key}'{closest(key, row)}")
            if not isinstance(row[question_key], str) or not row[question_key].strip():
                raise MQRError(f"{where}: '{question_key}' must be a non-empty string")
            if answer_key is not None and (isinstance(row[answer_key], (dict, list)) or row[answer_key] is None):
                raise MQRError(f"{where}: '{answer_key}' must be a string or a number")
            if "mqr" in row:
                raise MQRError(f"{where}: row already has an 'mqr' field (is this an MQR output file?)")
            rows.append((lineno, row))
    if not rows:
        raise MQRError(f"{path}: empty file (expected one JSON object per line)")
    return rows


def build_prompt(tokenizer, instruction: str, question: str) -> str:
    """The rewriting prompt: a chat user turn when the tokenizer has a chat template, else plain text."""
    text = f"{INSTRUCTIONS[instruction]}\n\nOriginal problem:\n{question.strip()}"
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return text + "\n\nRewritten problem:\n"


def clean(text: str, question: str, max_chars: int, truncated: bool = False) -> tuple[str | None, str | None]:
    """(rewrite, None), or (None, reason) with reason in ``REASONS``. A completion that hit
    ``max_new_tokens`` (``truncated``) counts as complete when a stop marker ended it earlier."""
    out = _LABEL.sub("", text.strip(), count=1)
    stop = _STOP.search(out)
    if stop:
        out = out[: stop.start()]
    elif truncated:
        return None, "truncated"
    out = out.strip()
    if not out:
        return None, "empty"
    if " ".join(out.split()) == " ".join(question.split()):
        return None, "unchanged"
    if len(out) > max_chars:
        return None, "too_long"
    if "\\boxed" in out:
        return None, "boxed_answer"
    return out, None


def _prompt_seed(seed: int, index: int, instruction: str) -> int:
    digest = hashlib.sha256(f"groupo-mqr|{seed}|{index}|{instruction}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _check_args(instructions, max_new_tokens, temperature, batch_size, limit, in_path, out_path) -> tuple:
    instructions = tuple(instructions)
    if not instructions:
        raise MQRError("no instructions given; valid: " + ", ".join(INSTRUCTIONS))
    for name in instructions:
        if name not in INSTRUCTIONS:
            raise MQRError(f"unknown instruction '{name}'{closest(name, INSTRUCTIONS)}; "
                           f"valid: {', '.join(INSTRUCTIONS)}")
    if len(set(instructions)) != len(instructions):
        raise MQRError(f"instruction listed twice: {', '.join(instructions)}")
    for name, value, low in (("max_new_tokens", max_new_tokens, 1), ("batch_size", batch_size, 1),
                             ("limit", 0 if limit is None else limit, 0)):
        if not isinstance(value, int) or value < low:
            raise MQRError(f"{name} must be an integer >= {low}, got {value!r}")
    if not temperature >= 0:
        raise MQRError(f"temperature must be >= 0, got {temperature!r}")
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise MQRError(f"{out_path}: output directory '{out_path.parent}' does not exist")
    if out_path.exists() and Path(in_path).exists() and out_path.resolve() == Path(in_path).resolve():
        raise MQRError(f"{out_path}: the output must not overwrite the input")
    return instructions


def reformulate(model_dir, in_path, out_path, instructions=tuple(INSTRUCTIONS), max_new_tokens: int = 256,
                temperature: float = 0.0, seed: int = 0, batch_size: int = 8, limit: int | None = None,
                keep_original: bool = True, progress=None, *, question_key: str = "question",
                answer_key: str = "answer", device: str = "auto", dtype: str = "float32") -> dict:
    """Rewrite every question of ``in_path`` (the first ``limit``; None or 0: all) with each
    instruction and write ``out_path`` atomically. ``progress(done, total)`` is called after
    each batch. Returns ``{"rows_in", "rewrites_written", "rows_out", "rejected": {reason: n}}``;
    ``rewrites_written + sum(rejected.values()) == rows_in * len(instructions)``."""
    import torch

    from .. import __version__
    from ..model.load import DTYPES, eos_ids, load_model, load_tokenizer, pick_device
    from ..runtime import set_threads
    from ..rollout import generate

    instructions = _check_args(instructions, max_new_tokens, temperature, batch_size, limit, in_path, out_path)
    if dtype not in DTYPES:
        raise MQRError(f"unknown dtype '{dtype}'{closest(dtype, DTYPES)}; valid: {', '.join(DTYPES)}")
    rows = read_rows(in_path, question_key, answer_key)[: limit or None]
    dev = pick_device(device)
    if dev.type == "cpu":
        set_threads(0)
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, dtype, dev).eval()
    eos = eos_ids(tok, model)
    ctx = getattr(model.config, "max_position_embeddings", None)

    counts = {"rows_in": len(rows), "rewrites_written": 0, "rows_out": 0, "rejected": dict.fromkeys(REASONS, 0)}
    jobs = []                                   # (row index, instruction, prompt)
    for i, (_lineno, row) in enumerate(rows):
        for name in instructions:
            prompt = build_prompt(tok, name, row[question_key])
            if ctx and len(tok(prompt, add_special_tokens=False)["input_ids"]) + max_new_tokens > ctx:
                counts["rejected"]["prompt_too_long"] += 1
            else:
                jobs.append((i, name, prompt))
    rewrites: dict[tuple[int, str], str] = {}
    for a in range(0, len(jobs), batch_size):
        chunk = jobs[a:a + batch_size]
        gens = [torch.Generator(device=dev).manual_seed(_prompt_seed(seed, i, name)) for i, name, _ in chunk]
        roll = generate(model, tok, [p for _, _, p in chunk], [1] * len(chunk), max_new_tokens, eos,
                        temperature, generator=gens)
        for (i, name, _), text, cut in zip(chunk, roll.texts, roll.truncated.tolist()):
            q = rows[i][1][question_key]
            new, why = clean(text, q, max_chars=4 * len(q) + 2000, truncated=bool(cut))
            if new is None:
                counts["rejected"][why] += 1
            else:
                rewrites[(i, name)] = new
        if progress is not None:
            progress(min(a + batch_size, len(jobs)), len(jobs))

    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for i, (lineno, row) in enumerate(rows):
                if keep_original:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    counts["rows_out"] += 1
                for name in instructions:
                    if (i, name) not in rewrites:
                        continue
                    out = dict(row)
                    out[question_key] = rewrites[(i, name)]
                    out["mqr"] = {"instruction": name, "source_index": i, "source_line": lineno,
                                  "source_question": row[question_key], "model": str(model_dir),
                                  "max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed,
                                  "groupo_version": __version__}
                    f.write(json.dumps(out, ensure_ascii=False) + "\n")
                    counts["rewrites_written"] += 1
                    counts["rows_out"] += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return counts
