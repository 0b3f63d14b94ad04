"""Observability: the completions log, the zero-variance figure (same signal as the filter), the
warning for steps that train no row, and the report_to tracking services (wandb in offline mode
when installed; trackio and mlflow through recording stand-ins)."""
import importlib.machinery
import io
import json
import subprocess
import sys
import textwrap
import types

import pytest
import torch
from rich.console import Console

from groupo.config import ConfigError, load_config
from groupo.registry import build
from groupo.train import loop, tracking
from groupo.train.collect import _metrics
from groupo.train.loop import train
from groupo.types import Batch


def _cfg(tiny_dir, tmp_path, *over):
    f = tmp_path / "varied.py"    # varies inside groups even for a random model (completion length mod 3)
    f.write_text("def reward(completions, **kw):\n    return [float(len(c) % 3) for c in completions]\n")
    return load_config("demo", [f"model.path={tiny_dir}", "model.tiny=false", "model.threads=1",
                                "generation.group_size=4", "generation.prompts_per_step=3",
                                "generation.max_new_tokens=5", "generation.temperature=2.0", "train.steps=3",
                                "warmstart.steps=0", "task.eval_size=8", "eval.n=8", "eval.before=false",
                                "eval.after=false", "log.tensorboard=false", "checkpoint.every=0",
                                f"rewards=[{{name: python, path: {f}}}, {{name: format, weight: 0.1}}]", *over])


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _train(cfg, run_dir, **kw):
    out = io.StringIO()
    train(cfg, run_dir, console=Console(file=out, width=300), **kw)
    return out.getvalue()


# ------------------------------------------------------------------ completions.jsonl

def test_completions_log_rows_advantages_and_resume(tiny_dir, tmp_path):
    """6 rows per logged step (group 0 whole, then 2 rows of group 1), texts cut, per-function
    rewards and their weighted total, GRPO advantages of the logged group; a run resumed at step
    2 keeps steps 1-2 of the file and appends its own (no step twice)."""
    over = ["log.completions_per_step=6", "log.completions_max_chars=12", "log.completions_every=2",
            "train.steps=4", "checkpoint.every=2", "checkpoint.keep=5"]
    run = tmp_path / "run"
    _train(_cfg(tiny_dir, tmp_path, *over), run)
    rows = _jsonl(run / "completions.jsonl")
    assert [r["step"] for r in rows] == [1] * 6 + [2] * 6 + [4] * 6           # step 1 and every 2nd
    for r in rows:
        assert set(r) == {"step", "group", "prompt", "completion", "rewards", "reward", "advantage", "trained"}
        assert len(r["prompt"]) <= 12 and len(r["completion"]) <= 12
        assert set(r["rewards"]) == {"python", "format"}
        assert r["reward"] == pytest.approx(r["rewards"]["python"] + 0.1 * r["rewards"]["format"], abs=1e-6)
        assert r["trained"] and r["advantage"] is not None                   # no filter: every row trains
    assert any(r["prompt"].startswith("…") for r in rows)                    # prompts longer than 12: end kept
    for step in (1, 2, 4):
        step_rows = [r for r in rows if r["step"] == step]
        assert [r["group"] for r in step_rows] == [0, 0, 0, 0, 1, 1]
        g0 = step_rows[:4]                                                     # a whole group: GRPO advantages
        mean = sum(r["reward"] for r in g0) / 4
        assert sum(r["advantage"] for r in g0) == pytest.approx(0.0, abs=1e-5)
        assert all((r["advantage"] > 0) == (r["reward"] > mean + 1e-6) for r in g0)
    import shutil

    shutil.rmtree(run / "checkpoints/step_4")
    _train(_cfg(tiny_dir, tmp_path, *over), run, resume=True)
    again = _jsonl(run / "completions.jsonl")
    assert [r["step"] for r in again] == [r["step"] for r in rows]
    assert again[:12] == rows[:12]


def test_completions_off_writes_no_file(tiny_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "completions.jsonl").write_text('{"step": 9}\n')                 # a new run starts it anew
    _train(_cfg(tiny_dir, tmp_path, "log.completions_every=0", "train.steps=1"), run)
    assert not (run / "completions.jsonl").exists()


