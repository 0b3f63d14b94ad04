"""ReMax's greedy pass and PPO's critic in the training loop: the greedy rows leave the sampling
streams alone and are never trained; the critic trains next to the policy, warms up, resumes
exactly; bad combinations are one-line configuration errors."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from groupo.config import ConfigError, load_config
from groupo.train.loop import train

BASE = ["model.tiny=false", "model.threads=1", "generation.group_size=2", "generation.prompts_per_step=3",
        "generation.max_new_tokens=5", "generation.temperature=2.0", "train.steps=2", "warmstart.steps=0",
        "task.name=lego", "task.eval_size=4", "eval.n=4", "eval.before=false", "eval.after=false",
        "log.tensorboard=false", "log.progress=false", "checkpoint.every=0", "log.completions_per_step=64"]
VOLATILE = ("time/", "tokens_per_s", "mem/")


def _cfg(recipe, tiny_dir, *over):
    return load_config(recipe, [f"model.path={tiny_dir}", *BASE, *over])


def _reward(tmp_path, expr="float(len(c) % 3)"):
    f = tmp_path / "r.py"
    f.write_text(f"def reward(completions, **kw):\n    return [{expr} for c in completions]\n")
    return f"rewards=[{{name: python, path: {f}}}]"


def _metrics(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _completions(run_dir):
    return [(r["step"], r["group"], r["completion"]) for r in map(json.loads, (run_dir / "completions.jsonl").open())]


# ----------------------------------------------------------------------------- ReMax
def test_greedy_pass_leaves_the_sampling_streams_alone(tiny_dir, tmp_path):
    """The collect step of remax and of rloo (same seed): the same prompts and sampled rows, the
    generators in the same state after it; the greedy rows are not in the batch."""
    from groupo.train.collect import collect
    from groupo.train.setup import setup

    runs = {}
    for name in ("remax", "rloo"):
        cfg = _cfg(name, tiny_dir, _reward(tmp_path), "generation.group_size=2")
        run = setup(cfg, tmp_path / name)
        col = collect(run, 1)
        runs[name] = (run, col, torch.random.get_rng_state())
    (ra, ca, ta), (rb, cb, tb) = runs["remax"], runs["rloo"]
    assert torch.equal(ca.rollout.completion_ids, cb.rollout.completion_ids) and ca.rollout.texts == cb.rollout.texts
    assert torch.equal(ra.gen.get_state(), rb.gen.get_state()) and ra.step_rng.getstate() == rb.step_rng.getstate()
    assert torch.equal(ta, tb)                                      # the global stream too
    assert ca.batch.n == cb.batch.n == 6                            # 3 prompts x 2 sampled rows, no greedy row
    greedy = ca.batch.extra["greedy_reward"]
    assert greedy.shape == (3,) and "greedy_reward" not in cb.batch.extra
    assert ca.metrics["remax/greedy_reward_mean"] == pytest.approx(float(greedy.mean()))
    # the baseline is the reward of the prompt's argmax completion: recompute it by hand
    from groupo.rollout.hf import generate

    prompts = sorted({(int(g), p) for g, p in zip(ca.rollout.group, ca.seen.prompts)})
    roll = generate(ra.model, ra.tokenizer, [p for _, p in prompts], [1] * 3, 5, ra.eos_ids, temperature=0.0)
    assert greedy.tolist() == [float(len(t) % 3) for t in roll.texts]
    res = ra.cfg.advantage(ca.batch)
    assert res.advantages.tolist() == [r - greedy[g] for r, g in zip(ca.batch.rewards.tolist(), ca.batch.group.tolist())]


def test_remax_run_samples_what_a_run_without_the_greedy_pass_samples(tiny_dir, tmp_path):
    """A reward equal for every completion: every advantage is 0 for remax and rloo alike, so the
    weights never move and two steps of sampled completions must be identical."""
    over = [_reward(tmp_path, "1.0"), "generation.group_size=2"]
    train(_cfg("remax", tiny_dir, *over), tmp_path / "a")
    train(_cfg("rloo", tiny_dir, *over), tmp_path / "b")
    assert _completions(tmp_path / "a") == _completions(tmp_path / "b")
    assert {s for s, _, _ in _completions(tmp_path / "a")} == {1, 2}
    rows = _metrics(tmp_path / "a")
    assert all(r["remax/greedy_reward_mean"] == 1.0 and r["rows/generated"] == 6 for r in rows)


def test_remax_trains_through_the_vllm_backend(fake_vllm, tiny_dir, tmp_path):
    """vLLM's temperature 0 is its greedy decoding: the greedy rows come from the engine too."""
    cfg = _cfg("remax", tiny_dir, _reward(tmp_path), "rollout.name=vllm", "model.device=cpu")
    train(cfg, tmp_path / "run")
    llm = fake_vllm.made[0]
    assert llm.calls.count("generate") == 4            # 2 steps x (sampled rows + greedy rows)
    rows = _metrics(tmp_path / "run")
    assert all("remax/greedy_reward_mean" in r for r in rows)


