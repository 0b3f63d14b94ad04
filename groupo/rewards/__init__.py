"""Rewards: answer extraction, checkers, ``verify``, reward components and ``RewardSet``.

Sources: TASKS.md §2 (math-verify), §5.1 (TinyZero countdown), §5.2 (GSM8K), §5.3
(open-r1 / TRL rewards); see each module's docstring.
"""
from .extract import extract_answer
from .verify import KINDS, verify
from .combine import RewardSet

__all__ = ["verify", "extract_answer", "RewardSet", "KINDS"]
