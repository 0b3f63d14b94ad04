"""The training loop in-process: num_iterations > 1, KL to a reference, zero-variance
refill, micro-batches, non-finite guards, checkpoint atomicity."""
import json
import math
import os

import pytest
import torch

from groupo.config import load_config
from groupo.train import checkpoint as ckpt
from groupo.train.loop import train


def _cfg(tiny_dir, *over):
    return load_config("demo", [f"model.path={tiny_dir}", "model.tiny=false", "model.threads=1",
                                "generation.group_size=4", "generation.prompts_per_step=3",
                                "generation.max_new_tokens=5", "train.steps=2", "warmstart.steps=0",
                                "task.eval_size=8", "eval.n=8", "eval.before=false", "eval.after=false",
                                "log.tensorboard=false", "checkpoint.every=0", *over])


def _metrics(run_dir):
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _varied_reward(tmp_path):
    """A reward with within-group variance even for a random model (completion length mod 3)."""
    f = tmp_path / "varied.py"
    f.write_text("def reward(completions, **kw):\n    return [float(len(c) % 3) for c in completions]\n")
    return f"rewards=[{{name: python, path: {f}}}]"


def test_num_iterations_and_kl_reference(tiny_dir, tmp_path):
    cfg = _cfg(tiny_dir, _varied_reward(tmp_path), "train.num_iterations=2", "kl.name=k3", "kl.coef=0.1", "train.lr=1e-2",
               "train.micro_batches=2", "advantage.name=dr_grpo", "aggregation.name=seq_sum_const")
    train(cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    # the reference is the initial model, so step 1's KL (first iteration) is 0 and step 2's is positive
    assert rows[0]["kl/mean"] == pytest.approx(0.0, abs=1e-6)
    assert rows[1]["kl/mean"] > 0
    # the second update of each step is logged too: there the policy has moved (from pi_old: the
    # ratio is no longer 1; from the reference: KL > 0 already at step 1)
    assert rows[0]["last_iter/kl/mean"] > 0 and rows[0]["last_iter/ratio/mean"] != rows[0]["ratio/mean"]
    assert rows[0]["ratio/mean"] == pytest.approx(1.0, abs=1e-6) and rows[0]["last_iter/grad_norm"] > 0
    w0 = torch.load(tmp_path / "run/checkpoints/step_2/state.pt", weights_only=False)["scheduler"]
    assert w0["last_epoch"] == 4          # 2 steps x 2 iterations = 4 optimizer updates


def test_zero_variance_refill_keeps_only_informative_groups(tiny_dir, tmp_path):
    cfg = _cfg(tiny_dir, _varied_reward(tmp_path), "filter.name=zero_variance", "filter.refill=true",
               "filter.max_rounds=2", "generation.temperature=2.0")
    train(cfg, tmp_path / "run")
    for r in _metrics(tmp_path / "run"):
        assert 1 <= r["filter/rounds"] <= 3
        assert r["filter/kept_groups"] <= 3
        assert r["rows/trained"] == 4 * r["filter/kept_groups"]


def test_nonfinite_reward_rows_are_not_trained(tiny_dir, tmp_path):
    reward_file = tmp_path / "r.py"
    reward_file.write_text("def reward(completions, **kw):\n    return [None] * len(completions)\n")
    cfg = _cfg(tiny_dir, "rewards=[{name: python, path: %s}]" % reward_file)
    train(cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert all(r["rows/trained"] == 0 and r["reward/skipped"] == 12 for r in rows)


def test_checkpoint_save_failure_keeps_previous(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    ckpt.save(tmp_path, 1, model, tok, {"x": 1})
    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(ckpt.CheckpointError, match="No space left on device.*previous checkpoints are intact"):
        ckpt.save(tmp_path, 2, model, tok, {"x": 2})
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [1]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["step_1"]     # no partial directory left
    assert ckpt.load_state(ckpt.latest(tmp_path)[1]) == {"x": 1}


def test_checkpoint_keep_prunes_oldest(tiny, tmp_path):
    model, tok = tiny
    for s in (1, 2, 3):
        ckpt.save(tmp_path, s, model, tok, {"s": s}, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]


@pytest.mark.parametrize("recipe,extra", [
    ("disco", []),                       # full-batch objective, KL trust region to pi_old
    ("unlikely", []),                    # shaping that needs seq_logp under pi_old
    ("mc_grpo", ["generation.group_size=5"]),   # pivot rows excluded through keep
    ("dgpo", []),                        # question weights + valid-token mean
    ("gdpo", []),                        # several reward components
    ("mc_grpo", ["generation.group_size=5", "objective.eps_low=0.16", "objective.eps_high=0.24",
                 "weighting.name=dgpo_dqw"]),  # composition: MC-GRPO + NGRPO's clip + DGPO's weights
    ("dapo", ["shaping.cache=2"]),
    ("maxmin", ["advantage.mode=soft"]),   # hard mode picks format (always 0 here): no signal, by design
    ("prompt_aug", []),
])
def test_variant_recipes_train_with_signal(recipe, extra, tiny_dir, tmp_path):
    """Recipes on the loop with a reward that varies inside groups, so every path does work."""
    f = tmp_path / "varied.py"
    f.write_text("def reward(completions, **kw):\n    return [float(len(c) % 2) for c in completions]\n")
    cfg = load_config(recipe, [f"model.path={tiny_dir}", "model.threads=1", "generation.group_size=4",
                               "generation.prompts_per_step=3", "generation.max_new_tokens=5", "train.steps=2",
                               "task.name=lego", "task.eval_size=8", "eval.before=false", "eval.after=false",
                               "log.tensorboard=false", "checkpoint.every=0", "generation.temperature=2.0",
                               f"rewards=[{{name: python, label: correct, path: {f}}}, {{name: format, weight: 0.1}}]",
                               *extra])
    train(cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert len(rows) == 2
    trained = [r for r in rows if r["rows/trained"] > 0]
    assert trained and all(math.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in trained)


def test_stateful_sampler_and_allocation_resume_exactly(tiny_dir, tmp_path):
    """prompt_gdro + rollout_gdro state is checkpointed: a run resumed at step 2 ends with the
    same weights and metrics as an uninterrupted one (ragged groups flow through the loop)."""
    import shutil

    from safetensors.torch import load_file

    over = [_varied_reward(tmp_path), "sampler.name=prompt_gdro", "sampler.pool_size=50",
            "allocation.name=rollout_gdro", "allocation.n_min=2", "allocation.n_max=6", "train.steps=4",
            "checkpoint.every=2", "checkpoint.keep=5", "generation.temperature=2.0"]
    train(_cfg(tiny_dir, *over), tmp_path / "a")
    train(_cfg(tiny_dir, *over), tmp_path / "b")
    shutil.rmtree(tmp_path / "b/checkpoints/step_4")
    state = torch.load(tmp_path / "b/checkpoints/step_2/state.pt", weights_only=False)
    assert state["sampler"] and state["allocation"]
    train(_cfg(tiny_dir, *over), tmp_path / "b", resume=True)
    wa = load_file(tmp_path / "a/checkpoints/step_4/model.safetensors")
    wb = load_file(tmp_path / "b/checkpoints/step_4/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = _metrics(tmp_path / "a")
    assert len({r["rows/generated"] for r in rows}) >= 1
    drop = lambda m: {k: v for k, v in m.items() if not k.startswith(("time/", "tokens_per_s", "mem/"))}  # noqa: E731
    assert [drop(r) for r in rows] == [drop(r) for r in _metrics(tmp_path / "b")]


def test_skipping_zero_advantage_rows_gives_the_same_update(tiny_dir, tmp_path):
    """Rows with advantage 0 (zero-variance groups) carry no gradient under ppo_clip without
    KL: skipping their forward/backward leaves the weights as they would be (float tolerance).

    Adam's first step is lr * g / (|g| + eps): with the default eps = 1e-8 a gradient entry near
    1e-8 turns a rounding difference (the kept rows form a smaller batch, so the matrix products
    round differently; more so on a GPU) into a visible weight difference. With eps = 1 the update
    is a smooth function of the gradient, so the comparison tests the gradient itself, relative to
    the size of the update."""
    from safetensors.torch import load_file

    f = tmp_path / "some.py"   # a reward that varies inside some groups and not in others
    f.write_text("def reward(completions, **kw):\n    return [float(len(c) % 4 == 0) for c in completions]\n")
    over = [f"rewards=[{{name: python, path: {f}}}]", "generation.temperature=2.0", "train.lr=0.3",
            "train.adam_eps=1.0", "checkpoint.every=1", "train.steps=2", "generation.prompts_per_step=6"]
    train(_cfg(tiny_dir, *over, "train.skip_zero_advantage=false"), tmp_path / "a")
    train(_cfg(tiny_dir, *over), tmp_path / "b")
    rows = _metrics(tmp_path / "b")
    assert sum(r["rows/zero_adv_skipped"] for r in rows) > 0 and all(r["grad_norm"] > 0 for r in rows)
    w0 = load_file(tiny_dir / "model.safetensors")
    for step in (1, 2):
        wa = load_file(tmp_path / f"a/checkpoints/step_{step}/model.safetensors")
        wb = load_file(tmp_path / f"b/checkpoints/step_{step}/model.safetensors")
        moved = max(float((wa[k] - w0[k]).abs().max()) for k in wa)
        assert moved > 1e-4
        assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4 * moved
