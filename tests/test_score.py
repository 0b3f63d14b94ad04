"""The scoring step (groupo/train/score.py) alone: rewards -> advantages -> token weights, a pure
function checked against numbers worked by hand."""
import math

import torch

from groupo.config import load_config
from groupo.train.score import score
from groupo.types import Batch

# six rows: a group of four (rewards 1, 0, 1, 0) and an all-equal group of two; lengths 2, 1, 3, 2, 1, 1
REWARDS = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
GROUP = torch.tensor([0, 0, 0, 0, 1, 1])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0]])


def _components(*over):
    return load_config("grpo", ["model.path=/m", *over]).components


def _batch():
    return Batch(rewards=REWARDS.clone(), group=GROUP, correct=REWARDS.clone(), lengths=MASK.sum(1),
                 completion_mask=MASK, reward_names=("correct",), reward_components=REWARDS[:, None].clone(),
                 reward_weights=torch.ones(1), max_length=3)


def test_grpo_advantages_and_seq_mean_token_mean_weights_by_hand():
    b = _batch()
    s = score(b, MASK, _components(), max_length=3, labels=["a", "a", "a", "a", "b", "b"])
    # group 0: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.577350; A = +-0.5 / (0.577350 + 1e-4)
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    assert torch.allclose(s.advantages, torch.tensor([a, -a, a, -a, 0.0, 0.0], dtype=torch.float64), atol=1e-12)
    assert s.keep.all() and torch.equal(s.row_weights, torch.ones(6, dtype=torch.float64))
    # seq_mean_token_mean: 1 / (6 sequences x |o_i|) on each real token
    want = MASK / MASK.sum(1, keepdim=True) / 6
    assert torch.allclose(s.token_weights, want.double(), atol=1e-15)
    assert s.metrics["adv/mean"] == 0.0 and abs(s.metrics["adv/abs_mean"] - 4 * a / 6) < 1e-12
    assert abs(s.metrics["adv/abs/group/a"] - a) < 1e-12 and s.metrics["adv/abs/group/b"] == 0.0
    # pure: the input batch is untouched, and the same input gives the same output
    assert torch.equal(b.rewards, REWARDS) and b.extra == {}
    again = score(_batch(), MASK, _components(), max_length=3, labels=["a"] * 4 + ["b"] * 2)
    assert torch.equal(again.token_weights, s.token_weights) and again.metrics == s.metrics


def test_replayed_rows_and_truncated_importance_weights_by_hand():
    comps = _components("replay.name=r3", "replay.replay_weight=0.5", "aggregation.name=token_mean")
    replayed = torch.tensor([False, True, False, False, False, False])
    old = torch.zeros(6, 3)
    sampler = torch.zeros(6, 3)
    sampler[0, 0] = -math.log(3.0)              # ratio exp(0 - (-log 3)) = 3 -> capped at 2
    sampler[2, 1] = math.log(2.0)               # ratio 1/2
    s = score(_batch(), MASK, comps, max_length=3, replayed=replayed, old_logp=old, sampler_logp=sampler, tis_cap=2.0)
    # token_mean: 1 / 10 real tokens; the replayed row x 0.5; TIS: token (0, 0) x 2, token (2, 1) x 0.5
    want = MASK.double() / 10
    want[1] *= 0.5
    want[0, 0] *= 2.0
    want[2, 1] *= 0.5
    assert torch.allclose(s.token_weights, want, atol=1e-7)
    assert abs(s.metrics["tis/mean_weight"] - (10 - 1 + 2 - 1 + 0.5) / 10) < 1e-6
    # without a cap the sampler's log-probs are not used
    s0 = score(_batch(), MASK, comps, max_length=3, replayed=replayed, old_logp=old, sampler_logp=sampler)
    assert "tis/mean_weight" not in s0.metrics and s0.token_weights[0, 0] == want[0, 0] / 2


def test_filtered_rows_get_no_weight_and_shaping_runs_first():
    comps = _components("advantage.name=dgpo", "aggregation.name=dgpo_token_mean")
    s = score(_batch(), MASK, comps, max_length=3)
    # DGPO drops the all-equal group (keep False): its rows weigh 0, the 8 tokens of group 0 share 1
    assert s.keep.tolist() == [True, True, True, True, False, False]
    assert torch.allclose(s.token_weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert bool((s.token_weights[4:] == 0).all())
    shaped = score(_batch(), MASK, _components("shaping.name=dapo_overlong", "shaping.cache=2"), max_length=3)
    # overlong penalty on lengths > 3 - 2 = 1: -(L - 1) / 2 for L = 2, 3 (rows 0, 2, 3)
    assert shaped.batch.rewards.tolist() == [0.5, 0.0, 0.0, -0.5, 0.0, 0.0]
    assert shaped.metrics["reward/shaped/mean"] == 0.0
