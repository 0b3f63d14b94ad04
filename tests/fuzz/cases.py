"""Golds and answers for the checker fuzz campaign (``tests/fuzz/fuzzing.py``): per checker
kind, a gold from the real tasks, completions that must score 1 (the gold in the task's own
formats) and near misses that must score 0 (gold +-1, wrong sign with any minus character,
digits reordered, x10, the gold echoed from the question with another final answer, other
choice letters, Countdown expressions that break the rules, ...)."""
from __future__ import annotations

import math
import random
from fractions import Fraction

MINUS = ("-", "\u2212", "\u2013", "\uff0d")  # ASCII, U+2212 minus, en dash, fullwidth hyphen-minus


def wrap(rng: random.Random, s: str) -> str:
    """``s`` in one of the answer formats a completion may use (some malformed)."""
    return rng.choice([s, f"<answer>{s}</answer>", f"\\boxed{{{s}}}", f"#### {s}", f"The answer is {s}.",
                       f"Let me think.\n{s}\n", f"<answer>{s}", f"{s}</answer>", f"<answer> {s} </answer>\n"])


# ------------------------------------------------------------------ golds, true positives, near misses

def _int_variants(g: int) -> list[int]:
    """Integers that are not g: +-1, sign, digit orders, x10."""
    out = {g + 1, g - 1, -g, g * 10, g * 10 + 1}
    digits = list(str(abs(g)))
    for _ in range(3):
        random.Random(g).shuffle(digits)
        out.add(int("".join(digits)) * (-1 if g < 0 else 1))
    out.add(int(str(abs(g))[::-1]) * (-1 if g < 0 else 1))
    out.discard(g)
    return sorted(out)


def _number_case(rng: random.Random):
    from groupo.tasks.generators import Arithmetic
    from groupo.tasks.rows import gsm8k_gold

    src = rng.random()
    question = ""
    if src < 0.4:                                         # arithmetic task item
        item = Arithmetic(levels=(2, 3, 4)).generate(rng, rng.choice([2, 3, 4]))
        question, gold = item.question, item.answer
    elif src < 0.7:                                       # GSM8K jsonl gold ("#### 1,234" -> "1234")
        v = rng.randint(0, 10 ** rng.randint(1, 7))
        question = f"Natalia sold {rng.randint(2, 99)} clips. How many?"
        gold = gsm8k_gold(f"She sold <<{v}>> clips.\n#### {v:,}")
    elif src < 0.85:                                      # negative integers
        gold = str(-rng.randint(1, 9999))
    else:                                                 # decimals and fractions
        a, b = rng.randint(1, 99), rng.choice([2, 4, 5, 8])
        gold = rng.choice([f"{a}/{b}", str(Fraction(a, b).numerator / Fraction(a, b).denominator)])
    g = Fraction(gold)
    text = gold
    oks = [f"<answer>{text}</answer>", f"\\boxed{{{text}}}", f"#### {text}", f"The answer is {text}.",
           f"{question}<answer>{text}</answer>", f"<answer>x = {text}</answer>", f"so the total is {text}"]
    if g.denominator == 1 and abs(g) >= 1000:
        grouped = f"{int(g):,}"
        oks += [f"<answer>{grouped}</answer>", f"<answer>{grouped.replace(',', ' ')}</answer>",
                f"<answer>{grouped.replace(',', '{,}')}</answer>", f"\\boxed{{{grouped.replace(',', chr(92) + ',')}}}"]
    if g < 0:
        oks.append(f"<answer>\u2212{text[1:]}</answer>")
    if g.denominator == 1:
        wrong = [str(v) for v in _int_variants(int(g))]
    else:
        wrong = [str(g + 1), str(g - 1), str(-g), str(1 / g) if g != 1 / g else str(g * 2), str(g * 10)]
    near = [wrap(rng, w) for w in wrong]
    w = rng.choice(wrong)
    near += [f"{question}{text}? No. <answer>{w}</answer>",        # gold in the question echo, not the slot
             f"The question mentions {text}. <answer>{w}</answer>",
             f"<answer>{w} or {text}</answer>", f"<answer>{text} or {w}</answer>"]  # hedges
    if g != 0:
        pos = text.lstrip("-")
        sign = "" if g < 0 else "-"                       # flip the sign, in many spellings
        if g > 0:
            near += [f"<answer>{m}{pos}</answer>" for m in MINUS] + [f"\\boxed{{{m}{pos}}}" for m in MINUS]
            near += [f"<answer>-({pos})</answer>", f"<answer>negative {pos}</answer>",
                     f"<answer>-\\left({pos}\\right)</answer>", f"The answer is \u2212{pos}."]
        else:
            near += [f"<answer>{sign}{pos}</answer>", f"<answer>+{pos}</answer>"]
    if g.denominator == 1 and abs(g) > 2:
        near += [f"<answer>{text}!</answer>", f"<answer>{text}^2</answer>", f"<answer>{text}\u00b2</answer>"]
    if g.denominator == 1 and abs(g) >= 10:               # separators that do not group digits in threes
        digits, sign = str(abs(int(g))), "-" if g < 0 else ""
        for k in range(1, len(digits)):
            if not (k <= 3 and len(digits) - k == 3):     # "1 000" is a valid grouping of 1000
                near += [f"<answer>{sign}{digits[:k]}{sep}{digits[k:]}</answer>" for sep in (" ", ",")]
        near += [f"<answer>{sign}{digits} 0</answer>", f"<answer>{sign}{digits},0</answer>"]   # x10, mis-grouped
    if g > 1 and g.denominator == 1:
        near += [f"<answer>\\sqrt{{{text}}}</answer>", f"<answer>\u221a{text}</answer>"]
    return gold, oks, near


