"""Tasks (axis ``task``): prompts with gold answers, difficulty levels and group labels.

Built-in: ``arithmetic``, ``lego`` (arXiv 2206.04301), ``countdown`` (TinyZero),
``jsonl`` (GSM8K ``####`` convention), and the evaluation sets ``omega_chains`` (OMEGA's
compositional split, arXiv 2506.18880), ``ineqmath_latex`` (IneqMath format, arXiv 2506.07927),
and real problems from PyPI wheels (TASKS.md §3): ``pypi_gsm8k``, ``pypi_champ``. See ``base.Task`` for the protocol and
TASKS.md §0, §4.2, §5.1, §5.2 for the sources.
"""
from .base import GeneratedTask, Task, TaskError, normalize_question
from .generators import Arithmetic, Countdown, Lego
from .jsonl import Jsonl

__all__ = ["Task", "TaskError", "normalize_question", "GeneratedTask", "Arithmetic", "Lego", "Countdown", "Jsonl"]
