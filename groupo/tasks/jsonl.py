"""``jsonl``: a task read from a JSON-lines file (one JSON object per line).

Rows, splits and the GSM8K ``####`` convention: ``groupo/tasks/rows.py``. The file is read as
UTF-8 (a byte-order mark is accepted); errors are ``TaskError`` one-liners with a ``file:line:``
prefix. For parquet, CSV, ``save_to_disk`` directories and Hub datasets: ``task.name=dataset``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..registry import register
from ..rewards.verify import Kind
from ..types import Item
from .base import TaskError
from .rows import RowTask


def json_object(where: str, line: str, error=TaskError) -> dict:
    """One JSONL line as a dict, or ``error("file:line: ...")``."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def read_lines(path: str, error=TaskError):
    """(line number, text) of each non-blank line of a UTF-8 file (BOM accepted); a file that is
    not UTF-8 is one error naming the line."""
    if not os.path.isfile(path):
        raise error(f"{path}: file not found")
    with open(path, "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    for lineno, b in enumerate(lines, 1):
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{path}:{lineno}: not UTF-8 text (byte {b[e.start]:#x} at column {e.start + 1}); "
                        f"save the file as UTF-8") from None
        if text.strip():
            yield lineno, text


@register("task", "jsonl")
@dataclass(frozen=True)
class Jsonl(RowTask):
    question_key: str = "question"
    answer_key: str = "answer"
    group_key: str = ""
    kind: Kind = "number"

    def _load(self, path: str) -> list[Item]:
        items = [self.item(f"{path}:{n}", json_object(f"{path}:{n}", line), self.question_key, self.answer_key,
                           self.group_key, self.kind) for n, line in read_lines(path)]
        if not items:
            raise TaskError(f"{path}: empty file (expected one JSON object per line)")
        return items

    def describe(self) -> str:
        train, held = self._splits
        src = self.eval_path or f"{self.eval_fraction:g} split"
        return (f"jsonl: {self.path} ({len(train)} train, {len(self._eval)} eval from {src}, "
                f"kind {self.kind})")
