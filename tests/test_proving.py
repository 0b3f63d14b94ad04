"""The proving ground (issue 21): the `chains` task and its traces, base models built offline and
deterministically (model/pretrain.py), and the claims runner's numbers and verdicts (eval/claims.py)."""
import json
import random
import re

import pytest

from groupo.config import ConfigError, load_config
from groupo.eval import claims as cl
from groupo.registry import build


def test_chains_traces_resolve_to_the_answer_and_levels_hold():
    task = build("task", "chains", {"levels": [1, 2, 3], "eval_levels": [4, 5], "eval_size": 20, "distractors": 1})
    rng = random.Random(0)
    for _ in range(200):
        it = task.sample_train(rng)
        level = int(it.group.split("=")[1])
        steps = it.meta["trace"].rstrip(";").split(";")
        assert len(steps) == level + 1 and level in (1, 2, 3)
        env = {}
        for s in steps:                                    # "b=14+7=21": recompute every step
            m = re.fullmatch(r"(\w)=(\d+)(?:([+-])(\d)=(\d+))?", s)
            assert m, s
            name, a, op, d, res = m.groups()
            if op is None:
                env[name] = int(a)
            else:
                assert int(res) == (int(a) + int(d) if op == "+" else int(a) - int(d)) and 0 <= int(res) <= 99
                env[name] = int(res)
        assert str(list(env.values())[-1]) == it.answer
        clauses = it.question.split(";")
        assert len(clauses) == 2 * (level + 1) + 1 and clauses[-1] == "?" + list(env)[-1]   # one distractor chain
    evals = task.eval_items()
    assert {it.group for it in evals} == {"L=4", "L=5"}
    assert not {it.question for it in evals} & {task.sample_train(rng).question for _ in range(300)}


def test_warmstart_target_takes_the_trace_and_refuses_unknown_fields():
    from groupo.tasks.base import target_text

    it = build("task", "chains", {"shuffle": False}).sample_train(random.Random(1))
    assert target_text("{trace}<answer>{answer}</answer>", it) == f"{it.meta['trace']}<answer>{it.answer}</answer>"
    with pytest.raises(ConfigError, match=r"warmstart.target .*'trace' is not a field of the task's items"):
        load_config("demo", ["model.path=/m", "warmstart.target={trace}<answer>{answer}</answer>"])


@pytest.fixture
def mini_base(tmp_path, monkeypatch):
    from groupo.model import pretrain

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "mini.yaml").write_text(
        "name: mini\nseed: 0\nmodel: {hidden: 32, layers: 1, heads: 2}\n"
        "task: {name: chains, levels: [1, 2], eval_levels: [1, 2, 3], eval_size: 12}\n"
        "template: plain\nmax_new_tokens: 48\neval_n: 12\n"
        "pretrain: {steps: 6, lr: 1.0e-3, batch_size: 8, levels: [1, 2], target: '{trace}<answer>{answer}</answer>'}\n")
    monkeypatch.setattr(pretrain, "SPECS", specs)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return pretrain


def test_a_base_model_builds_once_deterministically_and_by_name(mini_base, tmp_path, monkeypatch, tiny_dir):
    first = mini_base.build("mini", say=lambda *a: None)
    info = json.loads((first / "info.json").read_text())
    assert first.name.startswith("mini-") and info["spec"]["pretrain"]["steps"] == 6
    assert set(info["per_level"]) == {"L=1", "L=2", "L=3"}
    assert mini_base.build("mini") == first                       # cached: not built again
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
    again = mini_base.build("mini", say=lambda *a: None)          # a fresh rebuild: the same weights
    assert json.loads((again / "info.json").read_text())["weights_sha256"] == info["weights_sha256"]
    with pytest.raises(ConfigError, match="unknown base model 'mnii' .*did you mean 'mini'"):
        mini_base.spec("mnii")


