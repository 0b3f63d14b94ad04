"""R³ (arXiv 2601.19620, ALGORITHMS.md §10): entropy-ranking reward from the spec's worked
numbers, cross-context replay that never mixes rows across questions, self-reflection
prompts, state round trip, and the loop with resume."""
import json
import math
import random

import pytest
import torch

from groupo.algo.shaping.entropy_rank import EntropyRank, entropy_scores, rank_rewards
from groupo.registry import build
from groupo.data.replay import R3Replay
from groupo.rollout import Rollout
from groupo.types import Batch, Item

PAD = 0


def test_rank_rewards_worked_example_e():
    z = torch.tensor([0.1, 0.5, -0.2])
    r = rank_rewards(z, torch.ones(3, dtype=torch.bool), torch.zeros(3, dtype=torch.long), 0.2)
    assert r.tolist() == pytest.approx([0.1, 0.2, 0.0])


def test_rank_rewards_ragged_groups_passed_rows_and_single_failure():
    # group 0: rows 0-3, row 1 correct (not ranked); failed z = [0.3, -1, 2] -> ranks [1, 0, 2]
    # group 1: rows 4-5, one failed row -> 0; group 2: row 6 alone, failed -> 0
    z = torch.tensor([0.3, 9.0, -1.0, 2.0, 5.0, 1.0, 4.0])
    failed = torch.tensor([1, 0, 1, 1, 0, 1, 1], dtype=torch.bool)
    group = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    r = rank_rewards(z, failed, group, 0.2)
    assert r.tolist() == pytest.approx([0.1, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0])


