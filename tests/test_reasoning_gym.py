"""reasoning-gym as a task (groupo.tasks.reasoning_gym) and its scorers in worker processes
(groupo.rewards.rgpool): seeded disjoint splits, groups, scores through the pool only, code in
answers never runs, hung and crashed scorers are cut, a memory limit, a 2-step training run."""
from __future__ import annotations

import ast
import importlib
import json
import os
import random
import sys
import time
from pathlib import Path

import pytest

from groupo.registry import RegistryError, build
from groupo.rewards import rgpool
from groupo.rewards.components import Correct
from groupo.rewards.verify import verify, verify_item
from groupo.tasks import TaskError, normalize_question

FORK = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="patches reach the workers through fork")
SMALL_SUMS = {"chain_sum": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}  # 200 questions


def _task(**params):
    pytest.importorskip("reasoning_gym")
    return build("task", "reasoning_gym", params)


@pytest.fixture
def fresh_pool():
    """Workers forked after the test's patches, and none left carrying them afterwards."""
    rgpool.shutdown()
    yield
    rgpool.shutdown()


def _patch_scorer(monkeypatch, name: str, fn) -> None:
    from reasoning_gym.factory import DATASETS

    monkeypatch.setattr(DATASETS[name][0], "score_answer", fn)


def test_missing_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)     # import reasoning_gym -> ImportError
    with pytest.raises(RegistryError, match=r"task reasoning_gym needs `pip install groupo\[reasoning\]`") as err:
        build("task", "reasoning_gym", {})
    assert "\n" not in str(err.value)


def test_eval_is_fixed_by_the_seed_unique_and_never_trained_on():
    params = {"datasets": ["chain_sum", "gcd"], "config": SMALL_SUMS, "eval_size": 40, "seed": 3}
    a, b = _task(**params), _task(**params)
    ev = a.eval_items()
    assert ev == b.eval_items() and len(ev) == 40
    assert ev != _task(**{**params, "seed": 4}).eval_items()
    assert len({normalize_question(it.question) for it in ev}) == 40
    assert {it.group for it in ev} == {"chain_sum", "gcd"} and {it.kind for it in ev} == {"reasoning_gym"}
    keys = {normalize_question(it.question) for it in ev}
    r1, r2 = random.Random(7), random.Random(7)
    draws = [a.sample_train(r1) for _ in range(600)]
    assert draws[:20] == [b.sample_train(r2) for _ in range(20)]
    # 20 of chain_sum's 200 questions are eval questions: training draws hit them and are redrawn
    assert not {normalize_question(it.question) for it in draws} & keys
    assert {it.group for it in draws} == {"chain_sum", "gcd"}
    assert not {normalize_question(it.question) for it in a.train_pool(50, seed=1)} & keys
    for it in ev[:4] + draws[:4]:
        json.dumps(it.meta)                               # JSON-serialisable
        assert it.meta["reasoning_gym"]["dataset"] == it.group
    assert "chain_sum, gcd" in a.describe()


@pytest.mark.parametrize("params, message", [
    ({"datasets": ["chain_sun"]}, "unknown dataset 'chain_sun' (did you mean 'chain_sum'?)"),
    ({"datasets": ["game_of_life_halting"]}, "any non-empty answer"),
    ({"datasets": ["composite"]}, "list several datasets"),
    ({"config": {"chain_sum": {"min_term": 2}}}, "unknown parameter 'min_term' for chain_sum (did you mean 'min_terms'?)"),
    ({"config": {"gcd": {}}}, "config for 'gcd', which is not in datasets"),
    ({"config": {"chain_sum": {"min_terms": 0}}}, "refused by reasoning-gym"),
    ({"datasets": ["chain_sum", "gcd"], "weights": [1.0]}, "one non-negative number per dataset"),
])
def test_mistakes_are_one_line_errors(params, message):
    pytest.importorskip("reasoning_gym")
    with pytest.raises((TaskError, RegistryError), match=None) as err:
        build("task", "reasoning_gym", params)
    assert message in str(err.value) and "\n" not in str(err.value)


# chain_sum and countdown: numbers and expressions; spiral_matrix: a scorer that evals; arc_agi: tuple
# metadata (rebuilt in the worker); intermediate_integration: sympy; propositional_logic: no gold
MIX = ["chain_sum", "countdown", "spiral_matrix", "arc_agi", "intermediate_integration", "propositional_logic"]


