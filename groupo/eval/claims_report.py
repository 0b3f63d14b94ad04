"""The plots behind each claim's verdict and the claims study's HTML report (``groupo claims``).

One figure per claim (``plots/<id>.png``): the metric of each arm per seed (dots joined by seed,
mean and 95% interval as a bar), the paired difference a - b per seed with its interval against
0 (the verdict's evidence), and, for a training metric (``NAME@lastK``), NAME's curve over the
steps for both arms (mean over seeds, band = min-max). ``report.html`` is the table and the figures
in one self-contained file.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from matplotlib.figure import Figure

from .report import _save
from .study_report import _band, _html, _read

COLORS = {"a": "C0", "b": "C1"}


def _points(ax, c: dict) -> None:
    """Each arm's per-seed values, joined by seed, with the mean and its 95% interval."""
    arms = c["arms"]
    vals = {k: arms[k]["values"] for k in ("a", "b")}
    for s in range(max(len(v) for v in vals.values())):
        pair = [vals[k][s] if s < len(vals[k]) else None for k in ("a", "b")]
        if None not in pair:
            ax.plot([0, 1], pair, color="0.75", lw=1, zorder=1)
    for x, k in enumerate(("a", "b")):
        ys = [v for v in vals[k] if v is not None]
        ax.scatter([x] * len(ys), ys, color=COLORS[k], zorder=2, s=25)
        iv = arms[k]["interval"]
        if iv is not None and iv[1] is not None:
            ax.errorbar([x + 0.12], [iv[0]], yerr=[[iv[0] - iv[1]], [iv[2] - iv[0]]], color=COLORS[k], capsize=4,
                        fmt="s", ms=5)
    ax.set_xticks([0, 1], [f"a: {_label(arms['a'])}", f"b: {_label(arms['b'])}"], fontsize=6)
    ax.set_xlim(-0.5, 1.5)
    ax.set(title="per seed (square: mean, 95% interval)", ylabel=c["metric"])
    ax.grid(alpha=0.3)


def _difference(ax, c: dict) -> None:
    d = c["difference"]
    ys, iv = d["values"], d["interval"]
    ax.axhline(0, color="k", lw=1)
    ax.scatter(range(len(ys)), ys, color="C2", s=25, zorder=2)
    if iv is not None and iv[1] is not None:
        ax.axhspan(iv[1], iv[2], color="C2", alpha=0.15, lw=0)
        ax.axhline(iv[0], color="C2", lw=1.5)
    ax.set_xticks(range(len(ys)))
    ax.set(title=f"a - b per paired seed ({c['verdict']})", xlabel="seed pair", ylabel="a - b")
    ax.grid(alpha=0.3)


def _curves(ax, c: dict, out: Path) -> bool:
    """The training metric behind a ``NAME@lastK`` claim, both arms over the steps."""
    name = c["metric"].partition("@")[0]
    drew = False
    for k in ("a", "b"):
        runs = [_read(d)[1] for d in _run_dirs(out, c["arms"][k]["key"])]
        drew |= _band(ax, [r for r in runs if r], name, k, COLORS[k])
    if drew:
        ax.set(title=f"{name} per step (seed mean; band min-max)", xlabel="step", ylabel=name)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return drew


def _run_dirs(out: Path, key: str) -> list[Path]:
    root = out / "runs" / key
    return sorted(p for p in root.glob("seed_*") if (p / "metrics.jsonl").exists()) if root.exists() else []


def _label(arm: dict) -> str:
    over = ", ".join(arm.get("overrides") or []) or "as the recipe"
    return "\n".join(textwrap.wrap(f"{arm['recipe']} ({over})", 34)[:4])


def plot_claim(c: dict, out: Path) -> Path | None:
    """``out/plots/<id>.png`` for one claim; None when neither arm has a value yet."""
    if not any(v is not None for k in ("a", "b") for v in c["arms"][k]["values"]):
        return None
    training = not c["metric"].startswith("eval.")      # NAME@lastK: a training metric, its curve too
    fig = Figure(figsize=(15 if training else 10, 4.2), layout="constrained")
    axes = fig.subplots(1, 3 if training else 2)
    _points(axes[0], c)
    _difference(axes[1], c)
    if training and not _curves(axes[2], c, out):
        axes[2].set_axis_off()
    title = f"{c['id']}: {c['claim']} (arXiv {c['paper']}; expect {c['expect']})"
    fig.suptitle(textwrap.fill(title, 150 if training else 100), fontsize=10)     # long claims wrap, not clip
    return _save(fig, out / "plots" / f"{c['id']}.png")


def write_report(summary: dict, md: str, out: Path, title: str = "Claims") -> str:
    """The plots of every claim, the markdown table with them appended (returned) and
    ``report.html``."""
    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    plots = [p for p in (plot_claim(c, out) for c in summary["claims"]) if p is not None]
    md += "\n" + "\n".join(f"![{p.stem}](plots/{p.name})" for p in plots) + "\n"
    note = (f"Seeds {', '.join(map(str, summary['seeds']))}; a verdict holds when the 95% t-interval of the "
            "per-seed difference a - b excludes 0 on the expected side. Settings, per-seed values and the compute "
            "of every cell: summary.json.")
    (out / "report.html").write_text(_html(title, note, md, plots, "Intervals: 95% t-intervals over seeds."))
    return md