# ------------------------------------------------------------------ zero_var/frac and no-signal steps

def test_zero_var_frac_uses_the_filters_signal():
    """Rewards vary in every group, correctness only in groups 1 and 3: with ``metric: correct``
    the filter drops groups 0 and 2, and zero_var/frac says exactly that (it said 0 before)."""
    group = torch.arange(4).repeat_interleave(3)
    rewards = torch.tensor([0., 1, 2, 1, 2, 3, 0, 5, 1, 2, 2, 0])
    correct = torch.tensor([0., 0, 0, 1, 0, 1, 1, 1, 1, 0, 1, 0])
    b = Batch(rewards=rewards, group=group, correct=correct, lengths=torch.ones(12, dtype=torch.long),
              truncated=torch.zeros(12, dtype=torch.bool))
    comp = rewards[:, None]
    filt = build("filter", "zero_variance", {"metric": "correct"})
    dropped = torch.unique(group[~filt(b)]).numel() / 4
    assert dropped == 0.5
    assert _metrics(b, rewards, ["r"], comp, filt)["zero_var/frac"] == dropped
    assert _metrics(b, rewards, ["r"], comp, build("filter", "zero_variance", {}))["zero_var/frac"] == 0.0
    b.rewards = rewards.clone()
    b.rewards[:3] = 1.0                               # group 0's rewards equal: no filter -> equal rewards
    assert _metrics(b, b.rewards, ["r"], b.rewards[:, None], build("filter", "none", {}))["zero_var/frac"] == 0.25


def test_dapo_like_step_that_trains_nothing_is_reported(tiny_dir, tmp_path):
    """The DAPO case: the filter decides on ``correct`` (always 0 for this model), the rewards
    vary. Every group is dropped, zero_var/frac is 1.0 (not the reward-based figure), the step
    says why in a metric and on the console, once per log.warn_every steps."""
    f = tmp_path / "never.py"
    f.write_text("def reward(completions, **kw):\n    return [0.0 for c in completions]\n")
    cfg = _cfg(tiny_dir, tmp_path, "filter.name=zero_variance", "filter.metric=correct", "train.steps=4",
               "log.warn_every=3", "log.completions_per_step=100",
               f"rewards+=[{{name: python, label: correct, path: {f}, weight: 0.0}}]")
    out = _train(cfg, tmp_path / "run")
    m = _jsonl(tmp_path / "run/metrics.jsonl")
    assert all(r["zero_var/frac"] == 1.0 and r["rows/trained"] == 0 and r["rows/no_signal"] == 1
               and r["rows/no_signal_reason"] == "filter" for r in m)
    rows = _jsonl(tmp_path / "run/completions.jsonl")
    assert len(rows) == 4 * 12 and not any(r["trained"] or r["advantage"] is not None for r in rows)
    by_group = {}
    for r in rows:
        by_group.setdefault((r["step"], r["group"]), set()).add(r["reward"])
    assert any(len(v) > 1 for v in by_group.values())     # rewards varied: the old figure was below 1
    warnings = [line for line in out.splitlines() if "trained no row" in line]
    assert len(warnings) == 2 and warnings[0].startswith("warning: step 1 trained no row: the filter (zero_variance)")
    assert "zero-variance groups 100%" in warnings[0]
    assert warnings[1].startswith("warning: step 4 ") and warnings[1].endswith("(2 more such steps since step 1)")


def test_no_signal_reasons():
    from groupo.train.completions import StepRows
    from groupo.train.no_signal import no_signal

    def rows(rewards, group, kept, adv=None):
        r = StepRows(["p"] * len(rewards), ["c"] * len(rewards), torch.tensor(group), torch.tensor(rewards)[:, None],
                     torch.tensor(rewards), torch.tensor(kept))
        if adv is not None:
            r.add_scores(torch.tensor(adv), torch.ones(len(adv), dtype=torch.bool))
        return r

    nan = float("nan")
    assert no_signal(rows([nan, nan], [0, 0], [False, False]), 1.0)["rows/no_signal_reason"] == "no_reward"
    assert no_signal(rows([0., 1], [0, 0], [False, False]), 1.0)["rows/no_signal_reason"] == "filter"
    assert no_signal(rows([0., 1], [0, 1], [True, True], [0., 0]), 1.0)["rows/no_signal_reason"] == "group_size_1"
    assert no_signal(rows([1., 1], [0, 0], [True, True], [0., 0]), 0.0)["rows/no_signal_reason"] == "temperature_0"
    assert no_signal(rows([1., 1], [0, 0], [True, True], [0., 0]), 1.0)["rows/no_signal_reason"] == "zero_variance"
    assert no_signal(rows([0., 1], [0, 0], [True, True], [-1., 1]), 1.0) == {"rows/no_signal": 0}


