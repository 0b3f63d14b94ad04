"""Answer checkers: pure functions ``(pred_text, gold) -> float in [0, 1]``.

``pred_text`` is an extracted answer span (``groupo.rewards.extract``). Nothing here
evaluates model output with ``eval``/``exec``/``sympy.parse_expr`` (TASKS.md §0: several
reasoning-gym scorers and TinyZero's countdown do, and TinyZero's whitelist allows
``**``, a DoS). Every input is length-capped.

* ``number``: numeric compare after stripping ``$``, ``%``, a trailing ``.`` and thousands
  separators (GSM8K recommendation, TASKS.md §5.2); ints, decimals, ``a/b`` and ``\\frac{a}{b}``.
  A separator between digits (``,``, ``{,}``, spaces, ``\\,`` and other thin spaces) must
  group the integer part in threes, one kind per number: ``1,000``, ``1 000``, ``12 345 678``
  pass; ``4 2``, ``42 0``, ``1 00``, ``1,00``, ``12,34`` (lakh), ``1,000 000`` and separators
  after the decimal point do not;
  exact when the gold has a finite decimal expansion (integers, 12.5, 3/4), else
  relative tolerance 1e-6 (1/3 vs 0.3333333; a tolerance on every gold accepted
  1234568 for 1234567). A span that is not a bare number counts only if it contains
  exactly one number ("x = 59" yes, "58 or 59" no: no credit for hedging) and nothing
  next to it changes its value or sign ("-(59)", "negative 59", "x-59", "\\sqrt{59}",
  "59!", "59^2" score 0 for gold 59). Unicode minus signs (U+2212, en dash,
  small/fullwidth hyphen-minus) count as "-".
* ``exact``: whitespace-normalised string equality.
* ``choice``: letters A-F ("(B)", "B", "answer: B", "\\text{B}").
* ``lego``: Z2 values, "+1" == "1", "-1"; "c=-1" reads the right-hand side
  (LEGO, arXiv 2206.04301).
* ``countdown``: TinyZero's rule (Jiayi-Pan/TinyZero ``countdown.py``, TASKS.md §5.1)
  with an AST evaluator over int constants, binary + - * /, unary -, parentheses
  only. Every given number used exactly once; value within 1e-5 of the target -> 1.0.
  Deviation: every failure scores 0, not TinyZero's 0.1 format score (format is a
  separate reward component here). An ``=`` is allowed: the left side is evaluated.
"""
from __future__ import annotations

import ast
import re
from fractions import Fraction

from .extract import _NUMBER, MINUS_SIGNS

MAX_LEN = 200          # longest span a checker parses
MAX_ABS = 10 ** 12     # countdown: cap on |numerator| and denominator of intermediates
REL_TOL = 1e-6

_FRAC = re.compile(r"\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}")
_PLAIN = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:/[-+]?\d+)?")
_MINUS = str.maketrans(MINUS_SIGNS, "-" * len(MINUS_SIGNS))
# next to the one number of a non-number span: a sign or operator that changes its value
_CHANGED_BEFORE = re.compile(r"(?:[-/^\u221a]|\\sqrt|\bnegative|\bminus)(?:[\s(\[{$+]|\\left)*$", re.I)
_CHANGED_AFTER = re.compile(r"(?:[\s)\]}]|\\right)*(?:[!\u00b2\u00b3\u00b9\u2070-\u2079]|\^(?!\s*\{?\s*\\circ))")


# thin spaces that may group digits (LaTeX \\, \\  ~, Unicode thin / narrow no-break / no-break space)
_SPACES = ("\\,", "\\ ", "~", "\u2009", "\u202f", "\u00a0")
_SEP = re.compile(r"(,|\s+)")
_GROUP_HEAD = re.compile(r"\d{1,3}")
_GROUP = re.compile(r"\d{3}")


def _ungroup(part: str) -> str | None:
    """``part`` (one number, no ``/``) without its thousands separators; None when a separator
    between digits does not group the integer part in threes (``4 2``, ``1,00``) or the two
    kinds are mixed, or one stands after the decimal point."""
    part = part.strip()
    sign = ""
    if part[:1] in ("-", "+"):
        sign, part = part[0], part[1:].lstrip()
    head, dot, frac = part.partition(".")
    if _SEP.search(frac):
        return None
    pieces = _SEP.split(head)             # [digits, sep, digits, sep, ...]
    if len(pieces) > 1:
        digits, seps = pieces[0::2], pieces[1::2]
        if (len({"," if x == "," else " " for x in seps}) != 1 or not _GROUP_HEAD.fullmatch(digits[0])
                or not all(_GROUP.fullmatch(d) for d in digits[1:])):
            return None
        head = "".join(digits)
    return sign + head + dot + frac


def parse_number(text: str) -> Fraction | None:
    """A bare number (int, decimal, a/b, \\frac{a}{b}) as an exact Fraction, else None."""
    if not isinstance(text, str):
        text = str(text)
    s = text.strip().translate(_MINUS)
    if len(s) > MAX_LEN:
        return None
    s = s.replace("{,}", ",")
    for space in _SPACES:
        s = s.replace(space, " ")
    for junk in ("\\$", "$", "\\!", "\\%", "%"):
        s = s.replace(junk, "")
    s = s.strip().rstrip(".").rstrip()
    m = _FRAC.fullmatch(s)
    if m:
        s = f"{m.group(1)}/{m.group(2)}"
    parts = [_ungroup(p) for p in s.split("/")]
    if len(parts) > 2 or None in parts:
        return None
    s = "/".join(parts)
    if not _PLAIN.fullmatch(s):
        return None
    try:
        if "/" in s:
            a, b = s.split("/")
            return Fraction(a) / Fraction(b) if Fraction(b) != 0 else None
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def number(pred_text: str, gold) -> float:
    g = parse_number(str(gold))
    if g is None:
        return exact(pred_text, gold)
    p = parse_number(pred_text)
    if p is None:
        text = str(pred_text)[-2000:].translate(_MINUS)
        found = [m for _, m in zip(range(2), _NUMBER.finditer(text))]
        if (len(found) != 1 or _CHANGED_BEFORE.search(text, 0, found[0].start())
                or _CHANGED_AFTER.match(text, found[0].end())):
            return 0.0
        p = parse_number(found[0].group(0))
        if p is None:
            return 0.0
    if _terminates(g):
        return 1.0 if p == g else 0.0
    return 1.0 if abs(p - g) <= REL_TOL * abs(g) else 0.0


