"""Plots and a self-contained HTML report for one run directory.

Layout read: ``RUN/metrics.jsonl`` (one JSON object per training step, any key may be
missing or null), ``RUN/eval.json`` (``{"before": summary, "after": summary, "model",
"task"}``, summaries from ``groupo.eval.metrics.summarize``), ``RUN/config.yaml`` and, when
present, ``RUN/completions.jsonl`` (sampled completions, groupo/train/completions.py).
Written: ``RUN/plots/*.png`` and ``RUN/report.html``. Figures use matplotlib's Agg
canvas directly (no pyplot global state); the HTML embeds the PNGs as base64 data
URIs with inline CSS, no scripts and no external references, and every string taken
from the run's files is HTML-escaped.
"""
from __future__ import annotations

import base64
import html
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from groupo.eval.metrics import natural_key

__all__ = ["load_metrics", "make_plots", "write_report"]

# key -> (panel title, y-axis label)
_DIAGNOSTICS = {
    "kl/mean": ("KL to reference", "KL (nats/token)"),
    "entropy/mean": ("Policy entropy", "entropy (nats/token)"),
    "zero_var/frac": ("Zero-variance groups", "fraction of groups"),
    "clip/frac": ("Clipped ratio", "fraction of tokens"),
    "len/mean": ("Completion length", "length (tokens)"),
    "adv/std": ("Advantage std", "std"),
    "time/step": ("Step time", "time (seconds)"),
    "tokens_per_s": ("Throughput", "tokens / second"),
}
_PNG_META = {"Software": None}  # keep tool banners (with URLs) out of the PNGs


