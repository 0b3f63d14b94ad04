"""MQR reformulation step (arXiv 2601.20614) with the tiny model: the pipeline, not the
quality (the tiny model writes gibberish and never stops within a few tokens)."""
import json

import pytest

import groupo.rollout
from groupo import __version__
from groupo.cli import main
from groupo.data.mqr import INSTRUCTIONS, REASONS, MQRError, build_prompt, clean, read_rows, reformulate

ROWS = [{"question": "What is 2+3?", "answer": "5", "level": 1, "src": "a"},
        {"question": "Tom has 4 apples and eats 1. How many are left?", "answer": 3, "level": 2, "src": "b"},
        {"question": "Compute 7*6.", "answer": "42", "level": 1, "src": "c"}]


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")      # a blank line is skipped
    return p


@pytest.fixture
def stops(monkeypatch):
    """The real sampler, but every completion counts as finished (no truncation), so the
    tiny model's gibberish reaches the writer; the default (truncated = rejected) is tested apart."""
    real = groupo.rollout.generate

    def generate(*a, **k):
        roll = real(*a, **k)
        roll.truncated[:] = False
        return roll
    monkeypatch.setattr(groupo.rollout, "generate", generate)


def _read(p):
    return [json.loads(line) for line in p.read_text().splitlines()]


def test_pipeline_keeps_gold_columns_and_provenance(tiny_dir, data, tmp_path, stops):
    out = tmp_path / "out.jsonl"
    seen = []
    counts = reformulate(tiny_dir, data, out, max_new_tokens=12, temperature=1.0, seed=3,
                         progress=lambda d, n: seen.append((d, n)))
    got = _read(out)
    rejected = sum(counts["rejected"].values())
    assert set(counts["rejected"]) == set(REASONS)
    assert counts["rows_in"] == 3 and counts["rewrites_written"] + rejected == 3 * 3
    assert counts["rewrites_written"] > 0
    assert len(got) == counts["rows_out"] == 3 + counts["rewrites_written"]
    assert [r for r in got if "mqr" not in r] == ROWS
    assert seen[-1] == (9, 9)
    for r in got:
        if "mqr" not in r:
            continue
        m = r["mqr"]
        src = ROWS[m["source_index"]]
        assert {k: v for k, v in r.items() if k not in ("question", "mqr")} == \
            {k: v for k, v in src.items() if k != "question"}          # same gold answer, extra columns copied
        assert r["question"] and r["question"] != src["question"]
        assert m == {"instruction": m["instruction"], "source_index": m["source_index"],
                     "source_line": m["source_index"] + 1, "source_question": src["question"],
                     "model": str(tiny_dir), "max_new_tokens": 12, "temperature": 1.0, "seed": 3,
                     "groupo_version": __version__}
        assert m["instruction"] in INSTRUCTIONS
    # rewrites follow their source row, in instruction order
    order = [(r["mqr"]["source_index"], list(INSTRUCTIONS).index(r["mqr"]["instruction"])) if "mqr" in r
             else None for r in got]
    assert [o for o in order if o] == sorted(o for o in order if o)

    # deterministic for a seed; a prompt's random stream does not depend on the batch it is in
    out2, out3 = tmp_path / "out2.jsonl", tmp_path / "out3.jsonl"
    reformulate(tiny_dir, data, out2, max_new_tokens=12, temperature=1.0, seed=3)
    assert out2.read_text() == out.read_text()
    reformulate(tiny_dir, data, out3, max_new_tokens=12, temperature=1.0, seed=3, batch_size=2)
    assert out3.read_text() == out.read_text()
    reformulate(tiny_dir, data, out3, max_new_tokens=12, temperature=1.0, seed=4)
    assert out3.read_text() != out.read_text()


def test_default_rejects_truncated_and_greedy(tiny_dir, data, tmp_path):
    out = tmp_path / "out.jsonl"
    counts = reformulate(tiny_dir, data, out, instructions=("term",), max_new_tokens=6, keep_original=False)
    assert counts["rewrites_written"] + sum(counts["rejected"].values()) == 3
    assert counts["rejected"]["truncated"] == 3 and out.read_text() == ""     # gibberish never stops in 6 tokens


