"""A user's own components from a Python file (groupo/plugins.py): the README's example registers,
trains and evaluates through the CLI; mistakes are one line naming the file and line."""
import json
import re
from pathlib import Path

import pytest
import yaml

from groupo.cli import main

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["model.tiny=false", "model.threads=1", "generation.group_size=4", "generation.prompts_per_step=2",
         "generation.max_new_tokens=4", "train.steps=2", "warmstart.steps=0", "task.name=lego", "task.eval_size=4",
         "eval.n=4", "eval.before=false", "log.tensorboard=false", "log.progress=false", "checkpoint.every=0"]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The README's example file, as a user would copy it (one file per test session: a second file
    registering the same name would be a conflict)."""
    tmp_path = tmp_path_factory.mktemp("plugin")
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(# my_components\.py\n.*?)```", readme, re.S).group(1)
    assert len(code.splitlines()) <= 22                  # the "20-line example"
    f = tmp_path / "my_components.py"
    f.write_text(code)
    return f


def test_readme_plugin_lists_trains_and_evaluates(plugin, tiny_dir, tmp_path, capsys, monkeypatch):
    assert main(["list", "advantage", "--plugin", str(plugin)]) == 0
    assert "centered" in capsys.readouterr().out
    out = tmp_path / "run"
    assert main(["train", "grpo", "--out", str(out), "--plugin", str(plugin), f"model.path={tiny_dir}",
                 "advantage.name=centered", "advantage.scale=2", *SMALL]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["advantage"] == {"name": "centered", "scale": 2.0} and cfg["plugins"] == [str(plugin.resolve())]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)                        # the run's config.yaml names the plugin absolutely
    assert main(["eval", str(out), "--n", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 2


def test_plugin_named_in_a_recipe_and_checked_like_builtins(plugin, tiny_dir, tmp_path):
    from groupo.config import ConfigError, load_config

    recipe = tmp_path / "mine.yaml"
    recipe.write_text(f"extends: grpo\nplugins: [{plugin}]\nadvantage: {{name: centered, scale: 0.5}}\n")
    cfg = load_config(str(recipe), [f"model.path={tiny_dir}"])
    assert cfg.advantage.scale == 0.5 and cfg.advantage.component_name == "centered"
    with pytest.raises(ConfigError, match=r"advantage.scale: expected a number, got 'big'"):
        load_config(str(recipe), [f"model.path={tiny_dir}", "advantage.scale=big"])


@pytest.mark.parametrize("body, needle", [
    ("x = 1\ndef f(:\n", r"bad\.py:2: SyntaxError"),
    ("import math\n\nraise RuntimeError('no GPU here')\n", r"bad\.py:3: RuntimeError: no GPU here"),
    ("from dataclasses import dataclass\nfrom groupo.registry import register\nfrom groupo.protocols import Advantage\n"
     "@register('advantage', 'grpo')\n@dataclass(frozen=True)\nclass Mine(Advantage):\n"
     "    def __call__(self, batch):\n        return None\n", r"advantage component 'grpo' is registered twice"),
    ("from dataclasses import dataclass\nfrom groupo.registry import register\n"
     "@register('kl', 'mine')\n@dataclass(frozen=True)\nclass Mine:\n    coef: float = 0.0\n",
     r"bad\.py:3: RegistryError: kl component 'mine' \(Mine\) lacks check_config, __call__: subclass groupo.protocols.KL"),
])
def test_plugin_mistakes_are_one_line(tmp_path, capsys, body, needle):
    f = tmp_path / "bad.py"
    f.write_text(body)
    assert main(["list", "kl", "--plugin", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(needle, err) and "\n" not in err and "Traceback" not in err, err


def test_missing_plugin_file(tmp_path, capsys):
    assert main(["train", "grpo", "--plugin", str(tmp_path / "nope.py"), "model.path=/m"]) == 2
    assert "nope.py: plugin file not found" in capsys.readouterr().err
