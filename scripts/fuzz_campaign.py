"""The checker fuzz campaign behind docs/reliability.md.

    python scripts/fuzz_campaign.py [--n 10000] [--math-n 2000] [--seed 0]

Runs groupo.rewards.fuzzing.campaign for every checker kind and prints the markdown table.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from groupo.rewards import mathpool  # noqa: E402
from groupo.rewards.fuzzing import KINDS, campaign, markdown_table  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--math-n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        canary = str(Path(tmp) / "CANARY")
        for kind in KINDS:
            t0 = time.time()
            rows.append(campaign(kind, args.math_n if kind == "math" else args.n, args.seed, canary, args.timeout))
            r = rows[-1]
            print(f"{kind}: {r['inputs']} inputs in {time.time() - t0:.0f} s; crashes {r['crashes']}, "
                  f"executions {r['executions']}, false positives {r['false_positives']}, "
                  f"true positives {r['true_positives']}/{r['positives_expected']}", flush=True)
            for ex in r["examples"]:
                print("   ", ex)
    mathpool.shutdown()
    print()
    print(markdown_table(rows))
    bad = sum(r["crashes"] + r["executions"] + r["false_positives"] + r["out_of_range"] for r in rows)
    missed = sum(r["positives_expected"] - r["true_positives"] for r in rows)
    return 1 if bad or missed else 0


if __name__ == "__main__":
    sys.exit(main())