def test_crash_mid_way_leaves_no_file(tiny_dir, data, tmp_path, monkeypatch):
    real, calls = groupo.rollout.generate, []

    def dies_on_second_batch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("generation died")
        return real(*a, **k)
    monkeypatch.setattr(groupo.rollout, "generate", dies_on_second_batch)
    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="generation died"):
        reformulate(tiny_dir, data, out, max_new_tokens=4, batch_size=2)
    assert len(calls) == 2
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    # a crash while writing: the temporary file is removed, an existing output is untouched
    out.write_text("previous\n")
    monkeypatch.setattr(groupo.rollout, "generate", real)
    monkeypatch.setattr("groupo.data.mqr.os.fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        reformulate(tiny_dir, data, out, max_new_tokens=4)
    assert out.read_text() == "previous\n" and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_cli(tiny_dir, data, tmp_path, capsys, stops):
    out = tmp_path / "o.jsonl"
    assert main(["mqr", "--model", str(tiny_dir), "--input", str(data), "--output", str(out),
                 "--max-new-tokens", "6", "--instructions", "term,background", "--limit", "2", "--seed", "1"]) == 0
    got = _read(out)
    assert [r for r in got if "mqr" not in r] == ROWS[:2]
    assert {r["mqr"]["instruction"] for r in got if "mqr" in r} <= {"term", "background"}
    assert "rows written to" in capsys.readouterr().out

    def fails(*extra, model=str(tiny_dir), src=str(data)):
        assert main(["mqr", "--model", model, "--input", src, "--output", str(tmp_path / "x.jsonl"), *extra]) == 2
        assert not (tmp_path / "x.jsonl").exists()
        return _one_line_error(capsys)

    assert "nope.jsonl: file not found" in fails(src=str(tmp_path / "nope.jsonl"))
    assert f"model directory '{tmp_path / 'nomodel'}' does not exist" in fails(model=str(tmp_path / "nomodel"))
    assert "unknown instruction 'backgroud' (did you mean 'background'?)" in fails("--instructions", "backgroud")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok", "answer": 1}\n{"question": "broken\n')
    assert f"{bad}:2: not valid JSON" in fails(src=str(bad))
    bad.write_text('{"question": "ok", "answer": 1}\n{"question": "q", "anwser": 2}\n')
    assert f"{bad}:2: missing key 'answer' (did you mean 'anwser'?)" in fails(src=str(bad))
    nodir = tmp_path / "no" / "o.jsonl"
    assert main(["mqr", "--model", str(tiny_dir), "--input", str(data), "--output", str(nodir)]) == 2
    assert "output directory" in _one_line_error(capsys)


def test_read_rows_and_arguments(tmp_path, data):
    assert [line for line, _ in read_rows(data)] == [1, 2, 3]
    bad = tmp_path / "bad.jsonl"
    for text, msg in [('{"question": 3, "answer": 1}\n', "bad.jsonl:1: 'question' must be a non-empty string"),
                      ('{"question": "q", "answer": [1]}\n', "bad.jsonl:1: 'answer' must be a string or a number"),
                      ('[1, 2]\n', "bad.jsonl:1: expected a JSON object, got list"),
                      ('\n\n', "bad.jsonl: empty file"),
                      ('{"question": "q", "answer": 1, "mqr": {}}\n', "already has an 'mqr' field")]:
        bad.write_text(text)
        with pytest.raises(MQRError, match=msg.replace("[", r"\[").replace("(", r"\(")):
            read_rows(bad)
    # argument errors surface before any model loads (the model path does not exist)
    for kw, msg in [({"instructions": ("term", "subproblm")}, "unknown instruction 'subproblm'"),
                    ({"instructions": ()}, "no instructions given"),
                    ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
                    ({"limit": -1}, "limit must be an integer >= 0")]:
        with pytest.raises(MQRError, match=msg):
            reformulate(tmp_path / "nomodel", data, tmp_path / "o.jsonl", **kw)
    with pytest.raises(MQRError, match="must not overwrite the input"):
        reformulate(tmp_path / "nomodel", data, data)


def test_clean_and_prompt(tiny):
    _, tok = tiny
    assert clean("  Rewritten problem: A harder one\n\nOriginal problem: x", "q", 100) == ("A harder one", None)
    assert clean("Define a gleam number.\nProblem: how many?\nSolution: 3", "q", 100) == \
        ("Define a gleam number.\nProblem: how many?", None)
    assert clean("cut off mid-sen", "q", 100, truncated=True) == (None, "truncated")
    assert clean("done.\nAnswer: 5", "q", 100, truncated=True) == ("done.", None)   # ended before the cut
    assert clean("   ", "q", 100) == (None, "empty")
    assert clean(" What is  2+3? ", "What is 2+3?", 100) == (None, "unchanged")
    assert clean("x" * 101, "q", 100) == (None, "too_long")
    assert clean("Find $x$; it is \\boxed{5}", "q", 100) == (None, "boxed_answer")
    p = build_prompt(tok, "subproblem", "What is 2+3?")
    assert "What is 2+3?" in p and "sub-problem" in p and p.startswith("<|user|>") and p.endswith("<|assistant|>")

    class Plain:
        chat_template = None
    p = build_prompt(Plain(), "background", "What is 2+3?")
    assert p.startswith(INSTRUCTIONS["background"]) and p.endswith("Rewritten problem:\n")
