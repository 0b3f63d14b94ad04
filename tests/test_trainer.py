"""groupo.Trainer (groupo/trainer.py) as a TRL user calls it: the TRL quick-start (a dataset with a
conversational ``prompt`` and a ``solution`` column, a reward function reading ``c[0]["content"]``)
ported by renaming the class trains, and gives the same run as the CLI on the same data."""
import importlib.util
import json

import pytest
import torch
from safetensors.torch import load_file

import groupo
from groupo.cli import main

QUESTIONS = [("a=+1;b=-a;?b", "-1"), ("c=-1;?c", "-1"), ("x=+1;y=+x;?y", "+1"), ("p=-1;q=-p;r=-q;?r", "-1"),
             ("u=+1;?u", "+1"), ("m=-1;n=+m;?n", "-1"), ("s=+1;t=-s;w=-t;?w", "+1"), ("k=+1;j=+k;?j", "+1")]
ROWS = [{"prompt": [{"role": "user", "content": q}], "solution": a} for q, a in QUESTIONS]
REWARD = '''
def accuracy(completions, solution, **kwargs):
    """TRL's quick-start reward shape: completions are [{"role": "assistant", "content": ...}]; credit
    when the answer's sign appears (a random tiny model gets some of those right)."""
    return [1.0 if s[0] in c[0]["content"] else 0.0 for c, s in zip(completions, solution)]
'''
SETTINGS = {"model.threads": 1, "generation.group_size": 4, "generation.prompts_per_step": 2,
            "generation.max_new_tokens": 4, "generation.temperature": 1.5, "train.steps": 2, "train.lr": 1e-3,
            "warmstart.steps": 0, "task.eval_fraction": 0.25, "task.kind": "lego", "eval.n": 4,
            "log.tensorboard": False, "log.progress": False, "checkpoint.every": 0}


def _metrics(run):
    drop = ("time/", "tokens_per_s", "mem/")
    return [{k: v for k, v in json.loads(x).items() if not k.startswith(drop)}
            for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def accuracy(tmp_path_factory):
    f = tmp_path_factory.mktemp("reward") / "my_rewards.py"
    f.write_text(REWARD)
    spec = importlib.util.spec_from_file_location("my_rewards", f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return f, mod.accuracy


def test_trl_quickstart_through_trainer_and_cli_is_the_same_run(tiny_dir, tmp_path, accuracy):
    path, fn = accuracy
    trainer = groupo.Trainer(model=str(tiny_dir), train_dataset=ROWS, reward_funcs=fn, out=str(tmp_path / "api"),
                             overrides=SETTINGS)
    res = trainer.train()
    assert res.run_dir == tmp_path / "api" and res.metrics["step"] == 2 and "after" in res.eval
    cfg = (res.run_dir / "config.yaml").read_text()
    assert "name: callable" in cfg and "ref: accuracy" in cfg and "name: dataset" in cfg
    data = res.run_dir / "data" / "train.jsonl"                  # the in-memory rows, as the run keeps them
    assert [json.loads(x) for x in data.read_text().splitlines()] == ROWS
    cli = ["train", "grpo", "--out", str(tmp_path / "cli"), f"model.path={tiny_dir}", "model.tiny=false",
           "task.name=dataset", f"task.path={data}",
           f"rewards=[{{name: python, path: {path}, function: accuracy, label: accuracy}}]",
           *[f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in SETTINGS.items()]]
    assert main(cli) == 0
    assert _metrics(tmp_path / "api") == _metrics(tmp_path / "cli")
    assert any(m["reward/accuracy/mean"] > 0 for m in _metrics(tmp_path / "api"))       # the reward was read
    wa = load_file(tmp_path / "api/checkpoints/step_2/model.safetensors")
    wb = load_file(tmp_path / "cli/checkpoints/step_2/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ev = trainer.evaluate(n=2)
    assert ev["n"] == 2 and 0.0 <= ev["accuracy"] <= 1.0


def test_trainer_takes_trl_args_dotted_overrides_and_reward_names(tiny_dir, tmp_path):
    t = groupo.Trainer(model=str(tiny_dir), train_dataset=ROWS, reward_funcs=["format"], out=str(tmp_path / "r"),
                       args={"learning_rate": 5e-4, "num_generations": 2, "max_completion_length": 3, "beta": 0.04,
                             "loss_type": "dr_grpo", "epsilon": 0.3, "max_steps": 1},
                       generation__prompts_per_step=2, warmstart__steps=0, eval__n=2, log__tensorboard=False,
                       log__progress=False, checkpoint__every=0, model__threads=1, task__kind="lego")
    cfg, run_dir = t._prepare()
    assert cfg.train.lr == 5e-4 and cfg.generation.group_size == 2 and cfg.generation.max_new_tokens == 3
    assert cfg.raw["kl"] == {"name": "k3", "coef": 0.04} and cfg.raw["aggregation"]["name"] == "seq_sum_const"
    assert cfg.objective.eps_low == cfg.objective.eps_high == 0.3 and cfg.train.steps == 1
    assert [r["name"] for r in cfg.raw["rewards"]] == ["format"]
    with pytest.raises(groupo.config.ConfigError, match="unknown TRL setting 'learning_rat'"):
        groupo.Trainer(model=str(tiny_dir), args={"learning_rat": 1})


def test_reward_function_that_does_not_fit_the_data_is_one_line_before_the_model_loads(tiny_dir, tmp_path, capsys):
    f = tmp_path / "r.py"
    f.write_text("def needs_label(completions, label, **kw):\n    return [0.0] * len(completions)\n")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    rc = main(["train", "grpo", "--out", str(tmp_path / "run"), f"model.path={tiny_dir}", "task.name=dataset",
               f"task.path={data}", "task.kind=lego", f"rewards=[{{name: python, path: {f}, function: needs_label}}]"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "missing a required argument: 'label'" in err and "solution" in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_async_reward_functions_and_none_rows(tiny_dir, tmp_path):
    async def half(completions, **kwargs):
        return [None if i % 2 else 0.5 for i in range(len(completions))]

    res = groupo.Trainer(model=str(tiny_dir), train_dataset=ROWS, reward_funcs=[half], out=str(tmp_path / "a"),
                         overrides={**SETTINGS, "train.steps": 1}).train()
    assert res.metrics["reward/half/mean"] == 0.5 and res.metrics["reward/skipped"] > 0