def load_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a metrics.jsonl file; a missing file gives []. An unparseable line (the
    last one may be cut off by a crash mid-write) is skipped; one that is not the
    last line also warns."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                warnings.warn(f"{path}:{i + 1}: skipping malformed metrics line")
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) for the rows where ``key`` holds a finite number."""
    xs, ys = [], []
    for i, r in enumerate(rows):
        v = r.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        s = r.get("step", i)
        xs.append(s if isinstance(s, (int, float)) and not isinstance(s, bool) else i)
        ys.append(float(v))
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def _ema(y: np.ndarray) -> np.ndarray:
    """Bias-corrected exponential moving average, span ~ n/10 points (1..25)."""
    span = min(25.0, max(1.0, len(y) / 10.0))
    alpha = 2.0 / (span + 1.0)
    out, acc, norm = np.empty_like(y), 0.0, 0.0
    for i, v in enumerate(y):
        acc = (1 - alpha) * acc + alpha * v
        norm = (1 - alpha) * norm + alpha
        out[i] = acc / norm
    return out


def _curve(ax, x, y, label: str, color: str) -> None:
    ax.plot(x, y, "o" if len(y) < 60 else "-", ms=3, lw=0.8, color=color, alpha=0.3)
    ax.plot(x, _ema(y), "-", lw=2, color=color, label=f"{label} (smoothed)")


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, metadata=_PNG_META)
    return path


def _plot_learning(rows: list[dict], out: Path) -> Path | None:
    rewards = [(k, c) for k, c in (("reward/mean", "C0"), ("reward/correct/mean", "C2"),
                                   ("reward/format/mean", "C1")) if len(_series(rows, k)[1])]
    acc = _series(rows, "acc/mean")
    panels = int(bool(rewards)) + int(bool(len(acc[1])))
    if not panels:
        return None
    fig = Figure(figsize=(6 * panels, 4), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if rewards:
        ax = axes[0]
        for key, color in rewards:
            _curve(ax, *_series(rows, key), key, color)
        ax.set(title="Reward (points raw, line smoothed)", xlabel="step", ylabel="reward")
        ax.legend(fontsize=8)
    if len(acc[1]):
        ax = axes[-1]
        _curve(ax, *acc, "acc/mean", "C3")
        ax.set(title="Training accuracy", xlabel="step", ylabel="fraction correct")
        ax.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("Learning curves")
    return _save(fig, out)


def _plot_diagnostics(rows: list[dict], out: Path) -> Path | None:
    keys = [k for k in _DIAGNOSTICS if len(_series(rows, k)[1])]
    if not keys:
        return None
    cols = min(3, len(keys))
    nrows = -(-len(keys) // cols)
    fig = Figure(figsize=(4.5 * cols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax, key in zip(axes, keys):
        title, ylabel = _DIAGNOSTICS[key]
        _curve(ax, *_series(rows, key), key, "C0")
        ax.set(title=f"{title} ({key})", xlabel="step", ylabel=ylabel)
        ax.grid(alpha=0.3)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    fig.suptitle("Training diagnostics (faint: raw, bold: smoothed)")
    return _save(fig, out)


def _load_eval(run_dir: Path) -> dict | None:
    path = run_dir / "eval.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        warnings.warn(f"{path}: unreadable, ignored")
        return None
    return data if isinstance(data, dict) else None


def _groups(ev: dict) -> list[str]:
    names = set()
    for phase in ("before", "after"):
        names |= set(((ev.get(phase) or {}).get("per_group") or {}))
    return sorted(names, key=natural_key)


def _gacc(summary: dict | None, group: str) -> float | None:
    g = ((summary or {}).get("per_group") or {}).get(group) or {}
    return g.get("accuracy")


def _plot_groups(ev: dict, out: Path) -> Path | None:
    groups = _groups(ev)
    phases = [p for p in ("before", "after") if isinstance(ev.get(p), dict)]
    if not groups or not phases:
        return None
    x = np.arange(len(groups))
    width = 0.8 / len(phases)
    fig = Figure(figsize=(max(6.0, 0.9 * len(groups) * len(phases) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    for j, (phase, color) in enumerate(zip(phases, ("#9aa5b1", "#2b7bba"))):
        vals = [_gacc(ev[phase], g) for g in groups]
        ys = [100 * v if isinstance(v, (int, float)) else 0.0 for v in vals]
        bars = ax.bar(x + (j - (len(phases) - 1) / 2) * width, ys, width, label=phase, color=color)
        if len(groups) <= 16:
            labels = [f"{y:.0f}" if v is not None else "-" for y, v in zip(ys, vals)]
            for t in ax.bar_label(bars, labels, fontsize=8, padding=2):
                t.set_parse_math(False)
    ax.set_xticks(x)
    short = [g if len(g) <= 18 else g[:17] + "…" for g in groups]
    for t in ax.set_xticklabels(short, rotation=30 if len(groups) > 6 else 0,
                                ha="right" if len(groups) > 6 else "center"):
        t.set_parse_math(False)  # group names are data, not mathtext
    ax.set(title="Eval accuracy per group", xlabel="group", ylabel="accuracy (%)", ylim=(0, 110))
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def make_plots(run_dir: str | Path) -> list[Path]:
    """Write ``RUN/plots/{learning,diagnostics,eval_groups}.png`` for whatever data
    exists; returns the paths written (possibly none)."""
    run_dir = Path(run_dir)
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    rows = load_metrics(run_dir / "metrics.jsonl")
    ev = _load_eval(run_dir)
    made = [_plot_learning(rows, plots / "learning.png"),
            _plot_diagnostics(rows, plots / "diagnostics.png"),
            _plot_groups(ev, plots / "eval_groups.png") if ev else None]
    return [p for p in made if p is not None]


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1100px;color:#1f2933;padding:0 16px}
h1{margin-bottom:4px}.sub{color:#616e7c;margin-top:0}
table{border-collapse:collapse;margin:8px 0 20px}th,td{padding:4px 12px;border-bottom:1px solid #e4e7eb;
text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f5f7fa}
.up{color:#1a7f37}.down{color:#c62828}img{max-width:100%;border:1px solid #e4e7eb;margin:6px 0}
pre{background:#f5f7fa;padding:12px;overflow-x:auto;font-size:13px}
pre.c{white-space:pre-wrap;margin:4px 0 4px 16px;padding:6px 10px}pre.p{color:#616e7c}
.meta{color:#616e7c;font-size:13px;margin:2px 0 0 16px}
"""


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, (int, float)) and not isinstance(v, bool) else "–"


def _delta(a: Any, b: Any, lower_is_better: bool = False) -> str:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
        return "–"
    d = 100 * (b - a)
    good = -d if lower_is_better else d
    cls = "up" if good > 0 else "down" if good < 0 else ""
    return f'<span class="{cls}">{d:+.1f} pts</span>'


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"


def _kmap(summary: dict | None, name: str) -> dict[int, Any]:
    out = {}
    for k, v in ((summary or {}).get(name) or {}).items():
        try:
            out[int(k)] = v
        except (TypeError, ValueError):
            pass
    return out


def _headline(ev: dict) -> str:
    b, a = ev.get("before") or {}, ev.get("after") or {}
    wb, wa = b.get("worst_group") or {}, a.get("worst_group") or {}
    rows = [["accuracy", _pct(b.get("accuracy")), _pct(a.get("accuracy")),
             _delta(b.get("accuracy"), a.get("accuracy"))],
            [f"worst group ({_e(wb.get('group', '–'))} → {_e(wa.get('group', '–'))})",
             _pct(wb.get("accuracy")), _pct(wa.get("accuracy")),
             _delta(wb.get("accuracy"), wa.get("accuracy"))],
            ["group gap (best − worst)", _pct(b.get("group_gap")), _pct(a.get("group_gap")),
             _delta(b.get("group_gap"), a.get("group_gap"), lower_is_better=True)]]
    for name in ("pass@k", "maj@k"):
        kb, ka = _kmap(b, name), _kmap(a, name)
        for k in sorted(set(kb) | set(ka)):
            label = name.replace("@k", f"@{k}")
            rows.append([label, _pct(kb.get(k)), _pct(ka.get(k)), _delta(kb.get(k), ka.get(k))])
    n = a.get("n", b.get("n", "?"))
    return f"<p>{_e(n)} eval items.</p>" + _table(["metric", "before", "after", "change"], rows)


