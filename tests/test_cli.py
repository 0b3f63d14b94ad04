"""The CLI as a user calls it (subprocesses): train, resume, eval, list, errors."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def groupo(*args, cwd=None, check=True):
    r = subprocess.run([sys.executable, "-m", "groupo", *map(str, args)], capture_output=True, text=True,
                       env=ENV, cwd=cwd, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_dir):
    d = tmp_path_factory.mktemp("cli")
    p = d / "small.yaml"
    p.write_text(yaml.safe_dump({
        "extends": "demo", "name": "small",
        "model": {"tiny": False, "path": str(tiny_dir), "threads": 1},
        "generation": {"group_size": 4, "prompts_per_step": 4, "max_new_tokens": 6},
        # every row trains (also advantage-0 rows), so the loss-side metrics below are logged
        "train": {"steps": 3, "lr": 1e-3, "micro_batches": 2, "skip_zero_advantage": False},
        "warmstart": {"steps": 0},
        "task": {"name": "lego", "eval_size": 16},
        "eval": {"n": 16, "batch_size": 16},
        "checkpoint": {"every": 2},
    }))
    return p


def test_train_three_steps_writes_the_run_directory(recipe, tmp_path):
    out = tmp_path / "run"
    r = groupo("train", recipe, "--out", out)
    assert "held-out accuracy" in r.stdout
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    for key in ("reward/mean", "reward/correct/mean", "reward/format/mean", "acc/mean", "adv/std",
                "zero_var/frac", "clip/frac", "entropy/mean", "len/mean", "time/step", "tokens_per_s", "loss"):
        assert key in rows[0], key
    ev = json.loads((out / "eval.json").read_text())
    assert 0 <= ev["before"]["accuracy"] <= 1 and 0 <= ev["after"]["accuracy"] <= 1
    assert ev["after"]["n"] == 16 and ev["after"]["per_group"]
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["steps"] == 3
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_2", "step_3"]
    assert (out / "checkpoints/step_3/model.safetensors").exists()
    assert (out / "report.html").exists() and list((out / "plots").glob("*.png"))
    assert list((out / "tb").iterdir())


def test_resume_gives_the_same_weights_and_metrics(recipe, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["train.steps=4", "checkpoint.every=2", "checkpoint.keep=5", "eval.before=false", "eval.after=false"]
    groupo("train", recipe, "--out", a, *common)
    shutil.copytree(a, b)        # the same run (training is deterministic: tests/test_faults.py trains it twice)
    # simulate a crash right after the step-2 checkpoint: lose step 3-4 state and metrics
    shutil.rmtree(b / "checkpoints/step_4")
    lines = (b / "metrics.jsonl").read_text().splitlines()
    (b / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n")   # steps 1-3, step 3 written after the ckpt
    r = groupo("train", recipe, "--out", b, "--resume", *common)
    assert "resumed from" in r.stdout
    wa = load_file(a / "checkpoints/step_4/model.safetensors")
    wb = load_file(b / "checkpoints/step_4/model.safetensors")
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    ma = [json.loads(l) for l in (a / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in (b / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in mb] == [1, 2, 3, 4]
    drop = lambda m: {k: v for k, v in m.items() if not k.startswith(("time/", "tokens_per_s", "mem/"))}  # noqa: E731
    assert [drop(m) for m in ma] == [drop(m) for m in mb]


@pytest.mark.slow
def test_eval_json_with_overrides(recipe, tmp_path):
    out = tmp_path / "run"
    groupo("train", recipe, "--out", out, "train.steps=1", "eval.before=false")
    r = groupo("eval", out, "--json", "--n", "8")
    res = json.loads(r.stdout)
    assert res["n"] == 8 and 0 <= res["accuracy"] <= 1 and res["per_group"]
    r2 = groupo("eval", out / "checkpoints/step_1", "task.seed=999", "--json", "--n", "8")
    assert json.loads(r2.stdout)["n"] == 8


@pytest.mark.parametrize("args,needle", [
    (["train", "grpo", "trian.lr=1"], "unknown key 'trian' (did you mean 'train'?)"),
    (["train", "grpo", "model.path=/nonexistent/model"], "model directory '/nonexistent/model' does not exist"),
    (["train", "nofile.yaml"], "recipe 'nofile.yaml' not found"),
    (["eval", "/nonexistent/run"], "does not exist"),
    (["list", "advantag"], "did you mean 'advantage'"),
])
def test_user_errors_exit_2_with_one_line(args, needle, tmp_path, capsys, monkeypatch):
    """In this process (main() is what the entry point runs); the first case also through the
    real entry point in a subprocess."""
    from groupo.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    if args[1:2] == ["grpo"] and args[2].startswith("trian"):
        r = groupo(*args, cwd=tmp_path, check=False)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == err.strip().splitlines(), r.stderr


def test_model_dir_without_tokenizer(tmp_path, tiny_dir, capsys, monkeypatch):
    bad = tmp_path / "m"
    shutil.copytree(tiny_dir, bad)
    for f in bad.iterdir():
        if "token" in f.name or f.name == "chat_template.jinja":
            f.unlink()
    from groupo.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "grpo", f"model.path={bad}"]) == 2
    err = capsys.readouterr().err
    assert "no usable tokenizer" in err and len(err.strip().splitlines()) == 1, err


def test_list_shows_components_and_defaults(capsys):
    from groupo.cli import main

    assert main(["list", "advantage"]) == 0
    out = capsys.readouterr().out
    assert "grpo" in out and "rloo" in out and "eps" in out and "0.0001" in out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ppo_clip" in out and "recipes:" in out and "demo" in out
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0 and "usage" in capsys.readouterr().out


def test_ctrl_c_saves_last_finished_step_and_resume_completes(recipe, tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "groupo", "train", str(recipe), "--out", str(out), "train.steps=100000",
           "checkpoint.every=0", "eval.before=false", "eval.after=false"]
    # a job started in the background by a non-interactive shell inherits SIGINT ignored; a user's
    # terminal does not: give the child the default disposition, as Ctrl-C in a terminal would find it
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr
    logged = [json.loads(l)["step"] for l in metrics.read_text().splitlines()]
    saved = sorted(int(d.name.split("_")[1]) for d in (out / "checkpoints").iterdir() if d.name.startswith("step_"))
    assert saved == [logged[-1]], (saved, logged)
    assert "interrupted; saved step" in stdout
    r = groupo("train", recipe, "--out", out, "--resume", f"train.steps={logged[-1] + 2}",
               "checkpoint.every=0", "eval.before=false", "eval.after=false")
    assert f"(step {logged[-1]})" in r.stdout
    steps = [json.loads(l)["step"] for l in metrics.read_text().splitlines()]
    assert steps == list(range(1, logged[-1] + 3))