def _lego_case(rng: random.Random):
    from groupo.tasks.generators import Lego

    item = Lego(levels=(2, 3, 4, 5), distractors=rng.choice([0, 1])).generate(rng, rng.choice([2, 3, 4, 5]))
    gold, var = item.answer, item.question.rsplit("?", 1)[1]
    bad = "-1" if gold == "+1" else "+1"
    oks = [f"<answer>{gold}</answer>", f"\\boxed{{{gold}}}", f"<answer>{var}={gold}</answer>",
           f"{item.question}\n{var} = {gold}", f"#### {gold}", f"<answer>{gold}.</answer>"]
    oks.append(f"<answer>{var} = \u22121</answer>" if gold == "-1" else "<answer>1</answer>")
    near = [wrap(rng, bad), f"<answer>{var}={bad}</answer>", f"{var} = {bad}",
            f"{item.question}\n<answer>{bad}</answer>",
            "<answer>0</answer>", f"<answer>{bad} or {gold}</answer>", f"<answer>{gold}{gold}</answer>",
            f"<answer>{gold} {gold}</answer>", "<answer>2</answer>", "<answer>11</answer>"]
    if gold == "+1":                                      # off by sign, in Unicode spellings
        near += [f"<answer>{m}1</answer>" for m in MINUS] + [f"{var} = {m}1" for m in MINUS]
    return gold, oks, near


def _choice_case(rng: random.Random):
    letter = rng.choice("ABCDEF")
    rel = {"A": "$\\leq$", "B": "$\\geq$", "C": "$=$", "D": "$<$", "E": "$>$", "F": "$\\neq$"}
    gold = rng.choice([letter, f"({letter})", f"({letter}) {rel[letter]}"])   # plain, IneqMath relation golds
    others = [c for c in "ABCDEF" if c != letter]
    o = rng.choice(others)
    options = " ".join(f"({c}) {rel[c]}" for c in "ABCDEF")
    oks = [f"<answer>{letter}</answer>", f"<answer>({letter})</answer>", f"\\boxed{{{letter}}}",
           f"The answer is ({letter}).",
           f"<answer>\\text{{{letter}}}</answer>", f"<answer>{letter.lower()}</answer>",
           f"Options: {options}\n<answer>{letter}</answer>", f"answer: {letter}"]
    near = [wrap(rng, x) for x in others] + [f"<answer>({o})</answer>", f"\\boxed{{\\text{{{o}}}}}",
                                             f"Options: {options}\n<answer>{o}</answer>",   # gold letter in the echo
                                             f"<answer>{letter}{letter}</answer>", "<answer>G</answer>",
                                             f"<answer>({o}) {rel[letter]}</answer>"]
    return gold, oks, near