def _per_group(ev: dict) -> str:
    b, a = ev.get("before"), ev.get("after")
    rows = []
    for g in _groups(ev):
        n = (((a or b or {}).get("per_group") or {}).get(g) or {}).get("n", "?")
        rows.append([_e(g), _e(n), _pct(_gacc(b, g)), _pct(_gacc(a, g)),
                     _delta(_gacc(b, g), _gacc(a, g))])
    return _table(["group", "n", "before", "after", "change"], rows) if rows else "<p>No groups.</p>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return _e(json.dumps(v) if isinstance(v, (dict, list)) or v is None else v)


def _completions(run_dir: Path, per_step: int = 4, prompt_chars: int = 300, text_chars: int = 600) -> str:
    """A few sampled completions of the first and the last step in completions.jsonl (each
    prompt once, then its completions with rewards, advantage and whether trained); '' when
    the file is missing or empty. Texts are escaped and cut."""
    rows = [r for r in load_metrics(run_dir / "completions.jsonl") if isinstance(r.get("step"), int)]
    if not rows:
        return ""
    steps = sorted({r["step"] for r in rows})
    parts = ["<h2>Sampled completions</h2>", f"<p>{len(rows)} rows logged over {len(steps)} steps "
             "(completions.jsonl); the first and the last step:</p>"]
    for step in dict.fromkeys((steps[0], steps[-1])):
        parts.append(f"<h3>Step {step}</h3>")
        group = None
        for r in [r for r in rows if r["step"] == step][:per_step]:
            if r.get("group") != group:
                group = r.get("group")
                parts.append(f'<pre class="c p">{_e(_cut(r.get("prompt"), prompt_chars, tail=True))}</pre>')
            rewards = ", ".join(f"{_e(k)} {_val(v)}" for k, v in (r.get("rewards") or {}).items())
            parts.append(f'<p class="meta">group {_e(group)} · reward {_val(r.get("reward"))} · advantage '
                         f'{_val(r.get("advantage"))} · {"trained" if r.get("trained") else "not trained"}'
                         f'{" · " + rewards if rewards else ""}</p>'
                         f'<pre class="c">{_e(_cut(r.get("completion"), text_chars))}</pre>')
    return "\n".join(parts)


def _val(v: Any) -> str:
    return "–" if v is None else _fmt(v)


def _cut(text: Any, n: int, tail: bool = False) -> str:
    text = "" if text is None else str(text)
    if len(text) <= n:
        return text
    return "…" + text[-(n - 1):] if tail else text[: n - 1] + "…"


def write_report(run_dir: str | Path) -> Path:
    """Regenerate the plots and write ``RUN/report.html`` (self-contained); returns its path."""
    run_dir = Path(run_dir)
    plots = make_plots(run_dir)
    ev = _load_eval(run_dir)
    rows = load_metrics(run_dir / "metrics.jsonl")
    cfg = run_dir / "config.yaml"
    parts = [f"<h1>Run: {_e(run_dir.resolve().name)}</h1>"]
    if ev:
        parts.append(f'<p class="sub">model: {_e(ev.get("model", "–"))} · task: '
                     f'{_e(ev.get("task", "–"))}</p>')
        parts += ["<h2>Headline</h2>", _headline(ev), "<h2>Per group</h2>", _per_group(ev)]
    else:
        parts.append("<p>No eval.json: evaluation results not available.</p>")
    parts.append("<h2>Plots</h2>")
    for p in plots:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        parts.append(f'<img alt="{_e(p.stem)}" src="data:image/png;base64,{data}">')
    if not plots:
        parts.append("<p>No data to plot.</p>")
    parts.append(_completions(run_dir))
    parts.append(f"<h2>Last metrics row</h2><p>{len(rows)} steps logged.</p>")
    if rows:
        parts.append(_table(["key", "value"], [[_e(k), _fmt(v)] for k, v in rows[-1].items()]))
    text = cfg.read_text(encoding="utf-8", errors="replace") if cfg.is_file() else "(no config.yaml)"
    parts.append(f"<h2>Config</h2><pre>{_e(text)}</pre>")
    doc = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
           f"<title>groupo report: {_e(run_dir.resolve().name)}</title><style>{_CSS}</style></head>"
           "<body>" + "\n".join(parts) + "</body></html>\n")
    out = run_dir / "report.html"
    out.write_text(doc, encoding="utf-8")
    return out
