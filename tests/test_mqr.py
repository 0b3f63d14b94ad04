"""MQR reformulation step (arXiv 2601.20614) with the tiny model: the pipeline, not the
quality (the tiny model writes gibberish)."""
import json

import pytest

from groupo.cli import main
from groupo.data.mqr import MQRError, build_prompt, clean, read_rows, reformulate


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "in.jsonl"
    rows = [{"question": "What is 2+3?", "answer": "5", "level": 1},
            {"question": "Tom has 4 apples and eats 1. How many are left?", "answer": "3", "level": 2},
            {"question": "Compute 7*6.", "answer": "42", "level": 1}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return p, rows


def _read(p):
    return [json.loads(l) for l in p.read_text().splitlines()]


def test_pipeline_keeps_gold_and_writes_provenance(tiny_dir, data, tmp_path):
    src, rows = data
    out = tmp_path / "out.jsonl"
    counts = reformulate(tiny_dir, src, out, max_new_tokens=12, temperature=1.0, seed=3)
    got = _read(out)
    rejected = sum(counts["rejected"].values())
    assert counts["rows_in"] == 3 and counts["rewrites_written"] + rejected == 9
    assert len(got) == 3 + counts["rewrites_written"]
    originals = [r for r in got if "mqr" not in r]
    assert originals == rows
    for r in got:
        if "mqr" in r:
            src_row = rows[r["mqr"]["source_index"]]
            assert r["answer"] == src_row["answer"] and r["level"] == src_row["level"]
            assert r["mqr"]["source_question"] == src_row["question"] and r["question"] != src_row["question"]
            assert r["mqr"]["instruction"] in ("background", "term", "subproblem")
            assert r["mqr"]["model"] == str(tiny_dir) and r["mqr"]["seed"] == 3
    # deterministic for a seed
    out2 = tmp_path / "out2.jsonl"
    reformulate(tiny_dir, src, out2, max_new_tokens=12, temperature=1.0, seed=3)
    assert out2.read_text() == out.read_text()


def test_crash_mid_way_leaves_no_file(tiny_dir, data, tmp_path, monkeypatch):
    import groupo.rollout

    def boom(*a, **k):
        raise RuntimeError("generation died")
    monkeypatch.setattr(groupo.rollout, "generate", boom)
    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        reformulate(tiny_dir, data[0], out, max_new_tokens=4)
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl*"))


def test_cli_and_errors(tiny_dir, data, tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert main(["mqr", "--model", str(tiny_dir), "--input", str(data[0]), "--output", str(out),
                 "--max-new-tokens", "6", "--instructions", "term", "--limit", "2"]) == 0
    assert len([r for r in _read(out) if "mqr" not in r]) == 2
    assert main(["mqr", "--model", str(tiny_dir), "--input", str(tmp_path / "nope.jsonl"), "--output", str(out)]) == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err
    assert main(["mqr", "--model", str(tiny_dir), "--input", str(data[0]), "--output", str(out),
                 "--instructions", "backgroud"]) == 2
    assert "did you mean 'background'" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n{"question": 3}\n')
    with pytest.raises(MQRError, match="bad.jsonl:2: missing or empty string key 'question'"):
        read_rows(bad)
    assert main(["mqr", "--model", str(tmp_path / "nomodel"), "--input", str(data[0]), "--output", str(out)]) == 2


def test_clean_and_prompt(tiny):
    _, tok = tiny
    assert clean("  Rewritten problem: A harder one\n\nProblem: x", "q", 100) == ("A harder one", None)
    assert clean("   ", "q", 100) == (None, "empty")
    assert clean("q", "q", 100) == (None, "unchanged")
    assert clean("x" * 101, "q", 100) == (None, "too_long")
    p = build_prompt(tok, "subproblem", "What is 2+3?")
    assert "What is 2+3?" in p and "sub-problem" in p