def _countdown_value(expr: str):
    """Our own reference value of a generated (trusted, digits-and-operators) expression."""
    try:
        return eval(expr.replace("\u00d7", "*"), {"__builtins__": {}})  # noqa: S307 - our own string
    except ZeroDivisionError:
        return None


def _countdown_case(rng: random.Random):
    from groupo.tasks.generators import Countdown

    item = Countdown(levels=(3, 4), max_number=rng.choice([20, 50])).generate(rng, rng.choice([3, 4]))
    gold, sol = item.answer, item.meta["solution"]
    target, nums = int(gold.split("|")[0]), [int(n) for n in gold.split("|")[1].split(",")]
    n = rng.choice(nums)
    extra = rng.choice([k for k in (0, 1, 2, 97) if k not in nums] or [97])
    oks = [f"<answer>{sol}</answer>", f"<answer>{sol} = {target}</answer>", f"Let me try.\n{sol}",
           f"\\boxed{{{sol}}}", f"<answer>({sol})</answer>", f"<answer>{sol.replace('*', chr(215))}</answer>"]
    near = [f"<answer>({sol}) + {extra}</answer>" if extra else f"<answer>({sol}) + 0</answer>",   # a number not given
            f"<answer>({sol}) * 1</answer>" if 1 not in nums else f"<answer>({sol}) * 97 / 97</answer>",
            f"<answer>{sol} + {n} - {n}</answer>",                 # reuses a number (value unchanged)
            f"<answer>{' + '.join(map(str, nums[:-1]))}</answer>",  # leaves one out
            f"<answer>{target}</answer>", f"<answer>{target} = {target}</answer>",
            f"<answer>{sol.replace('*', '**', 1)}</answer>" if "*" in sol else f"<answer>{nums[0]}**{nums[1]}</answer>",
            f"<answer>{sol.replace('/', '//', 1)}</answer>" if "/" in sol else f"<answer>{nums[0]}//{nums[1]}</answer>",
            f"<answer>{sol.replace(str(n), f'{n}.0', 1)}</answer>",
            item.question]                                           # the question echo as the last line
    for a, b in (("+", "-"), ("-", "+"), ("*", "+"), ("+", "*"), ("/", "*"), ("*", "/")):
        if a in sol:
            alt = sol.replace(a, b, 1)
            v = _countdown_value(alt)
            if v is not None and abs(v - target) > 1e-3:        # wrong value with the right numbers
                near.append(f"<answer>{alt}</answer>")
    return gold, oks, near