@pytest.mark.parametrize("over,expected", [
    (["generation.group_size=1"], "generation.group_size=1"),
    (["generation.temperature=0"], "generation.temperature=0"),
    (["generation.group_size=1", "advantage.name=vgpo"], None),      # not centred on the group: no warning
    ([], None),
])
def test_start_warning_for_settings_that_zero_every_advantage(tiny_dir, tmp_path, over, expected):
    from groupo.train.no_signal import start_warning

    line = start_warning(_cfg(tiny_dir, tmp_path, *over))
    assert (line is None) if expected is None else (expected in line and "no row will train" in line)


def test_group_size_one_warns_at_start_and_each_step(tiny_dir, tmp_path):
    out = _train(_cfg(tiny_dir, tmp_path, "generation.group_size=1", "train.steps=2", "log.warn_every=1"),
                 tmp_path / "run")
    lines = out.splitlines()
    assert sum("no row will train" in line for line in lines) == 1
    assert sum("trained no row: every group has one completion" in line for line in lines) == 2
    assert [r["rows/no_signal_reason"] for r in _jsonl(tmp_path / "run/metrics.jsonl")] == ["group_size_1"] * 2


# ------------------------------------------------------------------ log.report_to

def _fake_services(monkeypatch):
    """Recording stand-ins for the trackio and mlflow modules: calls as (function, args)."""
    calls = []
    for name, funcs in (("trackio", ("init", "log", "finish")),
                        ("mlflow", ("set_experiment", "start_run", "log_params", "log_metrics", "end_run"))):
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        for fn in funcs:
            setattr(mod, fn, lambda *a, _f=f"{name}.{fn}", **k: calls.append((_f, a, k)))
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def test_trackio_and_mlflow_get_config_numeric_metrics_and_finish(tiny_dir, tmp_path, monkeypatch):
    calls = _fake_services(monkeypatch)
    cfg = _cfg(tiny_dir, tmp_path, "log.report_to=[trackio, tensorboard, mlflow, trackio]", "train.steps=2",
               "name=obs-run", "log.project=proj")                  # _cfg has log.tensorboard=false
    _train(cfg, tmp_path / "run")
    assert list((tmp_path / "run/tb").glob("events.out.tfevents.*"))  # report_to's tensorboard turns it on
    names = [c[0] for c in calls]
    assert names == ["trackio.init", "mlflow.set_experiment", "mlflow.start_run", "mlflow.log_params",
                     "trackio.log", "mlflow.log_metrics", "trackio.log", "mlflow.log_metrics",
                     "trackio.finish", "mlflow.end_run"]
    init = calls[0][2]
    assert init["project"] == "proj" and init["name"] == "obs-run" and init["config"] == cfg.raw
    assert calls[2][2] == {"run_name": "obs-run"} and calls[1][1] == ("proj",)
    assert calls[3][1][0]["train.steps"] == "2"
    logged = [c for c in calls if c[0] in ("trackio.log", "mlflow.log_metrics")]
    assert [c[2]["step"] for c in logged] == [1, 1, 2, 2]
    for c in logged:
        assert "reward/mean" in c[1][0] and "lr" in c[1][0]
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in c[1][0].values())
    assert calls[-1][2] == {"status": "FINISHED"}


def test_ctrl_c_finishes_the_services(tiny_dir, tmp_path, monkeypatch):
    calls = _fake_services(monkeypatch)
    real = loop.train_step

    def step(run, i):
        if i == 2:
            raise KeyboardInterrupt
        return real(run, i)

    monkeypatch.setattr(loop, "train_step", step)
    with pytest.raises(KeyboardInterrupt):
        _train(_cfg(tiny_dir, tmp_path, "log.report_to=[mlflow, trackio]"), tmp_path / "run")
    assert [c[0] for c in calls][-2:] == ["mlflow.end_run", "trackio.finish"]
    assert calls[-2][2] == {"status": "KILLED"}
    assert [c[0] for c in calls].count("mlflow.end_run") == 1