def test_entropy_scores_by_hand():
    ent = torch.tensor([[1.0, 2.0, 3.0, 7.0], [0.5, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    z = entropy_scores(ent, mask, kappa=2, w_loc=1.0, w_glob=2.0)
    # row 0: top-2 of [1,2,3] = 2.5; population std = sqrt(2/3); the masked 7 is ignored
    assert z[0].item() == pytest.approx(2.5 - 2 * math.sqrt(2 / 3))
    assert z[1].item() == pytest.approx(0.5)        # one token: top-1 mean 0.5, std 0
    assert z[2].item() == 0.0                        # empty row


def test_entropy_rank_shaping_adds_a_component_and_keeps_the_invariant():
    comp = torch.tensor([[0.0], [1.0], [0.0], [0.0]])
    b = Batch(rewards=comp[:, 0].clone(), group=torch.zeros(4, dtype=torch.long), reward_components=comp,
              reward_weights=torch.ones(1), reward_names=("correct",), correct=comp[:, 0].clone(),
              completion_mask=torch.ones(4, 3), truncated=torch.zeros(4, dtype=torch.bool),
              extra={"tok_entropy": torch.tensor([[1., 1., 1.], [5., 5., 5.], [3., 3., 3.], [2., 2., 2.]])})
    out = build("shaping", "entropy_rank", {"r_rank_max": 0.2, "kappa": 2, "w_glob": 0.0})(b)
    assert out.reward_names == ("correct", "rank")
    # failed rows 0, 2, 3 have z = 1, 3, 2 -> ranks 0, 2, 1 -> 0, 0.2, 0.1; the correct row keeps 1
    assert out.rewards.tolist() == pytest.approx([0.0, 1.0, 0.2, 0.1])
    assert torch.allclose(out.rewards, torch.nansum(out.reward_components * out.reward_weights, 1))
    assert b.rewards.tolist() == [0.0, 1.0, 0.0, 0.0]                    # input untouched
    with pytest.raises(ValueError, match="tok_entropy"):
        EntropyRank()(Batch(rewards=torch.zeros(2), group=torch.zeros(2, dtype=torch.long)))
    with pytest.raises(ValueError, match="r_rank_max"):
        EntropyRank(r_rank_max=1.0)


# ------------------------------------------------------------------ replay
def _roll(group, ids_rows, texts):
    n = len(group)
    width = max(len(r) for r in ids_rows)
    ids = torch.full((n, width), PAD)
    mask = torch.zeros(n, width)
    for i, r in enumerate(ids_rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return Rollout(torch.ones(n, 2, dtype=torch.long), torch.ones(n, 2), ids, mask,
                   torch.zeros(n, dtype=torch.bool), torch.tensor(group), list(texts))


def test_record_then_restore_same_question_only():
    r3 = R3Replay(replace_k=1, buffer_size=2)
    st = r3.init_state()
    items = [Item("q-a", "1"), Item("q-b", "2")]
    # step 1: q-a has one correct row (tokens 11,12), q-b one correct row (21)
    roll = _roll([0, 0, 1, 1], [[11, 12], [13], [21], [22, 23, 24]], ["a-ok", "a-bad", "b-ok", "b-bad"])
    r3.record(roll, torch.tensor([1., 0., 1., 0.]), items, torch.zeros(4, dtype=torch.bool), st, 1)
    assert [t["text"] for t in st["buf"]["q-a"]["pos"]] == ["a-ok"]
    assert st["buf"]["q-a"]["neg"] == []                                 # not symmetric
    json.loads(json.dumps(st))                                           # checkpointable
    # step 2: groups in the other order, both all-fail; q-c all-fail with nothing buffered
    items2 = [Item("q-b", "2"), Item("q-a", "1"), Item("q-c", "3")]
    roll2 = _roll([0, 0, 0, 1, 1, 2, 2], [[5]] * 7, [f"x{i}" for i in range(7)])
    new, rep = r3.restore(roll2, torch.zeros(7), items2, st, PAD)
    assert rep.tolist() == [False, False, True, False, True, False, False]   # last row of each group
    assert new.texts[2] == "b-ok" and new.completion_ids[2, :1].tolist() == [21]
    assert new.texts[4] == "a-ok" and new.completion_ids[4, :2].tolist() == [11, 12]
    assert new.completion_mask[4].tolist() == [1, 1] and new.completion_mask[2].tolist() == [1, 0]
    assert new.completion_ids.shape[1] == 2                              # widened for the 2-token replay
    assert roll2.texts[2] == "x2"                                        # input rollout untouched
    # replayed rows are never written back to the buffer
    r3.record(new, torch.tensor([0., 0., 1., 0., 1., 0., 0.]), items2, rep, st, 2)
    assert [t["text"] for t in st["buf"]["q-a"]["pos"]] == ["a-ok"]


def test_restore_keeps_one_fresh_row_and_skips_groups_with_a_success():
    r3 = R3Replay(replace_k=5)
    st = r3.init_state()
    st["buf"]["q"] = {"pos": [{"ids": [7], "text": f"ok{i}", "truncated": False, "step": i} for i in range(4)],
                      "neg": []}
    items = [Item("q", "1"), Item("q", "1")]
    roll = _roll([0, 0, 0, 1, 1], [[5]] * 5, list("abcde"))
    new, rep = r3.restore(roll, torch.tensor([0., 0., 0., 1., 0.]), items, st, PAD)
    assert rep.tolist() == [False, True, True, False, False]             # k capped at G - 1
    assert new.texts[1:3] == ["ok3", "ok2"]                              # most recent first
    assert R3Replay(ccr=False).restore(roll, torch.zeros(5), items, st, PAD)[1].sum() == 0


def test_symmetric_replays_a_wrong_answer_into_an_all_correct_group():
    r3 = R3Replay(symmetric=True)
    st = r3.init_state()
    items = [Item("q", "1")]
    r3.record(_roll([0, 0], [[1], [2]], ["good", "bad"]), torch.tensor([1., 0.]), items,
              torch.zeros(2, dtype=torch.bool), st, 1)
    new, rep = r3.restore(_roll([0, 0], [[3], [4]], ["c", "d"]), torch.ones(2), items, st, PAD)
    assert rep.tolist() == [False, True] and new.texts[1] == "bad"


def test_replay_never_mixes_questions_random():
    """Random steps over many questions: every replayed row carries a trajectory that was
    generated, and judged correct, for the question of the group it lands in."""
    rng = random.Random(0)
    r3 = R3Replay(replace_k=2, buffer_size=3)
    st = r3.init_state()
    qs = [f"q{i}" for i in range(12)]
    for step in range(1, 40):
        picked = [rng.choice(qs) for _ in range(rng.randint(1, 6))]
        items = [Item(q, "0") for q in picked]
        group, ids, texts = [], [], []
        for g, q in enumerate(picked):
            for j in range(rng.randint(2, 5)):
                group.append(g)
                ids.append([rng.randint(1, 50) for _ in range(rng.randint(1, 4))])
                texts.append(f"{q}|s{step}|{j}")
        correct = torch.tensor([float(rng.random() < 0.3) for _ in group])
        new, rep = r3.restore(_roll(group, ids, texts), correct, items, st, PAD)
        for row in rep.nonzero().squeeze(1).tolist():
            src_q, src_step, _ = new.texts[row].split("|")
            assert src_q == picked[group[row]] and int(src_step[1:]) < step
        corr2 = torch.where(rep, torch.ones_like(correct), correct)
        r3.record(new, corr2, items, rep, st, step)
    for q, entry in st["buf"].items():
        assert all(t["text"].startswith(q + "|") for t in entry["pos"]) and len(entry["pos"]) <= 3


def test_reflection_after_consecutive_failures_and_reset():
    r3 = R3Replay(isr_after=2, isr_max_chars=5)
    st = r3.init_state()
    items = [Item("Q?", "1")]
    fail = lambda text: r3.record(_roll([0, 0], [[1], [2]], [text, "zz"]), torch.zeros(2), items,  # noqa: E731
                                  torch.zeros(2, dtype=torch.bool), st, 0)
    fail("first try")
    assert r3.reflect(items, st) == [None]
    fail("second try")
    (q,) = r3.reflect(items, st)
    assert q.startswith("Q?\n\nA previous attempt") and "secon" in q and "second" not in q  # cut to 5 chars
    r3.record(_roll([0, 0], [[1], [2]], ["ok", "no"]), torch.tensor([1., 0.]), items,
              torch.zeros(2, dtype=torch.bool), st, 0)
    assert r3.reflect(items, st) == [None]
    assert R3Replay(isr=False).reflect(items, {"buf": {}, "fails": {"Q?": [9, "x"]}}) == [None]
    with pytest.raises(ValueError, match="isr_template"):
        R3Replay(isr_template="no placeholders")


def test_buffer_bounded_in_questions():
    r3 = R3Replay(max_questions=3)
    st = r3.init_state()
    for i in range(6):
        r3.record(_roll([0, 0], [[1], [2]], ["a", "b"]), torch.tensor([1., 0.]), [Item(f"q{i}", "1")],
                  torch.zeros(2, dtype=torch.bool), st, i)
    assert list(st["buf"]) == ["q3", "q4", "q5"]


def test_r3_loop_replays_and_resumes_exactly(tiny_dir, tmp_path):
    """In the loop, on a pool of 3 questions with a stand-in "correct" reward (completion
    length divisible by 3, about 1/3 of rows; a reflection prompt after one all-fail visit, so
    that they appear whatever the device's random stream): replayed rows and reflection prompts appear,
    the ranking reward is logged, and a run resumed at step 2 ends bit-identical."""
    import shutil

    from safetensors.torch import load_file

    from groupo.config import load_config
    from groupo.train.loop import train

    f = tmp_path / "len3.py"
    f.write_text("def reward(completions, **kw):\n    return [float(len(c) % 3 == 0) for c in completions]\n")

    def cfg(*over):
        return load_config("r3", [f"model.path={tiny_dir}", "model.tiny=false", "model.threads=1",
                                  "task.name=lego", "template.name=plain", "generation.group_size=4",
                                  "generation.prompts_per_step=4", "generation.max_new_tokens=4",
                                  "generation.temperature=2.0", "train.steps=4", "train.micro_batches=1",
                                  "task.eval_size=8", "eval.n=8", "eval.before=false", "eval.after=false",
                                  "log.tensorboard=false", "checkpoint.every=2", "checkpoint.keep=5",
                                  "sampler.name=prompt_gdro", "sampler.pool_size=3", "replay.isr_after=1",
                                  f"rewards=[{{name: python, path: {f}, label: correct}}]", *over])
    train(cfg(), tmp_path / "a")
    rows = [json.loads(l) for l in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    assert all("replay/rows" in r and "reward/rank/mean" in r for r in rows)
    assert sum(r["replay/rows"] for r in rows) > 0 and sum(r["replay/reflect_prompts"] for r in rows) > 0
    train(cfg(), tmp_path / "b")
    shutil.rmtree(tmp_path / "b/checkpoints/step_4")
    state = torch.load(tmp_path / "b/checkpoints/step_2/state.pt", weights_only=False)
    assert "buf" in state["replay"] and "fails" in state["replay"]
    train(cfg(), tmp_path / "b", resume=True)
    wa = load_file(tmp_path / "a/checkpoints/step_4/model.safetensors")
    wb = load_file(tmp_path / "b/checkpoints/step_4/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_replayed_rows_carry_no_importance_correction():
    """With the vLLM backend's sampler log-probs, replayed rows get NaN there (weight 1 in TIS)."""
    from groupo.algo.tis import truncated_is_weights

    r3 = R3Replay()
    st = r3.init_state()
    st["buf"]["q"] = {"pos": [{"ids": [7, 8, 9], "text": "ok", "truncated": False, "step": 1}], "neg": []}
    roll = _roll([0, 0], [[5], [6]], ["a", "b"])
    roll.sampler_logp = torch.tensor([[-1.0], [-2.0]])
    new, rep = r3.restore(roll, torch.zeros(2), [Item("q", "1")], st, PAD)
    assert rep.tolist() == [False, True] and new.sampler_logp.shape == (2, 3)
    assert torch.isnan(new.sampler_logp[1]).all() and new.sampler_logp[0, 0] == -1.0
    w = truncated_is_weights(torch.full((2, 3), -1.5), new.sampler_logp, new.completion_mask, cap=2.0)
    assert w[1].tolist() == [1.0, 1.0, 1.0] and w[0, 0].item() == pytest.approx(math.exp(-0.5))
