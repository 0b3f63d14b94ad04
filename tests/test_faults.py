"""Fault injection (docs/reliability.md): kill -9 during generation, right after an
optimizer update and while a checkpoint is written; each time --resume continues from the
last complete checkpoint and ends with the same weights and metrics as an uninterrupted
run. NaN gradients / losses are skipped with a metric and a warning, or stop the run with
one line after train.max_nonfinite; prompts longer than the context are refused up front."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from groupo.train import checkpoint as ckpt


def _run(out, tiny_dir, reward, *extra, fault=None, sigint_default=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("GROUPO_FAULT", None)
    if fault:
        env["GROUPO_FAULT"] = fault
    args = [sys.executable, "-m", "groupo", "train", "demo", "--out", str(out), f"model.path={tiny_dir}",
            "model.tiny=false", "model.threads=1", "generation.group_size=4", "generation.prompts_per_step=3",
            "generation.max_new_tokens=5", "generation.temperature=1.5", "train.steps=4", "train.lr=1e-3",
            "warmstart.steps=0", "task.eval_size=8", "eval.n=8", "eval.before=false", "eval.after=false",
            "log.tensorboard=false", "checkpoint.every=1", "checkpoint.keep=10",
            f"rewards=[{{name: python, path: {reward}}}]", *extra]
    # a child of a background job inherits SIGINT ignored; a terminal's Ctrl-C finds the default
    pre = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if sigint_default else None
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, preexec_fn=pre)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_dir):
    d = tmp_path_factory.mktemp("faults")
    reward = d / "varied.py"
    reward.write_text("def reward(completions, **kw):\n    return [float(len(c) % 3) for c in completions]\n")
    r = _run(d / "ref", tiny_dir, reward)
    assert r.returncode == 0, r.stderr
    return d, reward


def _metrics(run):
    drop = ("time/", "tokens_per_s", "mem/")
    return [{k: v for k, v in json.loads(l).items() if not k.startswith(drop)}
            for l in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fault, resumes_from", [("gen@3", 2), pytest.param("opt@3", 2, marks=pytest.mark.slow),
                                                 pytest.param("ckpt@2", 1, marks=pytest.mark.slow)])
def test_kill_9_then_resume_matches_uninterrupted(reference, tiny_dir, fault, resumes_from):
    d, reward = reference
    out = d / fault.replace("@", "_")
    r = _run(out, tiny_dir, reward, fault=fault)
    assert r.returncode == -signal.SIGKILL
    assert ckpt.latest(out)[0] == resumes_from             # the half-written checkpoint is not listed
    r = _run(out, tiny_dir, reward, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"resumed from {out}/checkpoints/step_{resumes_from}" in r.stdout.replace("\n", "")
    wa = load_file(d / "ref/checkpoints/step_4/model.safetensors")
    wb = load_file(out / "checkpoints/step_4/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _metrics(d / "ref") == _metrics(out)
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".tmp")]   # stale temp cleaned


def _bare_resume(out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("GROUPO_FAULT", None)
    return subprocess.run([sys.executable, "-m", "groupo", "train", "--out", str(out), "--resume", *extra],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_resume_with_no_arguments_is_the_same_run_and_refuses_drift(reference, tiny_dir, tmp_path):
    """`groupo train --out RUN --resume` alone continues with the run's own config.yaml (task,
    rewards, batch: everything) and ends bit-identical to the uninterrupted run; a changed setting
    is one line, exit 2, and changes nothing; extending train.steps is allowed and recorded."""
    d, reward = reference
    out = d / "bare"
    assert _run(out, tiny_dir, reward, fault="gen@3").returncode == -signal.SIGKILL
    r = _bare_resume(out, "train.lr=5e-4")                   # drift: refused before anything runs
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "'train.lr' is 0.0005 here but 0.001 in" in r.stderr and ckpt.latest(out)[0] == 2
    r = _bare_resume(out)
    assert r.returncode == 0, r.stderr
    wa = load_file(d / "ref/checkpoints/step_4/model.safetensors")
    wb = load_file(out / "checkpoints/step_4/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and _metrics(d / "ref") == _metrics(out)
    r = _bare_resume(out, "train.steps=5", "log.line_every=1")       # safe: more steps, other logging
    assert r.returncode == 0, r.stderr
    assert [m["step"] for m in _metrics(out)] == [1, 2, 3, 4, 5]
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["start", "resume", "resume"]
    assert history[-1]["changes"]["train.steps"] == {"from": 4, "to": 5}
    # the original command again (same recipe and overrides) is not drift either
    assert _run(out, tiny_dir, reward, "train.steps=5", "--resume").returncode == 0


@pytest.mark.slow
def test_ctrl_c_right_after_an_optimizer_update_still_saves_that_step(reference, tiny_dir):
    """SIGINT just after step 3's optimizer update (weights mid-step): the interrupt is held until
    step 3 is logged, step 3 is saved (checkpoint.every=0: no other checkpoint), and --resume ends
    bit-identical to the uninterrupted run."""
    d, reward = reference
    out = d / "int_opt"
    r = _run(out, tiny_dir, reward, "checkpoint.every=0", fault="int_opt@3", sigint_default=True)
    assert r.returncode == 130, r.stderr
    assert "interrupt received" in r.stderr and "Traceback" not in r.stderr
    assert ckpt.latest(out)[0] == 3 and len(_metrics(out)) == 3
    r = _run(out, tiny_dir, reward, "checkpoint.every=0", "--resume")
    assert r.returncode == 0, r.stderr
    wa = load_file(d / "ref/checkpoints/step_4/model.safetensors")
    wb = load_file(out / "checkpoints/step_4/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _metrics(d / "ref") == _metrics(out)


def test_nan_gradient_step_is_skipped_with_metric_and_warning(reference, tiny_dir):
    d, reward = reference
    out = d / "nan_grad"
    r = _run(out, tiny_dir, reward, fault="nan_grad@2")
    assert r.returncode == 0, r.stderr
    rows = _metrics(out)
    assert rows[1].get("skipped") == 1 and "skipped" not in rows[0] and "skipped" not in rows[2]
    assert "update(s) skipped for non-finite" in r.stdout
    w1 = load_file(out / "checkpoints/step_1/model.safetensors")
    w2 = load_file(out / "checkpoints/step_2/model.safetensors")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)            # the bad update was never applied
    assert all(torch.isfinite(v).all() for v in load_file(out / "checkpoints/step_4/model.safetensors").values())


@pytest.mark.slow
def test_repeated_nan_loss_stops_with_one_line(reference, tiny_dir):
    d, reward = reference
    out = d / "nan_loss"
    r = _run(out, tiny_dir, reward, "train.max_nonfinite=1", fault="nan_loss@*")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "non-finite loss" in r.stderr and "Traceback" not in r.stderr


def test_infinite_rewards_are_skipped_rows(reference, tiny_dir):
    d, _ = reference
    bad = d / "inf.py"
    bad.write_text("def reward(completions, **kw):\n    return [float('inf') if i % 2 else 1.0 "
                   "for i, c in enumerate(completions)]\n")
    out = d / "inf"
    r = _run(out, tiny_dir, bad, "train.steps=1")
    assert r.returncode == 0, r.stderr
    (row,) = _metrics(out)
    assert row["reward/skipped"] == 6 and row["rows/trained"] == 6


def test_prompt_longer_than_context_is_refused_up_front(reference, tiny_dir, tmp_path):
    d, reward = reference
    r = _run(tmp_path / "long", tiny_dir, reward, "generation.max_new_tokens=1100")
    assert r.returncode == 2 and "exceeds the model's context of 1024 tokens" in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "long" / "checkpoints").exists()


def test_reward_function_contract_violation_is_one_line(reference, tiny_dir):
    d, _ = reference
    bad = d / "strings.py"
    bad.write_text("def reward(completions, **kw):\n    return ['high'] * len(completions)\n")
    r = _run(d / "strings", tiny_dir, bad, "train.steps=1")
    assert r.returncode == 2 and "non-numeric value 'high' at index 0" in r.stderr
    assert r.stderr.strip().count("\n") == 0