def _math_case(rng: random.Random):
    shape = rng.randrange(6)
    a, b = rng.randint(1, 40), rng.randint(2, 41)
    if math.gcd(a, b) != 1:
        a, b = 3, 7
    if shape == 0:                                        # fraction
        gold, wrong = f"\\frac{{{a}}}{{{b}}}", [f"\\frac{{{a + 1}}}{{{b}}}", f"-\\frac{{{a}}}{{{b}}}",
                                               f"\\frac{{{b}}}{{{a}}}", str(a), f"\\frac{{{a * a}}}{{{b * b}}}"]
        oks = [f"\\boxed{{{a}/{b}}}", f"\\boxed{{\\dfrac{{{a}}}{{{b}}}}}"]
        lead = None
    elif shape == 1:                                      # negative fraction
        gold = f"-\\frac{{{a}}}{{{b}}}"
        wrong = [f"\\frac{{{a}}}{{{b}}}", f"-\\frac{{{a + 1}}}{{{b}}}", f"-\\frac{{{b}}}{{{a}}}"]
        oks = [f"\\boxed{{-{a}/{b}}}", f"<answer>\u2212\\frac{{{a}}}{{{b}}}</answer>"]
        lead = None
    elif shape == 2:                                      # integer
        n = rng.randint(-500, 5000)
        gold, wrong = str(n), [str(v) for v in _int_variants(n)]
        oks = [f"\\boxed{{{n}}}", f"<answer>{n}</answer>"]
        lead = None
    elif shape == 3:                                      # k sqrt(m), MATH style, no delimiters
        k, m = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7])
        gold, wrong = f"{k}\\sqrt{{{m}}}", [f"{k + 1}\\sqrt{{{m}}}", f"-{k}\\sqrt{{{m}}}", f"{k}\\sqrt{{{m + 1}}}"]
        oks = [f"\\boxed{{\\sqrt{{{k * k * m}}}}}"]
        lead = str(k)                                     # the leading number a bare parse of the gold reads
    elif shape == 4:                                      # p^{q}, no delimiters
        p, q = rng.randint(2, 9), rng.randint(2, 9)
        gold = f"{p}^{{{q}}}"
        wrong = [f"{p}^{{{q + 1}}}", str(p ** q + 1), f"-{p}^{{{q}}}", f"{q}^{{{p}}}" if p != q else "1"]
        wrong = [w for w in wrong if w not in (f"{q}^{{{p}}}",) or q ** p != p ** q]
        oks = [f"\\boxed{{{p ** q}}}"]
        lead = str(p)
    else:                                                 # IneqMath bound gold
        gold = f"$C = \\frac{{{a}}}{{{b}}}$"
        wrong = [f"\\frac{{{a + 1}}}{{{b}}}", f"-\\frac{{{a}}}{{{b}}}", f"\\frac{{{b}}}{{{a}}}"]
        oks = [f"The answer is $C = \\frac{{{a}}}{{{b}}}$.", f"\\boxed{{\\frac{{{a}}}{{{b}}}}}"]
        lead = None
    plain = gold.strip("$")
    oks += [f"The answer is $\\boxed{{{plain}}}$.", f"<answer>${plain}$</answer>", f"Therefore ${plain}$."]
    w = rng.choice(wrong)
    near = [f"\\boxed{{{x}}}" for x in wrong] + [f"<answer>${x}$</answer>" for x in wrong]
    near += [f"Is it ${plain}$? No. \\boxed{{{w}}}", f"${plain}$ is wrong; the answer is ${w}$",
             f"<answer>${w}$</answer> (not ${plain}$)"]
    if lead is not None:
        near += [f"\\boxed{{{lead}}}", f"<answer>{lead}</answer>"]
    if plain != "0" and (plain[0].isdigit() or plain.startswith("\\frac")):
        near += [f"<answer>\u2212{plain}</answer>", f"\\boxed{{\u2212{plain}}}"]
    return gold, oks, near


def _exact_case(rng: random.Random):
    word = rng.choice(["Paris", "New York", "ans42", "x^2+1", "caf\u00e9", "O(n log n)", "yes", "Blue Whale"])
    gold = f"{word} {rng.randint(1, 99)}" if rng.random() < 0.5 else word
    oks = [f"<answer>{gold}</answer>", f"\\boxed{{{gold}}}", f"#### {gold}",
           f"<answer>  {gold.replace(' ', '  ')} </answer>", gold]
    near = [f"<answer>{gold.lower() if gold != gold.lower() else gold.upper()}</answer>", f"<answer>{gold}x</answer>",
            f"<answer>x{gold}</answer>",
            f"<answer>{gold[::-1]}</answer>" if gold != gold[::-1] else "<answer>?</answer>",
            f"<answer>{gold[:1]}\u200b{gold[1:]}</answer>", f"<answer>{gold.replace('a', chr(0x430))}</answer>"
            if "a" in gold else f"<answer>{gold}.</answer>", f"{gold}? no.\n<answer>{gold}!</answer>"]
    if gold[-1].isdigit():
        head = gold.rstrip("0123456789")
        head, num = gold.rsplit(" ", 1) if " " in gold else (head, gold[len(head):])
        sep = " " if " " in gold else ""
        near.append(f"<answer>{head}{sep}{int(num) + 1}</answer>")
    return gold, oks, near


_CASES = {"number": _number_case, "lego": _lego_case, "choice": _choice_case, "countdown": _countdown_case,
          "math": _math_case, "exact": _exact_case}


def gold_and_near(kind: str, rng: random.Random) -> tuple[object, str, list[str]]:
    """(gold, one correct completion, near misses that must score 0)."""
    gold, oks, near = _CASES[kind](rng)
    return gold, rng.choice(oks), near


def cases(kind: str, rng: random.Random) -> tuple[object, list[str], list[str]]:
    """(gold, every correct completion of the case, its near misses)."""
    return _CASES[kind](rng)