def test_correct_and_malformed_answers_through_the_pool(fresh_pool):
    task = _task(datasets=MIX, eval_size=12, size=200)
    items = [it for it in task.eval_items() if it.answer]
    assert {it.group for it in items} == set(MIX) - {"propositional_logic"}
    before = rgpool.pool_stats()
    good = [f"<think>...</think><answer>{it.answer}</answer>" for it in items]
    bad = ["<answer>wrong 12345</answer>"] * len(items)
    no_tag = [it.answer for it in items]                 # the gold, but not marked as the answer
    extra = [f"<answer>The answer is {it.answer}.</answer>" for it in items]
    empty = ["<answer></answer>"] * len(items)
    reward = Correct()
    assert reward(good, items) == [1.0] * len(items)
    for completions in (bad, no_tag, extra, empty):
        assert reward(completions, items) == [0.0] * len(items)
    assert [verify_item(c, it) for c, it in zip(good[:3], items)] == [1.0] * 3
    assert verify(good[0], items[0].answer, "reasoning_gym") == 1.0      # no meta: exact comparison
    assert rgpool.pool_stats() == before                                 # no timeout, no restart
    # partial credit on: reasoning-gym's own score (chain_sum credits text containing the gold)
    sums = _task(datasets=["chain_sum"], eval_size=2, partial_credit=True).eval_items()
    s = verify_item(f"<answer>The answer is {sums[0].answer}.</answer>", sums[0])
    assert 0.0 < s < 1.0


@FORK
def test_the_scorer_never_runs_in_the_training_process(monkeypatch, fresh_pool):
    pytest.importorskip("reasoning_gym")
    parent, calls = os.getpid(), []

    def scorer(self, answer, entry):
        calls.append(os.getpid())                        # grows only in the process that calls it
        return 1.0 if os.getpid() != parent else 0.0

    _patch_scorer(monkeypatch, "spiral_matrix", scorer)
    items = _task(datasets=["spiral_matrix"], eval_size=3, size=50).eval_items()
    assert Correct()(["<answer>1 2</answer>"] * 3, items) == [1.0] * 3
    assert verify_item("<answer>1 2</answer>", items[0]) == 1.0
    assert calls == []


def _payload(path: Path) -> str:
    """Code that, if run, writes its process id into ``path`` (a file in the test's tmp_path)."""
    return f"__import__('pathlib').Path({str(path)!r}).write_text('%d' % __import__('os').getpid())"


@FORK
def test_code_in_an_answer_does_not_run(tmp_path, monkeypatch, fresh_pool):
    canary = tmp_path / "canary"
    sources = {name: _task(datasets=[name], eval_size=1, size=50).eval_items()[0]
               for name in ("spiral_matrix", "n_queens", "countdown", "polynomial_multiplication")}
    for it in sources.values():
        assert verify_item(f"<answer>{_payload(canary)}</answer>", it) == 0.0
    assert not canary.exists()
    # without the whitelist and the literal_eval shadow, the scorers do run the answer in the worker,
    # and the audit hook refuses the write
    monkeypatch.setattr(rgpool, "admissible", lambda dataset, answer: True)
    monkeypatch.setattr(rgpool, "EVAL_MODULES", {})
    rgpool.shutdown()
    for it in sources.values():
        assert verify_item(f"<answer>{_payload(canary)}</answer>", it) == 0.0
    assert not canary.exists()
    # the checks above are not vacuous: without the audit hook too, the code runs, in a worker
    monkeypatch.setattr(rgpool, "_audit", lambda event, args: None)
    rgpool.shutdown()
    for name in ("spiral_matrix", "countdown"):
        verify_item(f"<answer>{_payload(canary)}</answer>", sources[name])
        assert canary.exists() and int(canary.read_text()) != os.getpid(), name
        canary.unlink()


