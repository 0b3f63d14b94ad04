"""Tasks: determinism, eval hygiene (unique, never trained on), levels, jsonl loading."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from groupo.registry import RegistryError, build
from groupo.rewards import checkers
from groupo.tasks import Task, TaskError, normalize_question
from groupo.types import Item

GENERATORS = ["arithmetic", "lego", "countdown"]


def test_normalize_question():
    assert normalize_question("  What IS\t2 +\n 2? ") == "what is 2 + 2?"
    assert normalize_question("a=+1;?a") == "a=+1;?a"


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_is_deterministic_and_unique(name):
    a, b = build("task", name, {"seed": 3}), build("task", name, {"seed": 3})
    assert isinstance(a, Task)
    ev = a.eval_items()
    assert ev == b.eval_items() and len(ev) == 200
    assert ev != build("task", name, {"seed": 4}).eval_items()
    assert len({normalize_question(it.question) for it in ev}) == len(ev)
    r1, r2 = random.Random(7), random.Random(7)
    assert [a.sample_train(r1) for _ in range(20)] == [b.sample_train(r2) for _ in range(20)]
    assert isinstance(a.describe(), str) and name in a.describe()


@pytest.mark.parametrize("name", GENERATORS)
def test_sample_train_never_returns_eval_questions(name):
    task = build("task", name, {"seed": 1, "eval_size": 300})
    keys = {normalize_question(it.question) for it in task.eval_items()}
    rng = random.Random(0)
    for _ in range(2000):
        assert normalize_question(task.sample_train(rng).question) not in keys


def test_small_space_forces_retries_but_no_leak():
    # 10 x 10 = 100 possible questions; half of them are eval questions
    task = build("task", "arithmetic", {"levels": [2], "eval_levels": [2], "max_value": 9, "eval_size": 50})
    keys = {normalize_question(it.question) for it in task.eval_items()}
    assert len(keys) == 50
    rng = random.Random(0)
    drawn = {task.sample_train(rng).question for _ in range(2000)}
    assert not drawn & {it.question for it in task.eval_items()}
    assert len(drawn) == 50  # every non-eval question is reachable


def test_exhausted_space_returns_what_it_has_and_train_errors():
    task = build("task", "arithmetic", {"levels": [2], "eval_levels": [2], "max_value": 1})
    assert len(task.eval_items()) == 4  # 0+0, 0+1, 1+0, 1+1
    with pytest.raises(TaskError, match="no training item"):
        task.sample_train(random.Random(0))


def test_arithmetic_items_and_levels():
    task = build("task", "arithmetic", {"levels": [4], "eval_levels": [2, 3], "eval_size": 101})
    ev = task.eval_items()
    assert Counter(it.group for it in ev) == {"terms=2": 51, "terms=3": 50}
    for it in ev:
        terms = it.question.rstrip("=").split("+")
        assert it.question.endswith("=") and it.kind == "number"
        assert it.group == f"terms={len(terms)}" and it.answer == str(sum(map(int, terms)))
        assert all(0 <= int(t) <= 99 for t in terms)
    item = task.sample_train(random.Random(0))
    assert item.group == "terms=4" and len(item.question.split("+")) == 4


def _solve_lego(question: str) -> tuple[str, int, dict]:
    clauses, query = question.split(";?")
    rules = dict(c.split("=") for c in clauses.split(";"))
    values: dict[str, int] = {}

    def value(v):
        if v not in values:
            r = rules[v]
            values[v] = int(r) if r in ("+1", "-1") else (1 if r[0] == "+" else -1) * value(r[1:])
        return values[v]

    return query, value(query), rules


@pytest.mark.parametrize("query", ["last", "random"])
def test_lego_items_are_correct(query):
    task = build("task", "lego", {"levels": [2, 3, 4, 5], "eval_levels": [4, 5, 6], "query": query, "eval_size": 90})
    assert Counter(it.group for it in task.eval_items()) == {"n=4": 30, "n=5": 30, "n=6": 30}
    rng = random.Random(0)
    items = task.eval_items() + [task.sample_train(rng) for _ in range(200)]
    for it in items:
        q, val, rules = _solve_lego(it.question)
        assert it.kind == "lego" and it.answer == ("+1" if val > 0 else "-1")
        assert it.group == f"n={len(rules)}" and len(set(rules)) == len(rules)
        if query == "last":  # the end of the chain: no clause reads it
            assert not any(r.endswith(q) for r in rules.values())
    assert {it.group for it in items[90:]} == {"n=2", "n=3", "n=4", "n=5"}
    assert items[0].question.count(";") == 4 and items[0].question[-2] == "?"


def test_lego_rejects_bad_params():
    with pytest.raises(RegistryError, match="query"):
        build("task", "lego", {"query": "first"})
    with pytest.raises(RegistryError, match="out of range"):
        build("task", "lego", {"levels": [27]})
    with pytest.raises(RegistryError, match="unknown parameter"):
        build("task", "lego", {"level": [3]})


def test_countdown_items_are_solvable():
    task = build("task", "countdown", {"levels": [3, 4], "eval_levels": [3, 4], "eval_size": 60})
    ev = task.eval_items()
    assert Counter(it.group for it in ev) == {"nums=3": 30, "nums=4": 30}
    for it in ev + [task.sample_train(random.Random(i)) for i in range(50)]:
        target, nums = checkers.parse_countdown_gold(it.answer)
        assert it.kind == "countdown" and it.group == f"nums={len(nums)}"
        assert 1 <= target <= 100 and all(1 <= n <= 20 for n in nums)
        assert it.question == f"Using {' '.join(map(str, nums))} make {target} with + - * / ( ), each number once."
        assert it.answer == f"{target}|{','.join(map(str, nums))}"
        assert checkers.countdown(it.meta["solution"], it.answer) == 1.0


# ---------------------------------------------------------------- jsonl

def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_jsonl_split_dedupe_and_meta(tmp_path):
    rows = [{"question": f"Q{i}?", "answer": str(i), "level": i % 3, "id": i} for i in range(50)]
    rows.append({"question": "  q7? ", "answer": "7", "level": 1, "id": 99})  # duplicate of Q7 after normalising
    p = _write(tmp_path / "d.jsonl", rows)
    task = build("task", "jsonl", {"path": p, "eval_fraction": 0.2, "group_key": "level", "seed": 5})
    ev, train = task.eval_items(), task.train_items()
    assert len(ev) == 10 and ev == build("task", "jsonl", {"path": p, "eval_fraction": 0.2, "group_key": "level", "seed": 5}).eval_items()
    eval_keys = {normalize_question(it.question) for it in ev}
    assert not any(normalize_question(it.question) in eval_keys for it in train)
    assert len(train) + len(ev) in (50, 51)
    it = ev[0]
    # every column reaches the reward functions under its own name (TRL's convention)
    assert it.kind == "number" and it.group == str(it.meta["level"])
    assert set(it.meta) == {"level", "id", "question", "answer"} and it.meta["question"] == it.question
    rng = random.Random(0)
    drawn = Counter(task.sample_train(rng).question for _ in range(4000))
    assert len(drawn) == len(train) and not set(drawn) & {i.question for i in ev}
    assert max(drawn.values()) < 3 * min(drawn.values())  # roughly uniform


def test_jsonl_eval_path_and_gsm8k_gold(tmp_path):
    train = _write(tmp_path / "train.jsonl", [
        {"question": "How many?", "answer": "She has 2 + 3 = <<2+3=5>>5.\n#### 5"},
        {"question": "Same in eval", "answer": "#### 1"},
        {"question": "Big", "answer": "so 1,000 + 234 = 1,234\n#### 1,234 "},
    ])
    ev = _write(tmp_path / "test.jsonl", [{"question": "same  IN eval", "answer": 1}, {"question": "x", "answer": "a #### b #### 42"}])
    task = build("task", "jsonl", {"path": train, "eval_path": ev})
    assert [i.answer for i in task.eval_items()] == ["1", "42"]
    assert [(i.question, i.answer) for i in task.train_items()] == [("How many?", "5"), ("Big", "1234")]
    assert task.eval_items()[0].meta == {"question": "same  IN eval", "answer": 1}   # the raw columns


@pytest.mark.parametrize("lines, message", [
    (['{"question": "a", "answer": "1"}', "{not json"], r"d\.jsonl:2: not valid JSON"),
    (['{"question": "a", "answer": "1"}', "", "[1, 2]"], r"d\.jsonl:3: expected a JSON object, got list"),
    (['{"question": "a", "answer": "1"}', '{"question": "b", "answr": "2"}'], r"d\.jsonl:2: missing key 'answer'"),
    (['{"question": "a", "answer": {"x": 1}}'], r"d\.jsonl:1: 'answer' must be a string or a number"),
    (["", "  "], r"d\.jsonl: empty file"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, lines, message):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises((TaskError, RegistryError), match=message):
        build("task", "jsonl", {"path": str(p)})


def test_jsonl_direct_errors(tmp_path):
    from groupo.tasks.jsonl import Jsonl

    with pytest.raises(TaskError, match="nope.jsonl: file not found"):
        Jsonl(path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(TaskError, match="needs 'path'"):
        Jsonl()
    p = _write(tmp_path / "g.jsonl", [{"question": "a", "answer": "1"}, {"question": "b", "answer": "2"}])
    with pytest.raises(TaskError, match=r"g\.jsonl:1: missing key 'level'"):
        Jsonl(path=p, group_key="level")
    with pytest.raises(ValueError, match="kind must be one of .*did you mean 'number'"):   # a Literal field
        Jsonl(path=p, kind="numbr")
    assert isinstance(Jsonl(path=p, kind="math").sample_train(random.Random(0)), Item)


def test_lego_distractor_chains_break_the_parity_shortcut():
    from groupo.registry import build as _build

    t = _build("task", "lego", {"levels": (3,), "eval_levels": (3,), "distractors": 1, "eval_size": 300})
    items = t.eval_items()
    assert all(len(it.question.split(";")) == 7 for it in items)      # 2 chains x 3 clauses + the query
    # the answer no longer follows from the parity of all minus signs in the question
    parity = [("+1" if it.question.count("-") % 2 == 0 else "-1") == it.answer for it in items]
    assert 0.3 < sum(parity) / len(parity) < 0.7
    # without distractors (query last) it always does
    t0 = _build("task", "lego", {"levels": (3,), "eval_levels": (3,), "eval_size": 100})
    assert all(("+1" if it.question.count("-") % 2 == 0 else "-1") == it.answer for it in t0.eval_items())
    with pytest.raises(Exception, match="26 variables"):
        _build("task", "lego", {"levels": (9,), "eval_levels": (9,), "distractors": 2})