def test_a_service_that_cannot_start_is_one_line_and_the_others_finish(tmp_path, monkeypatch):
    calls = _fake_services(monkeypatch)

    def refuse(*a, **k):
        raise RuntimeError("no tracking server at http://x\n(a long explanation)")

    monkeypatch.setattr(sys.modules["mlflow"], "start_run", refuse)
    with pytest.raises(ConfigError, match=r"^log.report_to: mlflow could not start its run: no tracking server at http://x$"):
        tracking.start(["trackio", "mlflow"], "p", "n", {}, tmp_path)
    assert [c[0] for c in calls] == ["trackio.init", "mlflow.set_experiment", "trackio.finish"]


def test_missing_service_is_one_line_before_the_model_loads(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)          # import wandb fails, find_spec finds nothing

    def no_model(*a, **k):
        raise AssertionError("the model must not load")

    monkeypatch.setattr("groupo.train.setup.load_model", no_model)
    with pytest.raises(ConfigError, match=r"^log.report_to: wandb not installed; pip install 'groupo\[wandb\]'"):
        train(_cfg(tiny_dir, tmp_path, "log.report_to=[wandb]"), tmp_path / "run")
    with pytest.raises(ConfigError, match="wandb not installed"):
        tracking.start(["wandb"], "p", "n", {}, tmp_path)    # the import itself, past the check
    from groupo.cli import main

    assert main(["train", "demo", f"model.path={tiny_dir}", "log.report_to=[wandb]", "--out", str(tmp_path / "c")]) == 2


def test_report_to_values_are_checked(tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"log.report_to\[0\]: value 'comet' is not one of"):
        _cfg(tiny_dir, tmp_path, "log.report_to=[comet]")
    with pytest.raises(ConfigError, match="log.completions_per_step"):
        _cfg(tiny_dir, tmp_path, "log.completions_per_step=0")


def test_wandb_offline(tiny_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    seen = {}
    real_close = tracking.Wandb.close

    def close(self, interrupted=False):
        seen.update(name=self.run.name, config=dict(self.run.config), summary=dict(self.run.summary))
        real_close(self, interrupted)

    monkeypatch.setattr(tracking.Wandb, "close", close)
    _train(_cfg(tiny_dir, tmp_path, "log.report_to=[wandb]", "train.steps=2", "name=obs-wandb"), tmp_path / "run")
    assert seen["name"] == "obs-wandb" and seen["config"]["train"]["steps"] == 2
    assert seen["summary"]["_step"] == 2 and "reward/mean" in seen["summary"]
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.mark.slow
def test_no_tracking_package_is_imported_without_report_to(tiny_dir, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from groupo.config import load_config
        from groupo.train.loop import train
        cfg = load_config("demo", ["model.path={tiny_dir}", "model.tiny=false", "model.threads=1",
                                   "generation.group_size=2", "generation.prompts_per_step=2", "train.steps=1",
                                   "generation.max_new_tokens=3", "warmstart.steps=0", "task.eval_size=4",
                                   "eval.before=false", "eval.after=false", "checkpoint.every=0"])
        train(cfg, {str(tmp_path / "run")!r})
        print(sorted(m for m in ("wandb", "trackio", "mlflow") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "run/metrics.jsonl").exists()


def test_mlflow_for_real(tiny_dir, tmp_path, monkeypatch):
    """With mlflow installed: a local file store gets the run, its parameters and each step's
    metrics at their steps (key characters mlflow refuses replaced)."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    _train(_cfg(tiny_dir, tmp_path, "log.report_to=[mlflow]", "train.steps=2", "name=obs-mlflow",
                "log.project=obs"), tmp_path / "run")
    client = mlflow.tracking.MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("obs").experiment_id])[0]
    assert run.info.run_name == "obs-mlflow" and run.info.status == "FINISHED"
    assert run.data.params["train.steps"] == "2" and run.data.params["generation.group_size"] == "4"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "reward/mean")] == [1, 2]
