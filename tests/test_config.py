"""Config: extends, overrides, validation errors as one line naming the key."""
import pytest

from groupo.config import ConfigError, apply_overrides, load_config, load_recipe


def test_builtin_recipe_extends_and_component_reset():
    raw = load_recipe("dr_grpo")
    assert raw["advantage"] == {"name": "dr_grpo"}          # grpo's eps did not leak into dr_grpo
    assert raw["objective"]["eps_low"] == 0.2                # inherited from grpo
    cfg = load_config("dr_grpo", ["model.path=/tmp/x"])
    assert cfg.aggregation.component_name == "seq_sum_const"
    assert cfg.raw["kl"] == {"name": "none", "coef": 0.0}


def test_overrides_types_and_component_switch():
    cfg = load_config("grpo", ["model.path=/m", "train.lr=3e-4", "advantage.name=rloo", "objective.eps_high=0.28",
                               "task.levels=[2,4]", "rewards.0.weight=2"])
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)
    assert cfg.advantage.component_name == "rloo"
    assert cfg.objective.eps_high == 0.28
    assert cfg.task.levels == (2, 4)
    assert cfg.raw["rewards"][0]["weight"] == 2


def test_user_recipe_file_extends_builtin(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("extends: grpo\nname: mine\ngeneration: {group_size: 4}\nmodel: {path: /m}\n")
    cfg = load_config(str(p))
    assert cfg.name == "mine" and cfg.generation.group_size == 4 and cfg.generation.prompts_per_step == 16


@pytest.mark.parametrize("overrides,needle", [
    (["trian.lr=1"], "unknown key 'trian' (did you mean 'train'?)"),
    (["train.lrr=1"], "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
    (["train.lr=abc"], "train.lr: expected a number, got 'abc'"),
    (["advantage.epz=1"], "unknown parameter 'advantage.epz' for advantage 'grpo' (did you mean 'eps'?)"),
    (["advantage.name=grpoo"], "unknown advantage 'grpoo' (did you mean 'grpo'?)"),
    (["generation.group_size=0"], "generation.group_size must be >= 1"),
    (["rollout.name=vllm", "rollout.tis_cap=-1"], "rollout: tis_cap must be >= 0"),
    (["rollout.name=lean", "rollout.tis_cap=2"], "unknown parameter 'rollout.tis_cap' for rollout 'lean'"),
    (["forward.name=fast"], "unknown forward 'fast'"),
    (["model.dtype=float64"], "model.dtype: value 'float64' is not one of ['float32', 'bfloat16', 'float16']"),
    (["objective.name=disco", "objective.variant=disco_c"], "did you mean 'disco_b'?"),
    (["train.schedule=cosin"], "did you mean 'cosine'?"),
    (["rewards.0.name=corect"], "did you mean 'correct'?"),
    (["train"], "must look like key.sub=value"),
])
def test_errors_are_one_line_and_name_the_key(overrides, needle):
    with pytest.raises(ConfigError) as e:
        load_config("grpo", ["model.path=/m", *overrides])
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_missing_model_path_and_missing_recipe(tmp_path):
    with pytest.raises(ConfigError, match="model.path is required"):
        load_config("grpo")
    with pytest.raises(ConfigError, match="recipe 'grpp' not found.*did you mean 'grpo'"):
        load_config("grpp")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: [1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(str(bad))
    cyc = tmp_path / "a.yaml"
    cyc.write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(cyc))


def test_apply_overrides_does_not_mutate_input():
    base = {"train": {"lr": 1.0}}
    out = apply_overrides(base, ["train.lr=2"])
    assert base["train"]["lr"] == 1.0 and out["train"]["lr"] == 2


def test_cross_section_check_runs_before_training():
    with pytest.raises(ConfigError, match="shaping.cache=64 exceeds the length limit 32"):
        load_config("dapo", ["model.path=/m", "generation.max_new_tokens=32"])


@pytest.mark.parametrize("typed, want", [("on", "shared"), ("off", "naive"), ("auto", "auto"), ("true", "shared"),
                                         ("false", "naive"), ("dense", "dense")])
def test_keys_of_earlier_releases_move_to_their_component(typed, want):
    """model.prefix_sharing / logprob_chunk -> forward, generation.backend / tis_cap -> rollout: old
    recipes and run directories still load (YAML 1.1 reads on/off as booleans: still what was typed)."""
    cfg = load_config("grpo", ["model.path=/m", f"model.prefix_sharing={typed}", "model.logprob_chunk=8"])
    assert cfg.raw["forward"] == {"name": want, "logprob_chunk": 8} and "prefix_sharing" not in cfg.raw["model"]
    with pytest.raises(ConfigError, match="model.prefix_sharing"):
        load_config("grpo", ["model.path=/m", "model.prefix_sharing=sometimes"])
    old = load_config("grpo", ["model.path=/m", "generation.backend=hf", "generation.tis_cap=2.0"])
    assert old.raw["rollout"] == {"name": "lean"} and "backend" not in old.raw["generation"]
    vllm = load_config("grpo", ["model.path=/m", "generation.backend=vllm", "generation.tis_cap=3.0"])
    assert vllm.raw["rollout"]["name"] == "vllm" and vllm.rollout.tis_cap == 3.0


def test_literal_fields_are_checked_when_built_in_python_too():
    from groupo.algo.advantage.classic import GRPO

    with pytest.raises(ValueError, match="scale must be one of"):
        GRPO(scale="groups")
    assert GRPO(scale="batch").scale == "batch"


def test_list_overrides_append_with_plus_equals():
    base = {"rewards": [{"name": "correct"}]}
    out = apply_overrides(base, ["rewards+={name: format, weight: 0.1}", "plugins+=[a.py, b.py]"])
    assert out["rewards"] == [{"name": "correct"}, {"name": "format", "weight": 0.1}]
    assert out["plugins"] == ["a.py", "b.py"] and base == {"rewards": [{"name": "correct"}]}


def test_every_key_is_documented_and_listed(capsys, monkeypatch):
    """groupo list config: every plain key with its type, default and a line of help taken from the
    dataclass that validates it; groupo list train: one section; a typo: one line with a hint."""
    from groupo.cli import main
    from groupo.config import PLAIN_SECTIONS
    from groupo.config.describe import section_rows

    monkeypatch.setenv("COLUMNS", "250")         # a wide terminal: rich does not cut the cells
    for section, cls in PLAIN_SECTIONS.items():
        for key, typ, default, help_ in section_rows(section, cls):
            assert help_, f"{key} has no help comment in groupo/config/sections.py"
    assert main(["list", "train"]) == 0
    out = capsys.readouterr().out
    assert "train.lr" in out and "AdamW learning rate" in out and "generation.group_size" not in out
    assert main(["list", "config"]) == 0
    out = capsys.readouterr().out
    assert all(k in out for k in ("model.path", "rollout.name", "forward.logprob_chunk", "plugins", "list[int]"))
    assert main(["list", "trian"]) == 2 and "did you mean 'train'" in capsys.readouterr().err


def test_a_hub_model_id_offline_and_uncached_is_one_line(tmp_path, capsys, monkeypatch):
    from groupo.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(["train", "grpo", "--out", str(tmp_path / "r"), "model.path=someone/not-a-cached-model"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "nor in the Hugging Face cache, and offline mode is on" in err
    rc = main(["train", "grpo", "--out", str(tmp_path / "r"), "model.path=./no/such/dir"])
    assert rc == 2 and "model directory './no/such/dir' does not exist" in capsys.readouterr().err
