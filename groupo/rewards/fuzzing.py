"""Fuzz campaigns for the answer checkers (docs/reliability.md; ``scripts/fuzz_campaign.py``).

Model output is untrusted input. A campaign feeds ``verify(completion, gold, kind)`` many
generated hostile or malformed completions and records, per checker kind: inputs tried,
worst and mean wall time per call, exceptions that escaped (crashes), code executions (a
canary file that the injection payloads try to create must never appear), false positives
(near-miss answers that must score 0 but did not), true positives (the gold answer in the
task's own format must score 1: a checker that always says 0 would otherwise pass), and
math-verify worker timeouts (each one kills and replaces the worker pool).

Usable on your own checkers too: ``campaign(kind, n, seed, canary)`` returns the numbers.
"""
from __future__ import annotations

import math
import random
import time

from . import mathpool
from .verify import verify

KINDS = ("number", "math", "choice", "countdown", "lego", "exact")


def injections(canary: str) -> list[str]:
    c = canary.replace("\\", "\\\\")
    return [
        f"__import__('os').system('touch {c}')",
        f"open('{c}', 'w').write('pwned')",
        f"exec(\"open('{c}','w').write('x')\")",
        f"eval(compile(\"open('{c}','w')\", 'x', 'exec'))",
        f"(lambda: __import__('pathlib').Path('{c}').touch())()",
        "().__class__.__base__.__subclasses__()",
        f"${{__import__('os').system('touch {c}')}}$",
        f"\\write18{{touch {c}}}",
        f"\\input{{{c}}}",
        f"`touch {c}`",
        f"$(touch {c})",
        f"{{{{ ''.__class__.__mro__[1].__subclasses__() }}}} {c}",
        f"import os; os.system('touch {c}')",
        f"Symbol('x').__class__.__init__.__globals__['os'].system('touch {c}')",
        f"sympify(\"__import__('os').system('touch {c}')\")",
    ]