@pytest.mark.slow
def test_admissible_lets_golds_through_and_stops_code():
    rg = pytest.importorskip("reasoning_gym")
    for name in sorted(rgpool.ARITHMETIC | rgpool.SYMBOLIC):
        ds = rg.create_dataset(name, size=30, seed=11)
        golds = [ds[i]["answer"] for i in range(30)]
        assert all(rgpool.admissible(name, g) for g in golds), name
    for bad in ("__import__('os')", "exec(chr(112))", "x.func", "'x'", "[1]", "lambda: 0", "x or 7", "open(1)"):
        assert not rgpool.admissible("simple_integration", bad), bad
    assert not rgpool.admissible("countdown", "9**9**9") and not rgpool.admissible("countdown", "x+1")
    assert rgpool.admissible("countdown", "(3 + 5) * 2 - 7 / 1")


def test_every_scorer_that_runs_its_answer_is_guarded():
    """Scan the installed reasoning-gym: a score_answer calling eval/exec/parse_expr/sympify on
    the answer must be one that rgpool guards (a new version may add some)."""
    pytest.importorskip("reasoning_gym")
    from reasoning_gym.factory import DATASETS

    guarded = set(rgpool.EVAL_MODULES.values()) | {DATASETS[n][0].__module__ for n in rgpool.ARITHMETIC | rgpool.SYMBOLIC}
    found = set()
    for name, (cls, _) in DATASETS.items():
        module = importlib.import_module(cls.__module__)
        for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "score_answer":
                for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
                    fn = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
                    uses_answer = any(isinstance(n, ast.Name) and n.id == "answer" for a in call.args for n in ast.walk(a))
                    if fn in ("eval", "exec", "parse_expr", "sympify") and uses_answer:
                        found.add(cls.__module__)
    assert found and found <= guarded, found - guarded


@FORK
def test_a_hanging_scorer_is_cut_and_a_crashed_worker_replaced(monkeypatch, fresh_pool):
    item = _task(datasets=["chain_sum"], eval_size=1, size=50).eval_items()[0]
    good = f"<answer>{item.answer}</answer>"
    _patch_scorer(monkeypatch, "chain_sum", lambda self, answer, entry: time.sleep(120) or 1.0)
    before = rgpool.pool_stats()
    t0 = time.monotonic()
    assert verify_item(good, item, timeout=1.0) == 0.0
    assert time.monotonic() - t0 < 20
    after = rgpool.pool_stats()
    assert after["timeouts"] == before["timeouts"] + 1 and after["pool_restarts"] > before["pool_restarts"]
    _patch_scorer(monkeypatch, "chain_sum", lambda self, answer, entry: os._exit(3))
    rgpool.shutdown()
    assert verify_item(good, item, timeout=5.0) == 0.0
    assert rgpool.pool_stats()["pool_restarts"] >= after["pool_restarts"] + 2     # crashed twice, then scored 0
    monkeypatch.undo()
    rgpool.shutdown()
    assert verify_item(good, item) == 1.0


@FORK
def test_workers_have_an_address_space_limit(monkeypatch, fresh_pool):
    def scorer(self, answer, entry):
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft == resource.RLIM_INFINITY:
            return 0.0                   # no limit: allocate nothing
        try:
            bytearray(soft)              # more than the limit leaves: refused without touching memory
        except MemoryError:
            return 1.0
        return 0.0

    _patch_scorer(monkeypatch, "chain_sum", scorer)
    item = _task(datasets=["chain_sum"], eval_size=1, size=50).eval_items()[0]
    assert verify_item("<answer>1</answer>", item) == 1.0


def test_trains_two_steps_through_the_cli(tiny_dir, tmp_path):
    pytest.importorskip("reasoning_gym")
    from groupo.cli import main

    out = tmp_path / "rg"
    args = ["train", "grpo", "--out", str(out), f"model.path={tiny_dir}", "model.tiny=false", "model.threads=1",
            "generation.group_size=4", "generation.prompts_per_step=2", "generation.max_new_tokens=4",
            "train.steps=2", "train.micro_batches=2", "warmstart.steps=0", "eval.n=4", "eval.before=false",
            "eval.after=true", "log.tensorboard=false", "log.progress=false", "checkpoint.every=0",
            "template.name=chat", "task.name=reasoning_gym", "task.datasets=[chain_sum, gcd]", "task.eval_size=4",
            "task.config={chain_sum: {min_terms: 2, max_terms: 2}}"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    after = json.loads((out / "eval.json").read_text())["after"]
    assert set(after["per_group"]) <= {"chain_sum", "gcd"} and after["per_group"]