# ----------------------------------------------------------------------------- PPO
def test_ppo_trains_the_critic_and_the_policy(tiny_dir, tmp_path):
    cfg = _cfg("ppo", tiny_dir, _reward(tmp_path), "train.lr=1e-3", "critic.lr=1e-2", "checkpoint.every=1",
               "train.micro_batches=2")
    train(cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert rows[0]["gae/values_mean"] == 0.0                    # zero-initialised head: V_old = 0 at step 1
    assert rows[1]["gae/values_mean"] != 0.0 and rows[1]["critic/loss"] > 0
    assert all(r["grad_norm"] > 0 and r["critic/grad_norm"] > 0 for r in rows)
    c1 = load_file(tmp_path / "run/checkpoints/step_1/critic.safetensors")
    c2 = load_file(tmp_path / "run/checkpoints/step_2/critic.safetensors")
    assert c1["head.weight"].abs().sum() > 0 and not torch.equal(c1["head.weight"], c2["head.weight"])
    assert any(not torch.equal(c1[k], c2[k]) for k in c1 if k.startswith("body."))    # the body trains from step 2
    assert "lm_head.weight" not in c1


def test_critic_warmup_trains_only_the_critic(tiny_dir, tmp_path):
    cfg = _cfg("ppo", tiny_dir, _reward(tmp_path), "train.lr=1e-3", "critic.lr=1e-2", "critic.warmup_steps=1",
               "checkpoint.every=1")
    train(cfg, tmp_path / "run")
    w0 = load_file(tiny_dir / "model.safetensors")
    w1 = load_file(tmp_path / "run/checkpoints/step_1/model.safetensors")
    w2 = load_file(tmp_path / "run/checkpoints/step_2/model.safetensors")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)                  # step 1: the policy is not updated
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)
    c1 = load_file(tmp_path / "run/checkpoints/step_1/critic.safetensors")
    assert c1["head.weight"].abs().sum() > 0
    state = torch.load(tmp_path / "run/checkpoints/step_2/state.pt", weights_only=False)
    assert state["scheduler"]["last_epoch"] == 1                        # one policy update (step 2)


def test_ppo_resumes_exactly_with_the_critic(tiny_dir, tmp_path):
    over = [_reward(tmp_path), "train.lr=1e-3", "critic.lr=1e-2", "train.steps=4", "checkpoint.every=2",
            "checkpoint.keep=5"]
    train(_cfg("ppo", tiny_dir, *over), tmp_path / "a")
    train(_cfg("ppo", tiny_dir, *over), tmp_path / "b")
    shutil.rmtree(tmp_path / "b/checkpoints/step_4")
    state = torch.load(tmp_path / "b/checkpoints/step_2/state.pt", weights_only=False)
    assert state["critic_optimizer"]["state"]
    train(_cfg("ppo", tiny_dir, *over), tmp_path / "b", resume=True)
    for f in ("model.safetensors", "critic.safetensors"):
        wa, wb = load_file(tmp_path / "a/checkpoints/step_4" / f), load_file(tmp_path / "b/checkpoints/step_4" / f)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f
    drop = lambda m: {k: v for k, v in m.items() if not k.startswith(VOLATILE)}  # noqa: E731
    assert [drop(r) for r in _metrics(tmp_path / "a")] == [drop(r) for r in _metrics(tmp_path / "b")]


def test_ppo_with_a_kl_penalty_in_the_reward_loads_the_reference(tiny_dir, tmp_path):
    cfg = _cfg("ppo", tiny_dir, _reward(tmp_path), "advantage.kl_coef=0.1", "train.lr=1e-2")
    train(cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert rows[0]["gae/kl_reward_mean"] == 0.0                  # the reference is the initial policy
    assert rows[1]["gae/kl_reward_mean"] != 0.0 and "kl/mean" not in rows[1]   # no KL term in the loss


@pytest.mark.parametrize("recipe,over,needle", [
    ("ppo", ["critic.name=none"], "advantage.name=gae needs a value model: set critic.name=value"),
    ("grpo", ["critic.name=value"], "critic.name=value trains a value model that advantage 'grpo' does not use"),
    ("ppo", ["objective.name=gspo"], "objective 'gspo' takes one per row"),
    ("ppo", ["train.parallel=fsdp"], "critic.name=value is not supported with train.parallel=fsdp"),
    ("remax", ["rollout.name=server", "rollout.overlap=true"], "set rollout.overlap=false"),
    ("ppo", ["critic.lr=0"], "lr must be > 0"),
    ("ppo", ["critic.cliprange=0.2"], "critic.cliprange"),
])
def test_bad_combinations_are_one_line_errors(recipe, over, needle, tiny_dir):
    with pytest.raises(ConfigError, match=None) as e:
        _cfg(recipe, tiny_dir, *over)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_groupo_list_shows_the_new_components(capsys, monkeypatch):
    from groupo.cli import main

    monkeypatch.setenv("COLUMNS", "250")
    assert main(["list", "critic"]) == 0
    out = capsys.readouterr().out
    assert "value" in out and "cliprange_value" in out and "none" in out
    assert main(["list", "advantage"]) == 0
    out = capsys.readouterr().out
    assert "remax" in out and "gae" in out and "lam" in out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ppo" in out and "remax" in out