def _bombs(rng: random.Random) -> list[str]:
    d = rng.choice([10, 100, 1000, 5000])
    return [
        "9**9**9**9", "2^2^2^2^2^2^2^2", "10^{10^{10^{10}}}", "(9**9)**(9**9)", "100000!", "factorial(10**6)",
        "(" * d + "1" + ")" * d, "\\frac{" * d + "1" + "}" * d, "\\left(" * d, "\\sqrt{" * d + "2" + "}" * d,
        "x^{" * d + "2" + "}" * d, "[" * d, "{" * d + "}" * (d // 2),
        "9" * rng.choice([4301, 5000, 20000]), "1" * rng.choice([10 ** 5, 10 ** 6]), "a" * 10 ** 6,
        "<answer>1</answer>" * rng.choice([100, 5000]), "\\boxed{1}" * rng.choice([100, 3000]),
        "\\boxed{" * d, "#### " * d, "\x00" * 100 + "1", "1\x00", "\u202e1\u202c", "\u200b4\u200b2",
        "４２", "⁴²", "4\u03012", "\udcff\ud800", "𝟒𝟐", "NaN", "inf", "-inf", "1e999999", "1/0", "0/0",
        "\\infty", "\\frac{1}{0}", "\\begin{matrix}" * 200, "\\def\\a{\\a}\\a", "\\newcommand{\\x}{\\x\\x}\\x",
        "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(200)),
    ]


def _wrap(rng: random.Random, s: str) -> str:
    return rng.choice([s, f"<answer>{s}</answer>", f"\\boxed{{{s}}}", f"#### {s}", f"The answer is {s}.",
                       f"Let me think.\n{s}\n", f"<answer>{s}", f"{s}</answer>"])


def gold_and_near(kind: str, rng: random.Random) -> tuple[object, str, list[str]]:
    """(gold, a correct completion, near misses that must score 0)."""
    if kind in ("number", "exact"):
        g = rng.randint(-999, 99999)
        near = [str(g + 1), str(g - 1), str(g * 10 + 1), f"{g}.5", f"{g + 1}/1"]
        if g != 0:
            near.append(str(-g))
        if str(abs(g))[::-1] != str(abs(g)):
            near.append(("-" if g < 0 else "") + str(abs(g))[::-1])
        near = [_wrap(rng, n) for n in near] + [f"The question mentions {g}. <answer>{g + 7}</answer>"]
        if kind == "exact":
            g = f"ans{g}"
            near = [f"<answer>ans{int(g[3:]) + 1}</answer>", f"<answer>{g}x</answer>", f"<answer>x{g}</answer>"]
        return g, f"<answer>{g}</answer>", near
    if kind == "lego":
        g = rng.choice(["+1", "-1"])
        bad = "-1" if g == "+1" else "+1"
        return g, f"<answer>{g}</answer>", [_wrap(rng, bad), f"<answer>0</answer>", f"<answer>{g}{g}</answer>"]
    if kind == "choice":
        g = rng.choice("ABCDEF")
        others = [c for c in "ABCDEF" if c != g]
        return g, f"<answer>{g}</answer>", [_wrap(rng, o) for o in others] + [f"<answer>({rng.choice(others)})</answer>"]
    if kind == "countdown":
        nums = [rng.randint(1, 30) for _ in range(3)]
        target = nums[0] + nums[1] * nums[2]
        gold = f"{target}|{','.join(map(str, nums))}"
        ok = f"<answer>{nums[0]} + {nums[1]} * {nums[2]}</answer>"
        near = [f"<answer>{nums[0]} + {nums[1]} * {nums[2]} + 1</answer>",            # uses a number not given
                f"<answer>{nums[0]} + {nums[1]} * {nums[2]} - {nums[0]} + {nums[0]}</answer>",   # reuses a number
                f"<answer>{nums[0]} * {nums[1]} + {nums[2]}</answer>" if nums[0] * nums[1] + nums[2] != target
                else f"<answer>{nums[0]} - {nums[1]} * {nums[2]}</answer>",
                f"<answer>{nums[1]} * {nums[2]}</answer>",                             # leaves a number out
                f"<answer>{target}</answer>", f"<answer>{nums[0]} + {nums[1]} ** {nums[2]}</answer>"]
        near = [n for n in near if not _countdown_hits(n, target, nums)]
        return gold, ok, near
    if kind == "math":
        a, b = rng.randint(1, 50), rng.randint(2, 60)
        if math.gcd(a, b) != 1 or b == 1:
            a, b = 3, 7
        g = f"\\frac{{{a}}}{{{b}}}"
        near = [f"\\boxed{{\\frac{{{a + 1}}}{{{b}}}}}", f"\\boxed{{-\\frac{{{a}}}{{{b}}}}}",
                f"\\boxed{{\\frac{{{b}}}{{{a}}}}}" if a != b else "\\boxed{0}", f"\\boxed{{{a}}}"]
        return g, f"The answer is $\\boxed{{\\frac{{{a}}}{{{b}}}}}$.", near
    raise ValueError(kind)


def _countdown_hits(text: str, target: int, nums: list[int]) -> bool:
    """Whether a generated 'near miss' happens to be a valid solution after all."""
    from .checkers import countdown

    return countdown(text.replace("<answer>", "").replace("</answer>", ""), f"{target}|{','.join(map(str, nums))}") > 0


def inputs(kind: str, n: int, seed: int, canary: str):
    """Yield (completion, gold, expected) with expected 1 (true positive), 0 (near miss or
    hostile), or None (hostile: must not crash, any score accepted for non-answers)."""
    rng = random.Random(seed)
    inj = injections(canary)
    for i in range(n):
        gold, ok, near = gold_and_near(kind, rng)
        r = i % 10
        if r == 0:
            yield ok, gold, 1
        elif r in (1, 2, 3):
            yield rng.choice(near), gold, 0
        elif r in (4, 5):
            yield _wrap(rng, rng.choice(inj)), gold, 0
        elif r in (6, 7):
            yield _wrap(rng, rng.choice(_bombs(rng))), gold, None
        else:                                   # the correct answer buried in hostile noise: no crash
            junk = rng.choice(_bombs(rng) + inj)
            yield rng.choice([junk + ok, ok + junk, junk[:1000] + ok + junk[:1000]]), gold, None


def campaign(kind: str, n: int, seed: int, canary: str, timeout: float = 5.0) -> dict:
    """Run ``n`` inputs through ``verify`` for ``kind``; return the table row."""
    import os

    stats = {"kind": kind, "inputs": 0, "worst_s": 0.0, "total_s": 0.0, "crashes": 0, "executions": 0,
             "false_positives": 0, "true_positives": 0, "positives_expected": 0, "timeouts": 0,
             "out_of_range": 0, "examples": []}
    t_before = mathpool.timeouts
    for completion, gold, expected in inputs(kind, n, seed, canary):
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
        if not (isinstance(score, float) and 0.0 <= score <= 1.0 and math.isfinite(score)):
            stats["out_of_range"] += 1
        if expected == 1:
            stats["positives_expected"] += 1
            stats["true_positives"] += int(score == 1.0)
        elif expected == 0 and score > 0:
            stats["false_positives"] += 1
            if len(stats["examples"]) < 5:
                stats["examples"].append(f"false positive {score}: {completion[:80]!r} vs {gold!r}")
        if os.path.exists(canary):
            stats["executions"] += 1
            os.unlink(canary)
    stats["timeouts"] = mathpool.timeouts - t_before
    stats["mean_s"] = stats["total_s"] / max(1, stats["inputs"])
    return stats


def markdown_table(rows: list[dict]) -> str:
    head = ("| checker | inputs | worst time / call (s) | mean time / call (ms) | crashes | code executions "
            "| false positives (near misses) | true positives | math-verify timeouts (pool killed) |\n"
            "|---|---|---|---|---|---|---|---|---|")
    body = [f"| {r['kind']} | {r['inputs']} | {r['worst_s']:.3f} | {1000 * r['mean_s']:.2f} | {r['crashes']} "
            f"| {r['executions']} | {r['false_positives']} | {r['true_positives']}/{r['positives_expected']} "
            f"| {r['timeouts']} |" for r in rows]
    return "\n".join([head, *body])


