"""groupo study: cell configs (base setup + the recipe's own algorithm), a tiny grid run
end to end, resume without rerunning finished cells, summary/plots/report; compare --out."""
import json

import pytest

from groupo.cli import main
from groupo.config import ConfigError
from groupo.eval.study import cell_config, load_study

TINY = ["model.threads=1", "generation.group_size=4", "generation.prompts_per_step=3",
        "generation.max_new_tokens=4", "train.steps=2", "warmstart.steps=3", "task.eval_size=12",
        "eval.n=12", "log.tensorboard=false", "checkpoint.every=0"]


def _write(tmp_path, **extra):
    data = {"name": "t", "base": "demo", "recipes": ["grpo", {"recipe": "dapo", "label": "dapo", "overrides": ["shaping.cache=2"]}, "prompt_aug"],
            "seeds": [0, 1], "overrides": TINY, **extra}
    f = tmp_path / "s.yaml"
    import yaml

    f.write_text(yaml.safe_dump(data))
    return f


def test_cell_config_keeps_base_setup_and_method_algorithm(tmp_path):
    st = load_study(_write(tmp_path))
    assert len(st.cells) == 6 and st.cells[0].key == "grpo/seed_0"
    grpo, dapo, pa = (cell_config(st, c, None) for c in st.cells[::2])
    for cfg in (grpo, dapo, pa):                      # the shared setup comes from the base recipe
        assert cfg.raw["task"]["name"] == "lego" and cfg.generation.group_size == 4 and cfg.train.steps == 2
        assert cfg.kl.coef == 0.0                     # demo's kl none, not grpo's 0.04
    assert grpo.raw["template"]["name"] == "plain" and grpo.raw["filter"]["name"] == "none"
    assert dapo.raw["filter"]["name"] == "zero_variance" and dapo.raw["shaping"]["name"] == "dapo_overlong"
    assert pa.raw["template"]["name"] == "prompt_augmentation"          # the method's own template
    assert [r["name"] for r in pa.raw["rewards"]] == ["correct", "template_format"]
    assert cell_config(st, st.cells[1], tmp_path / "init").model.path == str(tmp_path / "init")


@pytest.mark.parametrize("bad, needle", [
    ({"recipes": ["grpo", "nope"]}, "nope"),
    ({"recipes": ["grpo", "grpo"]}, "used twice"),
    ({"seedz": [1]}, "seeds"),
    ({"overrides": ["train.stepz=3"]}, "train.steps"),
    ({"group_sizes": [1]}, "group_sizes"),
])
def test_study_errors_name_the_problem(tmp_path, bad, needle):
    with pytest.raises(ConfigError, match=needle):
        load_study(_write(tmp_path, **bad))


def test_study_runs_resumes_and_reports(tmp_path, capsys):
    f = _write(tmp_path, recipes=["grpo", "mc_grpo"], group_sizes=[4])
    out = tmp_path / "out"
    assert main(["study", str(f), "--out", str(out)]) == 0
    for key in ("grpo_G4/seed_0", "grpo_G4/seed_1", "mc_grpo_G4/seed_0", "mc_grpo_G4/seed_1"):
        assert "after" in json.loads((out / "runs" / key / "eval.json").read_text())
    assert (out / "init/seed_0/done.json").exists() and (out / "init/seed_1/done.json").exists()
    # both methods of a seed start from the same warm-started model: same accuracy before
    s = json.loads((out / "summary.json").read_text())
    cells = {(c["label"], c["seed"]): c for c in s["cells"]}
    assert cells[("grpo G=4", 0)]["before"] == cells[("mc_grpo G=4", 0)]["before"]
    assert set(s["summary"]) == {"grpo G=4", "mc_grpo G=4"}
    md = (out / "summary.md").read_text()
    assert "| grpo G=4 | 2 |" in md and "plots/learning.png" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "<script" not in html and "http" not in html
    capsys.readouterr()
    assert main(["study", str(f), "--out", str(out)]) == 0          # nothing rerun
    assert capsys.readouterr().out.count("finished earlier, kept") == 4


