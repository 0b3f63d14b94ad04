"""Summary tables, plots and an HTML report for a set of runs (a study or ``groupo compare``).

Input: ``[(label, seed, run_dir)]``. Per label (method, or method x group size) and
across seeds: mean and 95% percentile-bootstrap interval (``stats.bootstrap_ci``) of the
held-out accuracy after training, its change from before, pass@k, the worst group's
accuracy; tokens generated and wall time (training steps); the mean fraction of
zero-variance groups. Plots: learning curves (training accuracy, mean over seeds with a
min-max band), held-out accuracy per group, and the diagnostics the seed papers argue
about (zero-variance groups, entropy over time, update magnitude per difficulty).
Written: ``summary.json``, ``summary.md``, ``plots/*.png``, ``report.html`` (images
embedded, no scripts or external references).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .metrics import natural_key
from .report import _ema, _save, _series, load_metrics
from .stats import bootstrap_ci, mean

COLORS = [f"C{i}" for i in range(10)]


def _read(run_dir: Path) -> tuple[dict, list]:
    try:
        ev = json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError):
        ev = {}
    return ev, load_metrics(run_dir / "metrics.jsonl")


def _sum(rows, key) -> float:
    return float(sum(v for v in _series(rows, key)[1]))


def cell_record(label: str, seed: int, run_dir: Path) -> dict:
    ev, rows = _read(run_dir)
    b, a = ev.get("before") or {}, ev.get("after") or {}
    rec = {"label": label, "seed": seed, "run": str(run_dir), "steps": len(rows),
           "before": b.get("accuracy"), "after": a.get("accuracy"),
           "worst_after": (a.get("worst_group") or {}).get("accuracy"),
           "worst_group_after": (a.get("worst_group") or {}).get("group"),
           "pass@k": {str(k): v for k, v in (a.get("pass@k") or {}).items()},
           "per_group_before": {g: v.get("accuracy") for g, v in (b.get("per_group") or {}).items()},
           "per_group_after": {g: v.get("accuracy") for g, v in (a.get("per_group") or {}).items()},
           "tokens": _sum(rows, "tokens/generated"), "wall_s": _sum(rows, "time/step"),
           "zero_var": mean(_series(rows, "zero_var/frac")[1])}
    rec["delta"] = None if rec["after"] is None or rec["before"] is None else rec["after"] - rec["before"]
    return rec


def _stat(xs) -> dict:
    ci = bootstrap_ci(xs)
    return {"mean": mean(xs), "ci95": list(ci) if ci else None, "n": sum(x is not None for x in xs)}


def summarize_cells(records: list[dict]) -> dict:
    labels = list(dict.fromkeys(r["label"] for r in records))
    out = {}
    for lab in labels:
        rs = [r for r in records if r["label"] == lab]
        groups = sorted({g for r in rs for g in r["per_group_after"]}, key=natural_key)
        ks = sorted({k for r in rs for k in r["pass@k"]}, key=int)
        out[lab] = {
            "seeds": [r["seed"] for r in rs],
            "after": _stat([r["after"] for r in rs]), "before": _stat([r["before"] for r in rs]),
            "delta": _stat([r["delta"] for r in rs]), "worst_after": _stat([r["worst_after"] for r in rs]),
            "pass@k": {k: _stat([r["pass@k"].get(k) for r in rs]) for k in ks},
            "per_group_before": {g: _stat([r["per_group_before"].get(g) for r in rs]) for g in groups},
            "per_group_after": {g: _stat([r["per_group_after"].get(g) for r in rs]) for g in groups},
            "tokens": mean([r["tokens"] for r in rs]), "wall_s": mean([r["wall_s"] for r in rs]),
            "zero_var": mean([r["zero_var"] for r in rs]),
        }
    return out


def _f(s: dict | None, pct: bool = True) -> str:
    if not s or s.get("mean") is None:
        return "-"
    m, ci = s["mean"], s.get("ci95")
    k = 100 if pct else 1
    if ci and s.get("n", 0) > 1:
        return f"{k * m:.1f} [{k * ci[0]:.1f}, {k * ci[1]:.1f}]"
    return f"{k * m:.1f}"


def summary_markdown(summary: dict, title: str, note: str = "") -> str:
    ks = sorted({k for s in summary.values() for k in s["pass@k"]}, key=int)
    groups = sorted({g for s in summary.values() for g in s["per_group_after"]}, key=natural_key)
    head = (["method", "seeds", "held-out acc after (%)", "change (points)", "worst group after (%)"]
            + [f"pass@{k} (%)" for k in ks if k != "1"] + [f"{g} before -> after (%)" for g in groups]
            + ["zero-var groups", "tokens (M)", "train time (min)"])
    lines = [f"# {title}", "", note, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lab, s in summary.items():
        row = [lab, str(len(s["seeds"])), _f(s["after"]), _f(s["delta"]), _f(s["worst_after"])]
        row += [_f(s["pass@k"][k]) for k in ks if k != "1"]
        for g in groups:
            b, a = s["per_group_before"].get(g), s["per_group_after"].get(g)
            row.append(f"{100 * b['mean']:.1f} -> {100 * a['mean']:.1f}" if b and a and b["mean"] is not None
                       and a["mean"] is not None else "-")
        row += ["-" if s["zero_var"] is None else f"{s['zero_var']:.2f}",
                "-" if s["tokens"] is None else f"{s['tokens'] / 1e6:.2f}",
                "-" if s["wall_s"] is None else f"{s['wall_s'] / 60:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Intervals: 95% percentile bootstrap over seeds (coarse with 3 seeds: never wider than "
              "the range of the seeds' values). Accuracy: mean correctness over each held-out item's "
              "evaluation samples (greedy when eval.samples=1), averaged over items."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ plots
def _band(ax, runs: list[list[dict]], key: str, label: str, color: str) -> bool:
    series = [_series(rows, key) for rows in runs]
    series = [(x, y) for x, y in series if len(y)]
    if not series:
        return False
    grid = np.unique(np.concatenate([x for x, _ in series]))
    ys = np.array([np.interp(grid, x, _ema(y)) for x, y in series])
    ax.plot(grid, ys.mean(0), color=color, lw=2, label=f"{label} (n={len(series)})")
    if len(series) > 1:
        ax.fill_between(grid, ys.min(0), ys.max(0), color=color, alpha=0.15, lw=0)
    return True


def _plot_curves(runs_by_label: dict, keys: list[tuple], out: Path, title: str) -> Path | None:
    fig = Figure(figsize=(6 * len(keys), 4.2), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    any_data = False
    for ax, (key, name, unit) in zip(axes, keys):
        for i, (lab, runs) in enumerate(runs_by_label.items()):
            any_data |= _band(ax, runs, key, lab, COLORS[i % 10])
        ax.set(title=name, xlabel="training step", ylabel=unit)
        ax.grid(alpha=0.3)
    if not any_data:
        return None
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(title + " (smoothed; line = mean over seeds, band = min-max)")
    return _save(fig, out)


def _bars(ax, summary: dict, field: str, groups: list[str]) -> None:
    labs = list(summary)
    width = 0.8 / max(1, len(labs))
    x = np.arange(len(groups))
    for i, lab in enumerate(labs):
        st = [summary[lab][field].get(g) for g in groups]
        m = np.array([100 * s["mean"] if s and s["mean"] is not None else np.nan for s in st])
        lo = np.array([100 * s["ci95"][0] if s and s.get("ci95") else np.nan for s in st])
        hi = np.array([100 * s["ci95"][1] if s and s.get("ci95") else np.nan for s in st])
        err = np.vstack([np.nan_to_num(m - lo), np.nan_to_num(hi - m)])
        ax.bar(x + (i - (len(labs) - 1) / 2) * width, m, width, yerr=err, capsize=2, color=COLORS[i % 10], label=lab)
    ax.set_xticks(x, groups)


def _plot_groups(summary: dict, out: Path) -> Path | None:
    groups = sorted({g for s in summary.values() for g in s["per_group_after"]}, key=natural_key)
    if not groups:
        return None
    fig = Figure(figsize=(max(7, 1.2 * len(groups) * max(1, len(summary)) / 2), 4.5), layout="constrained")
    ax = fig.subplots()
    _bars(ax, summary, "per_group_after", groups)
    before = [mean([s["per_group_before"].get(g, {}).get("mean") for s in summary.values()]) for g in groups]
    for j, b in enumerate(before):
        if b is not None:
            ax.hlines(100 * b, j - 0.45, j + 0.45, colors="k", linestyles="--", lw=1,
                      label="before (mean over methods)" if j == 0 else None)
    ax.set(title="Held-out accuracy per group after training (error bars: 95% bootstrap over seeds)",
           xlabel="group", ylabel="accuracy (%)", ylim=(0, 100))
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out)


def _plot_update_magnitude(runs_by_label: dict, out: Path) -> Path | None:
    keys = sorted({k for runs in runs_by_label.values() for rows in runs for r in rows for k in r
                   if k.startswith("adv/abs/group/")}, key=natural_key)
    if not keys:
        return None
    groups = [k.split("/", 3)[3] for k in keys]
    summary = {lab: {"mag": {g: {"mean": mean([mean(_series(rows, k)[1]) for rows in runs]), "ci95": None}
                             for g, k in zip(groups, keys)}} for lab, runs in runs_by_label.items()}
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    labs = list(summary)
    width = 0.8 / max(1, len(labs))
    for i, lab in enumerate(labs):
        m = [summary[lab]["mag"][g]["mean"] for g in groups]
        ax.bar(np.arange(len(groups)) + (i - (len(labs) - 1) / 2) * width,
               [np.nan if v is None else v for v in m], width, color=COLORS[i % 10], label=lab)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set(title="Update magnitude per difficulty: mean |advantage x row weight| of trained rows",
           xlabel="training group", ylabel="mean |A| per row (log scale)")
    ax.set_yscale("log")        # methods differ by orders of magnitude (MC-GRPO's MAD scale)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out)


def write_study(out: Path, cells: list[tuple[str, int, Path]], title: str, note: str = "") -> dict:
    """Summaries, plots and report for ``cells`` = [(label, seed, run_dir)]."""
    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    records = [cell_record(lab, seed, Path(d)) for lab, seed, d in cells]
    summary = summarize_cells(records)
    (out / "summary.json").write_text(json.dumps({"title": title, "summary": summary, "cells": records}, indent=2))
    md = summary_markdown(summary, title, note)
    runs_by_label: dict[str, list] = {}
    for lab, _seed, d in cells:
        runs_by_label.setdefault(lab, []).append(_read(Path(d))[1])
    plots = [p for p in (
        _plot_curves(runs_by_label, [("acc/mean", "Training accuracy", "fraction correct"),
                                     ("reward/mean", "Reward", "mean reward")], out / "plots/learning.png",
                     "Learning curves"),
        _plot_groups(summary, out / "plots/groups.png"),
        _plot_curves(runs_by_label, [("zero_var/frac", "Zero-variance groups", "fraction of groups"),
                                     ("entropy/mean", "Policy entropy", "nats / token")],
                     out / "plots/diagnostics.png", "Diagnostics"),
        _plot_update_magnitude(runs_by_label, out / "plots/update_magnitude.png"),
    ) if p is not None]
    md += "\n" + "\n".join(f"![{p.stem}](plots/{p.name})" for p in plots) + "\n"
    (out / "summary.md").write_text(md)
    (out / "report.html").write_text(_html(title, note, md, plots))
    return summary


def _html(title: str, note: str, md: str, plots: list[Path],
          intervals: str = "Intervals: 95% percentile bootstrap over seeds.") -> str:
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    rows = []
    for i, ln in enumerate(table):
        if i == 1:
            continue
        cells = [c.strip() for c in ln.strip("|").split("|")]
        tag = "th" if i == 0 else "td"
        rows.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
    imgs = "".join(f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
                   f'{base64.b64encode(p.read_bytes()).decode()}"></figure>' for p in plots)
    css = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
           "font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
           "td:first-child{text-align:left;font-weight:600}img{max-width:100%;border:1px solid #eee}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>"
            f"<table>{''.join(rows)}</table><p>{html.escape(intervals)}</p>{imgs}"
            "</body></html>")


def group_seeds(runs: list[Path]) -> list[tuple[str, int, Path]]:
    """(label, seed, run) per run: runs are seeds of one method when their whole configurations
    agree except for the seed (and name, output directory, description). Two runs with the same
    configuration and the same seed are repeats, not seeds: each gets a label of its own, so no
    interval is drawn over them."""
    import hashlib
    import json

    import yaml

    def config(run: Path) -> dict:
        try:
            return yaml.safe_load((run / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            return {}

    raw = {r: config(r) for r in runs}
    keys = {r: hashlib.blake2b(json.dumps({k: v for k, v in raw[r].items() if k not in
                                           ("seed", "name", "out", "description")}, sort_keys=True,
                                          default=str).encode(), digest_size=3).hexdigest() for r in runs}
    names = {r: str(raw[r].get("name") or r.name) for r in runs}
    out, seen = [], {}
    for r in runs:
        variants = {keys[x] for x in runs if names[x] == names[r]}
        label = names[r] if len(variants) == 1 else f"{names[r]} [{keys[r]}]"     # same name, other settings
        seed = int(raw[r].get("seed") or 0)
        while (label, seed) in seen:
            label = f"{label} (repeat of {seen[(label, seed)].name})"            # same seed twice: not a seed
        seen[(label, seed)] = r
        out.append((label, seed, r))
    return out
