"""Answer extraction from a completion (separate from checking, TASKS.md §5.3).

Modes (``extract_answer(text, mode)``):
* ``tag``: the last ``<answer>...</answer>``, stripped (reasoning-gym / open-r1 / TRL
  ``<answer>`` convention; reasoning-gym takes the last match). If no closed pair
  exists, a trailing unclosed ``<answer>`` counts up to the end of the text (a
  generator's stop string often cuts the closing tag).
* ``boxed``: the content of the last ``\\boxed{...}`` with balanced braces (MATH /
  open-r1 convention; also ``\\fbox{}`` and ``\\boxed 5``).
* ``hash``: GSM8K ``#### N`` (arXiv 2110.14168; TASKS.md §5.2): the rest of the line
  after the last ``####``.
* ``last_number``: the last number (GSM8K "flexible-extract", lm-eval-harness / verl;
  TASKS.md §5.2), with ``,`` thousands separators, decimals and ``a/b`` fractions.
* ``auto``: tag, then boxed, then hash, then last number. A tag whose content holds
  a ``\\boxed{}`` yields the boxed content.

Bounded work: only the last ``TAIL`` (20,000) characters are read; the regexes are
linear (no nested quantifiers) and brace matching is a single scan over at most the
last ``MAX_BOXED_TRIES`` ``\\boxed`` occurrences.
"""
from __future__ import annotations

import re
from typing import Literal, get_args

TAIL = 20_000
MAX_BOXED_TRIES = 4
Mode = Literal["auto", "tag", "boxed", "hash", "last_number"]
MODES = get_args(Mode)

# minus signs besides "-": U+2212 minus, U+2013 en dash, U+FE63 small and U+FF0D fullwidth
# hyphen-minus: models print them, and read without them "<U+2212>5" scored as 5 (a wrong-sign
# false positive)
MINUS_SIGNS = "\u2212\u2013\ufe63\uff0d"
# the minus sign counts only when it is not a binary minus ("5-3" -> "3")
_NUMBER = re.compile(r"(?:(?<![\w)\]}])[-" + MINUS_SIGNS + r"])?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")


def extract_answer(text: str, mode: str = "auto") -> str | None:
    """The answer span of ``text`` by ``mode`` (see the module doc), or None if absent.

    Raises ValueError for an unknown mode (a programmer error, not model output).
    """
    if mode not in MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; valid: {', '.join(MODES)}")
    if not isinstance(text, str):
        return None
    text = text[-TAIL:]
    if mode == "tag":
        return extract_tag(text)
    if mode == "boxed":
        return extract_boxed(text)
    if mode == "hash":
        return extract_hash(text)
    if mode == "last_number":
        return extract_last_number(text)
    return extract_auto(text)


def extract_auto(text: str) -> str | None:
    """tag, then boxed, then hash, then last number (``text`` already bounded)."""
    tag = extract_tag(text)
    if tag is not None:
        inner = extract_boxed(tag) if "\\boxed" in tag or "\\fbox" in tag else None
        return inner if inner is not None else tag
    for fn in (extract_boxed, extract_hash, extract_last_number):
        out = fn(text)
        if out is not None:
            return out
    return None


def extract_structured(text: str) -> str | None:
    """tag, then boxed, then hash: the explicit answer markers only."""
    tag = extract_tag(text)
    if tag is not None:
        inner = extract_boxed(tag) if "\\boxed" in tag or "\\fbox" in tag else None
        return inner if inner is not None else tag
    out = extract_boxed(text)
    return out if out is not None else extract_hash(text)


def extract_tag(text: str, open_tag: str = "<answer>", close_tag: str = "</answer>") -> str | None:
    """Content of the last closed ``<answer>...</answer>``; else of a trailing unclosed
    ``<answer>`` (to the end of the text); else None."""
    end = text.rfind(close_tag)
    if end >= 0:
        start = text.rfind(open_tag, 0, end)
        if start >= 0:
            return text[start + len(open_tag):end].strip()
    start = text.rfind(open_tag)
    if start >= 0 and start > end:
        rest = text[start + len(open_tag):].strip()
        return rest or None
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}`` (or ``\\fbox{...}``, ``\\boxed 5``)."""
    tries = 0
    pos = len(text)
    while tries < MAX_BOXED_TRIES:
        b, f = text.rfind("\\boxed", 0, pos), text.rfind("\\fbox", 0, pos)
        start = max(b, f)
        if start < 0:
            return None
        tries += 1
        pos = start
        i = after = start + (len("\\boxed") if start == b else len("\\fbox"))
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                c = text[j]
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1:j].strip()
                j += 1
        elif after < i < len(text):  # "\boxed 5": the next token
            m = re.match(r"[^\s$]+", text[i:i + 200])
            if m:
                return m.group(0).rstrip(".")
    return None


def extract_hash(text: str) -> str | None:
    """The rest of the line after the last ``####`` (GSM8K), stripped; None if empty."""
    k = text.rfind("####")
    if k < 0:
        return None
    rest = text[k + 4:].lstrip("# \t")
    line = rest.split("\n", 1)[0].strip()
    return line or None


def extract_last_number(text: str) -> str | None:
    """The last number in ``text``, with trailing ``,`` or ``.`` removed."""
    last = None
    for m in _NUMBER.finditer(text):
        last = m
    if last is None:
        return None
    return last.group(0).rstrip(",.")


def last_line(text: str) -> str | None:
    """The last non-empty line of ``text`` (TinyZero reads only the last line)."""
    for line in reversed(text[-TAIL:].splitlines()):
        if line.strip():
            return line.strip()
    return None