def test_compare_out_groups_runs_by_recipe_name(tmp_path, tiny_dir):
    common = [f"model.path={tiny_dir}", "model.tiny=false", "warmstart.steps=0", *TINY]
    for seed in (0, 1):
        assert main(["train", "demo", "--out", str(tmp_path / f"r{seed}"), f"seed={seed}", *common]) == 0
    assert main(["compare", str(tmp_path / "r0"), str(tmp_path / "r1"), "--out", str(tmp_path / "cmp")]) == 0
    s = json.loads((tmp_path / "cmp/summary.json").read_text())
    assert list(s["summary"]) == ["demo"] and s["summary"]["demo"]["seeds"] == [0, 1]


def test_compare_groups_seeds_by_whole_config_and_never_calls_a_repeat_a_seed(tmp_path):
    """Runs are seeds of one method only when their configurations differ in nothing but the seed;
    another setting under the same name is another method; the same seed twice is a repeat."""
    import yaml

    from groupo.eval.study_report import group_seeds as _group_seeds

    def run(name, **cfg):
        d = tmp_path / name
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump({"name": "grpo", "seed": 0, "train": {"lr": 1e-6}, **cfg}))
        return d

    a, b = run("a"), run("b", seed=1)
    c = run("c", seed=2, train={"lr": 1e-5})        # same recipe name, another learning rate
    again = run("again")                             # seed 0 again, same settings
    out = _group_seeds([a, b, c, again])
    labels = [label for label, _, _ in out]
    assert labels[0] == labels[1] and labels[0].startswith("grpo [")      # a, b: seeds 0, 1 of one method
    assert labels[2] != labels[0] and labels[2].startswith("grpo [")      # c: another method
    assert labels[3] != labels[0] and "repeat of a" in labels[3]
    assert [seed for _, seed, _ in out] == [0, 1, 2, 0]
    assert [label for label, _, _ in _group_seeds([a, b])] == ["grpo", "grpo"]    # one variant: the plain name


def test_cell_locks_make_other_processes_skip_held_cells(tmp_path, capsys):
    """A cell whose lock another process holds is skipped (not trained, not waited for); the
    lock is an flock, so it is free again the moment its holder closes it (or dies)."""
    from groupo.eval.study import run_study
    from groupo.eval.workers import claim

    st = load_study(_write(tmp_path, recipes=["grpo"], seeds=[0]))
    run_dir = tmp_path / "out" / "runs" / st.cells[0].key
    with claim(run_dir) as mine:
        assert mine
        with claim(run_dir) as again:            # a second open of the lock file: held, so False
            assert not again
        run_study(st, tmp_path / "out")
        assert f"pid {__import__('os').getpid()} is training it, skipped" in capsys.readouterr().out
        assert not (run_dir / "eval.json").exists()
    with claim(run_dir) as mine:                 # released with its holder
        assert mine


@pytest.mark.slow
def test_study_jobs_share_the_cells_and_match_one_process(tmp_path, capsys):
    """--jobs 2: two processes train the four cells (each cell once, the seeds' warm starts built
    once) and every cell ends with the accuracy one process gives it; then one summary."""
    f = _write(tmp_path, recipes=["grpo", "mc_grpo"], group_sizes=[4])
    assert main(["study", str(f), "--out", str(tmp_path / "one")]) == 0
    assert main(["study", str(f), "--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    for key in ("grpo_G4/seed_0", "grpo_G4/seed_1", "mc_grpo_G4/seed_0", "mc_grpo_G4/seed_1"):
        a, b = (json.loads((tmp_path / d / "runs" / key / "eval.json").read_text()) for d in ("one", "two"))
        assert a["after"]["accuracy"] == b["after"]["accuracy"] and a["before"] == b["before"], key
        rows = (tmp_path / "two" / "runs" / key / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["step"] for r in rows] == [1, 2]            # trained once
    assert (tmp_path / "two" / "summary.md").exists() and (tmp_path / "two" / "report.html").exists()
