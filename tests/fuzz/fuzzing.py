"""Fuzz campaigns for the answer checkers (docs/reliability.md; ``scripts/fuzz_campaign.py``).

Model output is untrusted input. A campaign feeds ``verify(completion, gold, kind)`` (what
the ``correct`` reward calls per completion) many generated completions and records, per
checker kind: inputs tried, worst and mean wall time per call, exceptions that escaped
(crashes), scores that are not a finite float in [0, 1], code executions (a canary file
that the injection payloads try to create must never appear), false positives (near-miss
answers that must score 0 but did not), true positives (the gold answer in the task's own
format must score 1: a checker that always says 0 would otherwise pass), and math-verify
worker timeouts and pool restarts (``mathpool.pool_stats()``).

Golds come from the real tasks: ``arithmetic``, ``lego`` and ``countdown`` items from
``groupo.tasks.generators``, GSM8K-style ``jsonl`` golds (``gsm8k_gold``), IneqMath-style
choice golds (``"(B) $\\geq$"``) and bound golds (``"$C = \\frac{3}{2}$"``), and MATH-style
LaTeX golds without delimiters (``2\\sqrt{3}``, ``2^{10}``) for kind ``math``.

The mix, by input index ``i % 20``: 2/20 the gold in a proper format (must score 1),
6/20 near misses (must score 0), 4/20 code-injection payloads (must score 0 and never
run), 4/20 bombs (towers, factorials, 10^4-10^5 deep nesting, megabyte answers, NUL
bytes, odd Unicode, tag floods, LaTeX bombs: any score, but no crash and bounded time),
2/20 the gold buried in such noise, 2/20 random text over a hostile alphabet.
Everything is seeded (``random.Random(seed)``): a campaign is reproducible.

``inject_hangs()`` makes a math worker hang (as a computation that math-verify's own
alarm cannot interrupt would) on the input ``HANG``; ``campaign(..., hang_every=K)``
puts it in every K-th math input, to show that a hung worker is killed and replaced,
the completion scores 0, and the kill is counted.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import string
import tempfile
import time

from groupo.rewards import mathpool
from groupo.rewards.verify import verify

from .cases import MINUS, cases, gold_and_near, wrap

__all__ = ["MINUS", "cases", "gold_and_near", "wrap", "campaign", "failures", "markdown_table", "canary_dir",
           "bomb", "HANG", "KINDS"]

KINDS = ("number", "math", "choice", "countdown", "lego", "exact")
HANG = "\x00groupo-fuzz-hang\x00"   # with inject_hangs(): a math worker hangs on this input


# ------------------------------------------------------------------ hostile inputs

def injections(canary: str) -> list[str]:
    """Payloads that create ``canary`` if anything ever executes (or shells, or templates) them.
    Those without digits must score 0; the others (a countdown-shaped one) only must not run."""
    c = canary.replace("\\", "\\\\")
    return [
        f"__import__('os').system('touch {c}')",
        f"open('{c}', 'w').write('pwned')",
        f"exec(\"open('{c}','w').write('x')\")",
        f"eval(\"__import__('os').system('touch {c}')\")",
        f"eval(compile(\"open('{c}','w')\", 'x', 'exec'))",
        f"(lambda: __import__('pathlib').Path('{c}').touch())()",
        f"(lambda f: f(f))(lambda f: open('{c}', 'w'))",
        f"getattr(__builtins__, 'exec')(\"open('{c}','w')\")",
        f"__builtins__.__dict__['__import__']('os').system('touch {c}')",
        f"[x for x in ().__class__.__base__.__subclasses__() if x.__name__ == 'catch_warnings'][0]()"
        f"._module.__builtins__['__import__']('os').system('touch {c}')",
        "().__class__.__base__.__subclasses__()",
        f"globals()['__builtins__']['open']('{c}', 'w')",
        f"breakpoint() or open('{c}', 'w')",
        f"${{__import__('os').system('touch {c}')}}$",
        f"\\boxed{{__import__('os').system('touch {c}')}}",
        f"$\\text{{__import__('os').system('touch {c}')}}$",
        f"\\boxed{{\\operatorname{{exec}}(\"open('{c}','w')\")}}",
        f"\\write18{{touch {c}}}",
        f"\\immediate\\write18{{touch {c}}}",
        f"\\input{{{c}}}",
        f"`touch {c}`",
        f"$(touch {c})",
        f"; touch {c}",
        f"&& touch {c} || touch {c}",
        f"{{{{ ''.__class__.__mro__[1].__subclasses__() }}}} {c}",
        f"{{0.__init__.__globals__[os].system}}('touch {c}')",
        f"f\"{{__import__('os').system('touch {c}')}}\"",
        f"import os; os.system('touch {c}')",
        f"Symbol('x').__class__.__init__.__globals__['os'].system('touch {c}')",
        f"sympify(\"__import__('os').system('touch {c}')\")",
        f"S(\"__import__('os').system('touch {c}')\")",
        f"lambdify(x, \"__import__('os').system('touch {c}')\")(1)",
        f"Function('exec')(\"open('{c}','w')\")",
        f"cos\nsystem\n(S'touch {c}'\ntR.",                          # a pickle payload
        f"!!python/object/apply:os.system ['touch {c}']",             # a YAML payload
        f"3*5+7 + __import__('os').system('touch {c}')",              # a countdown-shaped one
        f"x if open('{c}', 'w') else y",
    ]


@contextlib.contextmanager
def canary_dir():
    """A fresh directory whose path has no digits (removed afterwards); yields the canary path
    in it. No digits: a payload naming the path must not hold a number that a checker could
    read as the answer ("... pytest-131/x_0/CANARY" ends with the number 0)."""
    base = tempfile.gettempdir()
    if any(c.isdigit() for c in base):
        base = "/tmp"
    rng = random.SystemRandom()
    path = os.path.join(base, "groupo-fuzz-" + "".join(rng.choice(string.ascii_lowercase) for _ in range(12)))
    os.mkdir(path, 0o700)
    try:
        yield os.path.join(path, "CANARY")
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _nest(rng: random.Random) -> int:
    return rng.choice([10, 100, 1000, 10_000, 30_000, 100_000])


# each bomb is built only when drawn (several are megabytes long)
_BOMBS = [
    # exponent towers and huge powers
    lambda r: "9**9**9**9", lambda r: "2^2^2^2^2^2^2^2", lambda r: "10^{10^{10}}", lambda r: "10^{10^{10^{10}}}",
    lambda r: "(9**9)**(9**9)", lambda r: "9^{9^{9^{9}}}", lambda r: "2**" * r.randint(5, 200) + "2",
    lambda r: f"{r.randint(2, 9)}^{{{r.randint(10 ** 6, 10 ** 9)}}}", lambda r: "e^{e^{e^{e^{10}}}}",
    lambda r: "7**123456789", lambda r: "(x+1)^{100000}", lambda r: "x^{10^{8}} - 1",
    # factorials and friends
    lambda r: "100000!", lambda r: "(10^{6})!", lambda r: "factorial(10**6)",
    lambda r: f"{r.randint(10 ** 4, 10 ** 8)}!",
    lambda r: "\\Gamma(10^{9})", lambda r: "\\binom{10^{9}}{10^{8}}", lambda r: "\\sum_{i=1}^{10^{10}} i",
    lambda r: "\\int_0^{10^{10}} x^{x} dx", lambda r: "\\prod_{k=1}^{10^{9}} k",
    # deep nesting (10 to 100,000 levels)
    lambda r: (lambda d: "(" * d + "1" + ")" * d)(_nest(r)), lambda r: "[" * _nest(r), lambda r: "{" * _nest(r),
    lambda r: (lambda d: "\\frac{1}{" * d + "2" + "}" * d)(r.choice([100, 1000])),
    lambda r: (lambda d: "\\frac{" * d + "1" + "}" * d)(_nest(r)), lambda r: "\\left(" * r.choice([1000, 10_000]),
    lambda r: (lambda d: "\\sqrt{" * d + "2" + "}" * d)(_nest(r)),
    lambda r: (lambda d: "x^{" * d + "2" + "}" * d)(_nest(r)),
    lambda r: "\\boxed{" * _nest(r), lambda r: (lambda d: "\\boxed{" * d + "1" + "}" * d)(_nest(r)),
    lambda r: "-" * _nest(r) + "1", lambda r: "<answer>" * _nest(r), lambda r: "</answer>" * _nest(r),
    # past Python's 4,300-digit int-string limit, megabyte answers
    lambda r: "9" * r.choice([4301, 5000, 20_000]), lambda r: "1" + "0" * r.choice([4300, 10_000]),
    lambda r: "0." + "0" * 5000 + "1", lambda r: "1/" + "9" * 5000, lambda r: "\\frac{" + "9" * 5000 + "}{7}",
    lambda r: "1" * r.choice([10 ** 5, 10 ** 6]), lambda r: "a" * 10 ** 6, lambda r: " " * 10 ** 6 + "1",
    lambda r: "\n" * 10 ** 6, lambda r: "1," * 10 ** 5, lambda r: "\\\\" * 10 ** 5,
    # tag and \boxed floods
    lambda r: "<answer>1</answer>" * r.choice([100, 5000, 50_000]),
    lambda r: "\\boxed{1}" * r.choice([100, 3000, 30_000]),
    lambda r: "#### " * _nest(r), lambda r: "<answer>" + "\\boxed{1}" * 1000 + "</answer>",
    # NUL bytes and odd Unicode
    lambda r: "\x00" * 100 + "1", lambda r: "1\x00", lambda r: "<answer>\x001\x00</answer>", lambda r: "\x00" * 10 ** 5,
    lambda r: "\u202e1\u202c", lambda r: "\u200f42\u200e", lambda r: "\u200b4\u200b2\u200d", lambda r: "\ufeff42",
    lambda r: "\uff14\uff12", lambda r: "\u0664\u0662", lambda r: "\u096a\u0968", lambda r: "\u2074\u00b2",
    lambda r: "\U0001d7d2\U0001d7d0", lambda r: "4\u03012\u0308", lambda r: "1" + "\u0301" * 10_000,
    lambda r: "\udcff\ud800", lambda r: "\\ud800\\udcff", lambda r: "\\uD83D\\uDE00 42", lambda r: "\U0001f600" * 1000,
    lambda r: "".join(chr(r.randint(0, 0x10FFFF)) for _ in range(200)),
    # special values
    lambda r: "NaN", lambda r: "inf", lambda r: "-inf", lambda r: "1e999999", lambda r: "1/0", lambda r: "0/0",
    lambda r: "\\infty", lambda r: "\\frac{1}{0}", lambda r: "1e308*1e308", lambda r: "-0",
    # LaTeX oddities
    lambda r: "\\begin{matrix}" * 200, lambda r: "\\begin{pmatrix}" + "1&" * 5000 + "\\end{pmatrix}",
    lambda r: "\\def\\a{\\a}\\a", lambda r: "\\newcommand{\\x}{\\x\\x}\\x", lambda r: "\\sqrt[10^{9}]{2}",
    lambda r: "$" * 10_000, lambda r: "\\left(" * 500 + "1" + "\\right)" * 400, lambda r: "\\underbrace{" * 1000,
]
_NASTY = ("0123456789-+*/^().,=<>!{}[]$#%&|\\ \n\t\x00eEjJxXabcdefABCDEF_'\""
          "\u2212\u2013\uff0d\u00d7\u00f7\u221a\u00b2\u200b\u202e\ufeff\uff11\u0661\u0301\U0001d7d0")


def bomb(rng: random.Random) -> str:
    """One hostile, malformed or oversized string."""
    return rng.choice(_BOMBS)(rng)


def random_text(rng: random.Random) -> str:
    """Random text over a hostile alphabet (digits, operators, brackets, tags, odd Unicode)."""
    parts = []
    for _ in range(rng.randint(1, 8)):
        if rng.random() < 0.2:
            parts.append(rng.choice(["<answer>", "</answer>", "\\boxed{", "}", "####", "\\frac{", "$"]))
        else:
            parts.append("".join(rng.choice(_NASTY) for _ in range(rng.randint(0, 40))))
    return "".join(parts)


def inputs(kind: str, n: int, seed: int, canary: str, hang_every: int = 0):
    """Yield ``(completion, gold, expected, category)``: expected 1 (true positive), 0 (near
    miss, injection or injected hang: must score 0) or None (hostile: any score in [0, 1])."""
    rng = random.Random(f"{kind}-{seed}")
    inj = injections(canary)
    for i in range(n):
        gold, ok, near = gold_and_near(kind, rng)
        if hang_every and kind == "math" and i % hang_every == hang_every - 1:
            yield HANG, gold, 0, "hang"
            continue
        r = i % 20
        if r < 2:
            yield ok, gold, 1, "gold"
        elif r < 8:
            yield rng.choice(near), gold, 0, "near"
        elif r < 12:
            payload = rng.choice(inj)
            yield wrap(rng, payload), gold, None if any(c.isdigit() for c in payload) else 0, "injection"
        elif r < 16:
            yield wrap(rng, bomb(rng)), gold, None, "bomb"
        elif r < 18:                                    # the gold buried in noise: no crash, bounded time
            junk = rng.choice([bomb(rng), rng.choice(inj)])
            yield rng.choice([junk + ok, ok + junk, junk[:1000] + ok + junk[:1000]]), gold, None, "buried"
        else:
            yield random_text(rng), gold, None, "random"


# ------------------------------------------------------------------ hang injection

_REAL_WORK = mathpool._work


def _hanging_work(job, pred, gold, inner):
    """A math worker that hangs on ``HANG`` like an uninterruptible computation."""
    if pred == HANG:
        if mathpool._worker_queue is not None:
            mathpool._worker_queue.put(job)
        while True:
            time.sleep(3600)
    return _REAL_WORK(job, pred, gold, inner)


@contextlib.contextmanager
def inject_hangs():
    """Within: math workers (a fresh pool, forked after the patch) hang on ``HANG``."""
    mathpool.shutdown()
    mathpool._work = _hanging_work
    try:
        yield
    finally:
        mathpool.shutdown()
        mathpool._work = _REAL_WORK


# ------------------------------------------------------------------ campaign

def campaign(kind: str, n: int, seed: int, canary: str, timeout: float = 5.0, hang_every: int = 0) -> dict:
    """Run ``n`` inputs through ``verify`` for ``kind``; return the table row. ``canary``: a
    path with no digits that no file occupies (``canary_dir()``)."""
    if any(c.isdigit() for c in canary) or os.path.exists(canary):
        raise ValueError(f"canary {canary!r}: needs a path without digits and without a file (see canary_dir)")
    stats = {"kind": kind + (" (injected hangs)" if hang_every and kind == "math" else ""), "inputs": 0,
             "worst_s": 0.0, "total_s": 0.0, "crashes": 0, "executions": 0, "near_misses": 0,
             "false_positives": 0, "true_positives": 0, "positives_expected": 0, "hangs_injected": 0,
             "hangs_scored_0": 0, "out_of_range": 0, "by_category": {}, "examples": []}
    before = mathpool.pool_stats()
    ctx = inject_hangs() if hang_every and kind == "math" else contextlib.nullcontext()
    with ctx:
        for completion, gold, expected, cat in inputs(kind, n, seed, canary, hang_every):
            t0 = time.perf_counter()
            try:
                score = verify(completion, gold, kind, timeout=timeout)
            except Exception as e:  # noqa: BLE001 - counting escapes is the point
                stats["crashes"] += 1
                stats["examples"].append(f"crash {type(e).__name__}: {completion[:80]!r}")
                score = 0.0
            dt = time.perf_counter() - t0
            stats["inputs"] += 1
            stats["total_s"] += dt
            stats["worst_s"] = max(stats["worst_s"], dt)
            worst = stats["by_category"].setdefault(cat, [0, 0.0])
            worst[0] += 1
            worst[1] = max(worst[1], dt)
            if not (type(score) is float and math.isfinite(score) and 0.0 <= score <= 1.0):
                stats["out_of_range"] += 1
                stats["examples"].append(f"bad score {score!r}: {completion[:80]!r}")
            elif expected == 1:
                stats["positives_expected"] += 1
                stats["true_positives"] += int(score == 1.0)
                if score != 1.0 and len(stats["examples"]) < 10:
                    stats["examples"].append(f"missed true positive {score}: {completion[:80]!r} vs {gold!r}")
            elif expected == 0:
                if cat == "hang":
                    stats["hangs_injected"] += 1
                    stats["hangs_scored_0"] += int(score == 0.0)
                elif cat == "near":
                    stats["near_misses"] += 1
                if score > 0:
                    stats["false_positives"] += 1
                    if len(stats["examples"]) < 10:
                        stats["examples"].append(f"false positive {score} ({cat}): {completion[:80]!r} vs {gold!r}")
            if os.path.exists(canary):
                stats["executions"] += 1
                stats["examples"].append(f"executed: {completion[:80]!r}")
                os.unlink(canary)
    after = mathpool.pool_stats()
    stats["timeouts"] = after["timeouts"] - before["timeouts"]
    stats["pool_restarts"] = after["pool_restarts"] - before["pool_restarts"]
    stats["mean_s"] = stats["total_s"] / max(1, stats["inputs"])
    return stats


def markdown_table(rows: list[dict]) -> str:
    head = ("| checker | inputs | worst time / call (s) | mean time / call (ms) | crashes | bad scores "
            "| code executions | false positives / near misses | true positives "
            "| math timeouts (worker killed) | pool restarts |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    body = [f"| {r['kind']} | {r['inputs']} | {r['worst_s']:.3f} | {1000 * r['mean_s']:.2f} | {r['crashes']} "
            f"| {r['out_of_range']} | {r['executions']} | {r['false_positives']} / {r['near_misses']} "
            f"| {r['true_positives']}/{r['positives_expected']} | {r['timeouts']}"
            + (f" ({r['hangs_injected']} hangs injected, {r['hangs_scored_0']} scored 0)"
               if r['hangs_injected'] else "")
            + f" | {r['pool_restarts']} |" for r in rows]
    return "\n".join([head, *body])


def failures(row: dict) -> int:
    """Crashes, bad scores, executions, false positives, missed true positives, unkilled hangs."""
    return (row["crashes"] + row["out_of_range"] + row["executions"] + row["false_positives"]
            + row["positives_expected"] - row["true_positives"] + row["hangs_injected"] - row["hangs_scored_0"]
            + max(0, row["hangs_injected"] - row["timeouts"]))
