"""Users' own data (tasks/dataset.py, tasks/rows.py, tasks/jsonl.py) and the small input bugs of
issue 19: every format reads to the same items, chat-message prompts render with the chat
template, errors name file and line (or row), a BOM is fine, non-UTF-8 and empty golds are one-line
errors, paths are stored absolute, and an empty eval split does not break a run."""
import json
import os

import pytest

from groupo import verify
from groupo.cli import main
from groupo.config import ConfigError, load_config
from groupo.registry import RegistryError, build
from groupo.tasks import TaskError

ROWS = [{"prompt": f"q{i}: what is {i}+1?", "answer": str(i + 1), "level": i % 3} for i in range(20)]
CHAT = [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{i}+{i}?"}],
         "solution": str(2 * i)} for i in range(12)]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _task(**params):
    try:
        return build("task", "dataset", params)
    except RegistryError as e:          # build() wraps the task's own error in one line
        raise TaskError(str(e)) from None


def test_every_format_reads_to_the_same_items(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ROWS)
    paths = {"jsonl": _jsonl(tmp_path / "d.jsonl", ROWS), "json": str(tmp_path / "d.json"),
             "parquet": str(tmp_path / "d.parquet"), "csv": str(tmp_path / "d.csv"), "disk": str(tmp_path / "disk")}
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    ds.to_parquet(paths["parquet"])
    ds.to_csv(paths["csv"], index=False)
    ds.save_to_disk(paths["disk"])
    got = {}
    for fmt, path in paths.items():
        task = _task(path=path, kind="number", group_key="level", eval_fraction=0.2, seed=3)
        got[fmt] = ([(i.question, i.answer, i.group) for i in task.train_items()],
                    [(i.question, i.answer) for i in task.eval_items()])
    assert all(v == got["jsonl"] for v in got.values()), {k: v[1][:2] for k, v in got.items()}
    train, ev = got["jsonl"]
    assert len(train) == 16 and len(ev) == 4 and not {q for q, _ in ev} & {q for q, _, _ in train}


def test_chat_message_prompts_solution_column_and_rendering(tmp_path, tiny):
    from groupo.prompts.render import render

    _, tok = tiny
    task = _task(path=_jsonl(tmp_path / "c.jsonl", CHAT), eval_fraction=0.25)
    it = task.train_items()[0]
    i = int(it.messages[1]["content"].split("+")[0])
    assert it.messages == tuple(CHAT[i]["prompt"]) and it.answer == str(2 * i)        # answer_key auto: solution
    assert it.meta["solution"] == str(2 * i) and it.meta["prompt"] == CHAT[i]["prompt"]   # columns by their names
    text = render(build("template", "chat"), it, tok)
    assert text == tok.apply_chat_template(list(it.messages), tokenize=False, add_generation_prompt=True)
    assert "Be brief." in text and text != render(build("template", "chat"), it.__class__(f"{i}+{i}?", "0"), tok)


@pytest.mark.parametrize("rows, needle", [
    ([{"prompt": "a", "answer": ""}], r"c\.jsonl:1: empty gold answer in 'answer'"),
    ([{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": "#### "}], r"c\.jsonl:2: empty gold answer"),
    ([{"prompt": "a", "answer": "1"}, {"question": "b", "answer": "2"}], r"c\.jsonl:2: missing key 'prompt'"),
    ([{"prompt": [{"role": "user", "text": "hi"}], "answer": "1"}], r"c\.jsonl:1: 'prompt' must be a string or a list"),
    ([{"prompt": "a", "answer": [1]}], r"c\.jsonl:1: 'answer' must be a string or a number"),
])
def test_row_errors_name_file_and_line(tmp_path, rows, needle):
    with pytest.raises(TaskError, match=needle):
        _task(path=_jsonl(tmp_path / "c.jsonl", rows))


def test_bom_accepted_non_utf8_and_empty_gold_refused(tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in ROWS).encode())
    assert len(build("task", "jsonl", {"path": str(bom), "question_key": "prompt"}).train_items()) > 10
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"question": "ok", "answer": "1"}\n{"question": "caf\xe9", "answer": "2"}\n')
    with pytest.raises(RegistryError, match=r"latin\.jsonl:2: not UTF-8 text \(byte 0xe9 at column 18\)"):
        build("task", "jsonl", {"path": str(latin)})
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"question": "a", "answer": "1"}\n{"question": "b", "answer": "#### "}\n')
    with pytest.raises(RegistryError, match=r"gold\.jsonl:2: empty gold answer"):
        build("task", "jsonl", {"path": str(gold)})
    assert verify("<answer></answer>", "", "number") == 0.0 and verify("<answer>1</answer>", " ", "exact") == 0.0


def test_no_gold_column_with_the_correct_reward_is_refused(tmp_path):
    path = _jsonl(tmp_path / "n.jsonl", [{"prompt": f"p{i}"} for i in range(5)])
    with pytest.raises(ConfigError, match="reward 'correct' needs a gold answer column"):
        load_config("grpo", ["model.path=/m", "task.name=dataset", f"task.path={path}"])
    cfg = load_config("grpo", ["model.path=/m", "task.name=dataset", f"task.path={path}", "rewards=[format]"])
    assert cfg.task.train_items()[0].answer == ""


def test_hub_ids_offline_and_unknown_formats_are_one_line(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(TaskError, match="not a local file or directory.*offline mode is on"):
        _task(path="someone/not-cached-dataset")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(TaskError, match="unknown data format"):
        _task(path=str(tmp_path / "d.xlsx"))


def test_paths_are_stored_absolute_and_a_run_evaluates_from_anywhere(tiny_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _jsonl(tmp_path / "train.jsonl", [{"question": r["prompt"], "answer": r["answer"]} for r in ROWS])
    (tmp_path / "r.py").write_text("def reward(completions, **kw):\n    return [float(len(c) % 2) for c in completions]\n")
    assert main(["train", "grpo", "--out", "run", f"model.path={tiny_dir}", "task.name=jsonl", "task.path=train.jsonl",
                 "task.eval_fraction=0.2", "rewards=[{name: python, path: r.py}]", "model.threads=1",
                 "generation.group_size=2", "generation.prompts_per_step=2", "generation.max_new_tokens=3",
                 "train.steps=1", "warmstart.steps=0", "eval.before=false", "eval.n=2", "log.tensorboard=false",
                 "log.progress=false"]) == 0
    cfg = (tmp_path / "run/config.yaml").read_text()
    assert f"path: {tmp_path}/train.jsonl" in cfg and f"path: {tmp_path}/r.py" in cfg
    os.chdir("/")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--n", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 2


@pytest.mark.parametrize("before", [True, False])
def test_an_empty_eval_split_trains_and_reports(tiny_dir, tmp_path, before, capsys):
    path = _jsonl(tmp_path / "t.jsonl", [{"question": r["prompt"], "answer": r["answer"]} for r in ROWS])
    out = tmp_path / "run"
    assert main(["train", "grpo", "--out", str(out), f"model.path={tiny_dir}", "task.name=jsonl", f"task.path={path}",
                 "task.eval_fraction=0", f"eval.before={str(before).lower()}", "model.threads=1",
                 "generation.group_size=2", "generation.prompts_per_step=2", "generation.max_new_tokens=3",
                 "train.steps=1", "warmstart.steps=0", "log.tensorboard=false", "log.progress=false"]) == 0
    text = capsys.readouterr().out
    assert "eval split is empty" in text and (out / "report.html").exists()
    assert "before" not in json.loads((out / "eval.json").read_text())
    assert main(["eval", str(out)]) == 2 and "nothing to evaluate" in capsys.readouterr().err
