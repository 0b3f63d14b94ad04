"""The checker fuzz campaign behind docs/reliability.md.

    OMP_NUM_THREADS=1 nice python scripts/fuzz_campaign.py [--n 10000] [--math-n 10000] [--seed 0]
        [--timeout 5] [--hang-n 200] [--hang-every 20] [--out runs/fuzz_campaign.md]

Runs tests/fuzz/fuzzing.py's campaign for every checker kind (``--n`` inputs each, ``--math-n``
for math), then a math run with injected worker hangs (``--hang-n`` inputs, every
``--hang-every``-th hangs; 0 turns it off), prints the markdown table and writes it to ``--out``.
Exit code 1 if any row has a crash, a bad score, a code execution, a false positive, a missed
true positive or an injected hang that was not killed and scored 0.
"""
import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))   # the fuzz corpus

from groupo.rewards import mathpool  # noqa: E402
from fuzz.fuzzing import KINDS, campaign, canary_dir, failures, markdown_table  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="inputs per checker kind (default 10000)")
    ap.add_argument("--math-n", type=int, default=10000, help="inputs for kind math (default 10000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=5.0, help="math-verify wall-clock budget per item (s)")
    ap.add_argument("--hang-n", type=int, default=200, help="inputs of the math run with injected hangs (0: skip)")
    ap.add_argument("--hang-every", type=int, default=20, help="every k-th input of that run hangs its worker")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of the kinds")
    ap.add_argument("--out", default="runs/fuzz_campaign.md", help="markdown file for the table")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        ap.error(f"unknown kinds {unknown}; valid: {', '.join(KINDS)}")
    plan = [(k, args.math_n if k == "math" else args.n, 0) for k in kinds]
    if args.hang_n > 0 and args.hang_every > 0 and "math" in kinds:
        plan.append(("math", args.hang_n, args.hang_every))
    started = time.time()
    rows = []
    with canary_dir() as canary:
        for kind, n, hang_every in plan:
            t0 = time.time()
            r = campaign(kind, n, args.seed, canary, args.timeout, hang_every=hang_every)
            rows.append(r)
            cats = ", ".join(f"{c} {k} (worst {w:.2f} s)" for c, (k, w) in sorted(r["by_category"].items()))
            print(f"{r['kind']}: {r['inputs']} inputs in {time.time() - t0:.0f} s; crashes {r['crashes']}, "
                  f"bad scores {r['out_of_range']}, executions {r['executions']}, false positives "
                  f"{r['false_positives']}/{r['near_misses']}, true positives {r['true_positives']}/"
                  f"{r['positives_expected']}, timeouts {r['timeouts']}, pool restarts {r['pool_restarts']}\n"
                  f"    {cats}", flush=True)
            for ex in r["examples"][:10]:
                print("   ", ex)
    mathpool.shutdown()
    table = markdown_table(rows)
    command = "OMP_NUM_THREADS=1 nice python scripts/fuzz_campaign.py " + " ".join(sys.argv[1:])
    header = (f"Fuzz campaign, {datetime.date.today().isoformat()}, {time.time() - started:.0f} s on "
              f"{platform.node() or 'this machine'} (Python {platform.python_version()}); "
              f"math-verify budget {args.timeout:g} s per item.\n\n`{command.strip()}`\n")
    print()
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + "\n" + table + "\n")
    print(f"\nwrote {out}")
    return 1 if any(failures(r) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