def test_model_path_base_name_trains(mini_base, tmp_path):
    from groupo.cli import main

    assert main(["train", "grpo", "--out", str(tmp_path / "run"), "model.path=base:mini", "task.name=chains",
                 "template.name=plain", "generation.group_size=2", "generation.prompts_per_step=2",
                 "generation.max_new_tokens=8", "train.steps=1", "eval.n=2", "eval.before=false",
                 "model.threads=1", "log.tensorboard=false", "log.progress=false"]) == 0
    assert (tmp_path / "cache" / "groupo" / "base").is_dir()


def test_intervals_and_verdicts_by_hand():
    m, lo, hi = cl.interval([0.1, 0.2, 0.3])
    # mean 0.2, sd 0.1, t(0.975, 2) = 4.303: half-width 4.303 * 0.1 / sqrt(3) = 0.24844
    assert m == pytest.approx(0.2) and hi - m == pytest.approx(0.24844, abs=1e-5) and lo == pytest.approx(-0.04844, abs=1e-5)
    assert cl.verdict((0.3, 0.1, 0.5), "a>b")[0] == "holds"
    assert cl.verdict((0.3, 0.1, 0.5), "a<b")[0] == "does not hold"
    assert cl.verdict(cl.interval([0.1, 0.2, 0.3]), "a>b")[0] == "inconclusive"
    assert cl.verdict(cl.interval([0.4]), "a>b") == ("inconclusive", "one seed: no interval")


def _cell(root, key, seed, acc, l5, ent):
    d = root / "runs" / key / f"seed_{seed}"
    d.mkdir(parents=True)
    (d / "eval.json").write_text(json.dumps({"after": {"accuracy": acc, "per_group": {"L=5": {"accuracy": l5}},
                                                       "pass@k": {"8": acc + 0.1}}}))
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "entropy/mean": ent + i, "time/step": 1.0,
                                                          "tokens/generated": 10}) + "\n" for i in range(1, 4)))


def test_claims_summary_from_cells(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("name: c\nbase: grpo\nseeds: [0, 1, 2]\nclaims:\n"
                 "  - {id: acc, claim: a wins, paper: '1', metric: eval.after.accuracy,\n"
                 "     arms: {a: {recipe: grpo, overrides: [train.lr=1e-4]}, b: {recipe: grpo}}}\n"
                 "  - {id: ent, claim: b has more entropy, paper: '2', metric: entropy/mean@last2, expect: a<b,\n"
                 "     arms: {a: {recipe: grpo, overrides: [train.lr=1e-4]}, b: {recipe: grpo}}}\n")
    setup, claims = cl.load_claims(f)
    a, b = claims[0].arms["a"].key, claims[0].arms["b"].key
    for s, (x, y) in enumerate([(0.5, 0.3), (0.6, 0.35), (0.55, 0.3)]):
        _cell(tmp_path, a, s, x, 0.1, 1.0)
        _cell(tmp_path, b, s, y, 0.1, 2.0)
    summary = cl.summarize(claims, [0, 1, 2], tmp_path)
    acc, ent = summary["claims"]
    assert acc["difference"]["values"] == pytest.approx([0.2, 0.25, 0.25]) and acc["verdict"] == "holds"
    # entropy 2, 3, 4 per step: last2 = 3.5; b is 1 higher every seed, so a<b holds with zero spread
    assert ent["arms"]["a"]["values"] == [3.5, 3.5, 3.5] and ent["verdict"] == "holds"
    assert ent["difference"]["values"] == [-1.0, -1.0, -1.0]
    assert acc["arms"]["a"]["compute"][0] == {"train_s": 3.0, "steps": 3, "tokens_generated": 30, "warmstart_steps": 0,
                                              "warmstart_s": None}
    md = (tmp_path / "claims.md").read_text()
    assert "**holds**" in md and "![acc](plots/acc.png)" in md and "![ent](plots/ent.png)" in md
    # the plots behind the verdicts, and the report with the table and both figures embedded
    assert (tmp_path / "plots/acc.png").stat().st_size > 5000 and (tmp_path / "plots/ent.png").stat().st_size > 5000
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "95% t-intervals" in page and "a wins (acc)" in page
    with pytest.raises(ConfigError, match=r"claims\[0\]: arms must be"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("claims: [{id: x, claim: y, metric: z, arms: {a: {}}}]\n")
        cl.load_claims(bad)