def _terminates(x: Fraction) -> bool:
    """Whether ``x`` has a finite decimal expansion (its denominator is 2**a * 5**b)."""
    d = x.denominator
    for f in (2, 5):
        while d % f == 0:
            d //= f
    return d == 1


def exact(pred_text: str, gold) -> float:
    return 1.0 if " ".join(str(pred_text).split()) == " ".join(str(gold).split()) else 0.0


_CHOICE_WHOLE = re.compile(r"[(\[{*]*\s*([A-Fa-f])\s*[)\]}*]*[.:)]?")
_CHOICE_ANSWER = re.compile(r"(?i:answer)(?: is)?\s*[:=]?\s*[(\[{*]*\s*([A-F])(?![A-Za-z])")
_CHOICE_PAREN = re.compile(r"\(([A-F])\)")
_CHOICE_BARE = re.compile(r"(?<![A-Za-z])([A-F])(?![A-Za-z])")


def choice_letter(text: str) -> str | None:
    """The chosen letter A-F of a span, or None."""
    s = str(text)[-2000:].strip()
    for pat in (r"\\text\{\s*([^{}]*)\}", r"\\textbf\{\s*([^{}]*)\}", r"\\mathrm\{\s*([^{}]*)\}"):
        s = re.sub(pat, r"\1", s)
    m = _CHOICE_WHOLE.fullmatch(s)
    if m:
        return m.group(1).upper()
    for pat in (_CHOICE_ANSWER, _CHOICE_PAREN, _CHOICE_BARE):
        last = None
        for last in pat.finditer(s):
            pass
        if last is not None:
            return last.group(1).upper()
    return None


def choice(pred_text: str, gold) -> float:
    g, p = choice_letter(str(gold)), choice_letter(pred_text)
    return 1.0 if g is not None and g == p else 0.0


def lego_value(text: str) -> int | None:
    """+1 / -1 from "+1", "1", "-1", "c=-1", "− 1"; else None."""
    s = str(text)[-MAX_LEN:].translate(_MINUS).replace(" ", "").strip().rstrip(".")
    if "=" in s:
        s = s.rsplit("=", 1)[1]
    if s in ("+1", "1"):
        return 1
    if s == "-1":
        return -1
    return None


def lego(pred_text: str, gold) -> float:
    g, p = lego_value(str(gold)), lego_value(pred_text)
    return 1.0 if g is not None and g == p else 0.0


class _Reject(Exception):
    """The expression is not an allowed countdown equation."""


def parse_countdown_gold(gold) -> tuple[Fraction, list[int]]:
    """``"22|3,5,7"`` (or a TinyZero dict ``{"target", "numbers"}``) -> (22, [3, 5, 7])."""
    if isinstance(gold, dict):
        return Fraction(int(gold["target"])), [int(n) for n in gold["numbers"]]
    target, nums = str(gold).split("|")
    return Fraction(int(target)), [int(n) for n in nums.split(",") if n.strip()]


def countdown_value(expr: str) -> tuple[Fraction, list[int]] | None:
    """(value, integer constants used) of an allowed expression, else None. Never runs it."""
    s = str(expr).strip()
    if "=" in s:
        s = s.split("=", 1)[0]
    s = s.replace("\u00d7", "*").replace("\u00f7", "/").replace("\u2212", "-").strip()
    if not s or len(s) > MAX_LEN or not re.fullmatch(r"[\d+\-*/().\s]+", s) or "**" in s or "//" in s:
        return None
    try:
        tree = ast.parse(s, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    used: list[int] = []
    try:
        value = _eval_node(tree.body, used, 0)
    except (_Reject, ZeroDivisionError, RecursionError):
        return None
    return value, used


def _eval_node(node, used: list[int], depth: int) -> Fraction:
    if depth > 100:
        raise _Reject
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval_node(node.operand, used, depth + 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        a = _eval_node(node.left, used, depth + 1)
        b = _eval_node(node.right, used, depth + 1)
        if isinstance(node.op, ast.Add):
            v = a + b
        elif isinstance(node.op, ast.Sub):
            v = a - b
        elif isinstance(node.op, ast.Mult):
            v = a * b
        else:
            v = a / b  # ZeroDivisionError -> 0 reward
        if abs(v.numerator) > MAX_ABS or v.denominator > MAX_ABS:
            raise _Reject
        return v
    raise _Reject  # floats, names, calls, attributes, **, //, %, comparisons, ...


def countdown(pred_text: str, gold) -> float:
    target, numbers = parse_countdown_gold(gold)
    found = countdown_value(pred_text)
    if found is None:
        return 0.0
    value, used = found
    if sorted(used) != sorted(numbers):
        return 0.0
    return 1.0 if abs(value - target) <= Fraction(1, 100_000) else 0.0


CHECKERS = {"number": number, "exact": exact, "choice": choice, "lego": lego, "countdown": countdown}
