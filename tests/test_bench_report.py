"""bench/run.py's summary of worker runs: medians, the ratio of each run pair, the backend noted."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run_module():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _runs(steps, gemm=None):
    out = []
    for s in steps:
        r = {"step_s": s, "peak_rss_mb": 100.0 * s, "rows": 64, "completion_tokens": 1800, "other_cpu_frac": 0.01,
             "prompts_match": True, **{p: s / 7 for p in ("generation_s", "scoring_s", "logprobs_s", "forward_s",
                                                          "backward_s", "optimizer_s", "other_s")}}
        if gemm:
            r["cpu_gemm"] = gemm
        out.append(r)
    return out


def test_summary_pair_ratios_and_block():
    run = _run_module()
    g, t = run.summarize(_runs([0.2, 0.3, 0.25], "onednn")), run.summarize(_runs([0.4, 0.5, 0.6]))
    assert g["step_s"] == 0.25 and t["step_s"] == 0.5              # medians over runs
    assert g["step_s_runs"] == [0.2, 0.3, 0.25] and g["cpu_gemm"] == ["onednn"] and t["cpu_gemm"] == []
    row = {"size": "1M", "params": 1.06e6, "beta": 0.0, "precision": "fp32", "groupo": g, "trl": t}
    # run i of both libraries ran back to back: 0.2/0.4, 0.3/0.5, 0.25/0.6
    assert run.pair_ratios(row) == [0.5, 0.6, 0.42]
    for d in (g, t):
        d.update(completions_per_s=64 / d["step_s"], tokens_per_s=1800 / d["step_s"], gflop_per_step=1.0,
                 pct_compute_bound=10.0)
    text = "\n".join(run.fmt_block(row))
    assert "ratio per run pair [0.5, 0.6, 0.42]" in text
    assert "groupo's CPU float32 products (model.cpu_gemm auto): onednn" in text
