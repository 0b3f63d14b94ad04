"""Tasks (axis ``task``): prompts with gold answers, difficulty levels and group labels.

Built-in: ``arithmetic``, ``lego`` (arXiv 2206.04301), ``countdown`` (TinyZero),
``jsonl`` (GSM8K ``####`` convention), and the evaluation sets ``omega_compositional``
(arXiv 2506.18880) and ``ineqmath`` (arXiv 2506.07927). See ``base.Task`` for the protocol and
TASKS.md §0, §4.2, §5.1, §5.2 for the sources.
"""
from .base import GeneratedTask, Task, TaskError, normalize_question
from . import eval_sets, generators, jsonl, pypi_sets  # noqa: F401  (register the built-in tasks)
from .generators import Arithmetic, Countdown, Lego
from .jsonl import Jsonl

__all__ = ["Task", "TaskError", "normalize_question", "GeneratedTask", "Arithmetic", "Lego", "Countdown", "Jsonl"]
