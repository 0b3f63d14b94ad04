"""Which reasoning-gym scorers credit malformed answers (docs/reasoning_gym.md).

For every registered dataset (``composite`` aside): 3 entries (seed 42, indices 0-2); each
scorer is called on malformed answers built from the entry's gold, and the highest score over
the entries is reported. Two measurements:

* raw: ``score_answer(answer, entry)`` called directly, in this process (the answers are the
  fixed, harmless strings below; a 5 s alarm bounds each call);
* groupo: the same answers on the same entries, inside ``<answer>`` tags, through
  ``groupo.rewards.verify.verify_item`` with the task's default ``partial_credit=False`` (worker
  pool, guards, 1.0 only for a full score): the answers that still score 1.0.

    .venv/bin/python scripts/rg_audit.py > /tmp/audit.md     # about a minute on 2 CPU cores
"""
from __future__ import annotations

import re
import signal
import sys

ANSWERS = {
    "empty": lambda g: "",
    "garbage": lambda g: "wrong answer 12345",
    "gold in garbage": lambda g: f"xq7 {g} zz9",
    "gold + text": lambda g: f"The answer is {g}.",
    "gold or 7": lambda g: f"{g} or 7",
    "python expr": lambda g: f"{g}+0" if re.fullmatch(r"-?\d+(\.\d+)?", g) else repr(g),
}
NEEDS_GOLD = {"gold in garbage", "gold + text", "gold or 7", "python expr"}


def _alarm(signum, frame):
    raise TimeoutError


def main() -> int:
    import reasoning_gym as rg
    from reasoning_gym.factory import DATASETS

    from groupo.rewards.verify import verify_item
    from groupo.tasks.reasoning_gym import jsonable
    from groupo.types import Item

    signal.signal(signal.SIGALRM, _alarm)
    rows, clean = [], []
    for name in sorted(n for n in DATASETS if n != "composite"):
        raw = {k: None for k in ANSWERS}
        ours: set[str] = set()
        ds = rg.create_dataset(name, size=3, seed=42)
        for i in range(3):
            entry = ds[i]
            gold = entry["answer"]
            spec = {"dataset": name, "kwargs": {"seed": 42, "size": 3}, "index": i, "question": entry["question"],
                    "answer": gold, "partial_credit": False}
            item = Item(entry["question"], gold or "", name, "reasoning_gym",
                        {"metadata": jsonable(entry["metadata"]), "reasoning_gym": spec})
            for label, make in ANSWERS.items():
                if gold is None and label in NEEDS_GOLD:
                    continue
                answer = make("" if gold is None else str(gold))
                signal.alarm(5)
                try:
                    s = float(ds.score_answer(answer, entry))
                except TimeoutError:
                    s = float("nan")
                except Exception:  # noqa: BLE001 - a scorer that raises gives no credit
                    s = 0.0
                finally:
                    signal.alarm(0)
                raw[label] = s if raw[label] is None else max(raw[label], s)
                if verify_item(f"<answer>{answer}</answer>", item) >= 1.0:
                    ours.add(label)
        cells = ["-" if v is None else f"{v:.3g}" for v in raw.values()]
        if any(v for v in raw.values() if v is not None) or ours:
            verdict = ", ".join(k for k in ANSWERS if k in ours) or "none"
            if name == "game_of_life_halting":
                verdict += " (task refuses it)"
            rows.append(f"| {name} | " + " | ".join(cells) + f" | {verdict} |")
        else:
            clean.append(name)
        print(name, cells, ours, file=sys.stderr, flush=True)
    print("| dataset | " + " | ".join(ANSWERS) + " | score 1.0 in groupo |")
    print("|---|" + "---|" * (len(ANSWERS) + 1))
    print("\n".join(rows))
    print(f"\nNo credit for any malformed answer ({len(clean)}): " + ", ".join(clean))
    return 0


if __name__ == "__main__":
    sys.exit(main())
