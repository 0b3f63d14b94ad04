"""Tests for groupo.eval.report: metrics loading, plots and the HTML report."""
from __future__ import annotations

import json
import math
import re

import pytest

from groupo.eval.metrics import summarize
from groupo.eval.report import load_metrics, make_plots, write_report

HOSTILE = "<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics_rows(n=40):
    rows = []
    for s in range(n):
        r = {"step": s, "reward/mean": 0.2 + 0.015 * s + 0.05 * math.sin(s),
             "reward/correct/mean": 0.1 + 0.015 * s, "reward/format/mean": 0.9,
             "acc/mean": min(1.0, 0.1 + 0.02 * s), "adv/mean": 0.0, "adv/std": 0.8,
             "zero_var/frac": 0.5 - 0.01 * s, "clip/frac": 0.02, "kl/mean": 0.001 * s,
             "entropy/mean": 1.2 - 0.01 * s, "len/mean": 120 + s, "time/step": 3.5,
             "tokens_per_s": 900.0, "loss": 0.01}
        if s % 7 == 3:
            del r["kl/mean"]          # missing key on some lines
            r["clip/frac"] = None     # null value on some lines
        rows.append(r)
    return rows


def _summary(groups: dict[str, list[bool]]) -> dict:
    recs = [{"group": g, "correct": [c], "answers": ["1" if c else "2"]}
            for g, cs in groups.items() for c in cs]
    return summarize(recs)


def _make_run(tmp_path, *, before=True, truncate=False, hostile=True):
    run = tmp_path / "run-42"
    run.mkdir()
    text = "\n".join(json.dumps(r) for r in _metrics_rows()) + "\n"
    if truncate:
        text += '{"step": 40, "reward/me'
    (run / "metrics.jsonl").write_text(text)
    g3 = HOSTILE if hostile else "n=3"
    b = _summary({"n=2": [True, False, False, False], "n=10": [False, False], g3: [False, True]})
    a = _summary({"n=2": [True, True, True, False], "n=10": [True, False], g3: [True, True]})
    ev = {"after": a, "model": "tiny-<b>model</b>", "task": "countdown"}
    if before:
        ev["before"] = b
    (run / "eval.json").write_text(json.dumps(ev))
    (run / "config.yaml").write_text("model: tiny\nlr: 1.0e-6\nnote: \"a < b & c\"\n")
    return run


def _assert_png(p):
    data = p.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1024


def test_load_metrics_truncated_and_missing(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 0, "loss": 1.0}\n\n{"step": 1, "loss": null}\n{"step": 2, "lo')
    rows = load_metrics(p)
    assert rows == [{"step": 0, "loss": 1.0}, {"step": 1, "loss": None}]
    assert load_metrics(tmp_path / "nope.jsonl") == []
    p.write_text('{"step": 0}\nnot json\n{"step": 1}\n')
    with pytest.warns(UserWarning):
        assert [r["step"] for r in load_metrics(p)] == [0, 1]


def test_make_plots(tmp_path):
    run = _make_run(tmp_path, truncate=True)
    paths = make_plots(run)
    assert sorted(p.name for p in paths) == ["diagnostics.png", "eval_groups.png", "learning.png"]
    for p in paths:
        assert p.parent == run / "plots"
        _assert_png(p)


def test_make_plots_empty_and_partial(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    assert make_plots(run) == []
    (run / "metrics.jsonl").write_text("")
    assert make_plots(run) == []
    # only some keys, some null: just what is present is drawn
    (run / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "kl/mean": 0.01 * s, "acc/mean": None}) for s in range(5)))
    paths = make_plots(run)
    assert [p.name for p in paths] == ["diagnostics.png"]
    _assert_png(paths[0])


def test_write_report_contents(tmp_path):
    run = _make_run(tmp_path, truncate=True)
    out = write_report(run)
    assert out == run / "report.html"
    doc = out.read_text()
    assert "run-42" in doc
    # overall accuracy before 2/8 -> after 6/8: 25.0% -> 75.0%, +50.0 pts
    assert "25.0%" in doc and "75.0%" in doc and "+50.0 pts" in doc
    # per-group: n=10 0% -> 50%, n=2 25% -> 75%
    assert "0.0%" in doc and "50.0%" in doc and "pass@1" in doc and "maj@1" in doc
    assert doc.index(">n=2<") < doc.index(">n=10<")  # natural group order
    assert doc.count("data:image/png;base64,") == 3
    assert "<script" not in doc.lower()
    assert "http://" not in doc and "https://" not in doc
    assert re.search(r"<link|src=\"(?!data:)", doc) is None  # nothing external
    assert html_escaped(HOSTILE) in doc
    assert "tiny-&lt;b&gt;model&lt;/b&gt;" in doc
    assert "a &lt; b &amp; c" in doc and "<pre>" in doc  # config, escaped
    assert "tokens_per_s" in doc and "900" in doc  # last metrics row
    assert "<style>" in doc


def html_escaped(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_write_report_without_eval_or_before(tmp_path):
    run = _make_run(tmp_path, before=False, hostile=False)
    doc = write_report(run).read_text()
    assert "75.0%" in doc and doc.count("data:image/png;base64,") == 3
    (run / "eval.json").unlink()
    doc = write_report(run).read_text()
    assert "No eval.json" in doc and doc.count("data:image/png;base64,") == 2


def test_write_report_empty_run(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    doc = write_report(run).read_text()
    assert "No data to plot" in doc and "(no config.yaml)" in doc and "<script" not in doc


def _completion_rows():
    rows = []
    for step in (1, 5, 9):
        for g in range(2):
            for j in range(3):
                rows.append({"step": step, "group": g, "prompt": f"P{step}-{g} " + "x" * 400 + f" question {g}",
                             "completion": (HOSTILE if j == 0 else f"answer {step}.{g}.{j}") + "y" * 900,
                             "rewards": {"correct": float(j == 1), "fmt": None}, "reward": float(j == 1),
                             "advantage": None if g else 0.5 - j * 0.25, "trained": not g})
    return rows


def test_report_shows_sampled_completions_of_first_and_last_step(tmp_path):
    run = _make_run(tmp_path, hostile=False)
    (run / "completions.jsonl").write_text("\n".join(json.dumps(r) for r in _completion_rows()) + "\n")
    doc = write_report(run).read_text()
    section = doc[doc.index("<h2>Sampled completions</h2>"): doc.index("<h2>Last metrics row")]
    assert "18 rows logged over 3 steps" in section
    assert "<h3>Step 1</h3>" in section and "<h3>Step 9</h3>" in section and "Step 5" not in section
    assert "<script" not in doc.lower() and html_escaped(HOSTILE) in section     # escaped
    assert "answer 1.0.1" in section and "answer 9.0.2" in section                 # 4 rows a step: group 0, then 1
    assert "answer 1.1.1" not in section and "question 1" in section               # the 5th row is not shown
    assert "question 0" in section and "P1-0" not in section                        # prompt: its end, cut
    assert "y" * 600 not in section and "y" * 500 in section                        # completion: cut
    assert "advantage 0.25" in section and "trained" in section and "not trained" in section
    assert "correct 1" in section and "fmt –" in section                            # None shown as a dash
    assert section.count('class="c p"') == 4                                        # each group's prompt once


def test_report_without_completions_has_no_section(tmp_path):
    run = _make_run(tmp_path, hostile=False)
    assert "Sampled completions" not in write_report(run).read_text()
    (run / "completions.jsonl").write_text("")
    assert "Sampled completions" not in write_report(run).read_text()
