"""OTB, the Optimal Token Baseline (arXiv 2602.07078): hand-worked numbers, verl's
``compute_optimal_token_baseline_advantage`` written out as plain loops (not imported), the
Logit-Gradient Proxy sum_v pi_v^2 from every forward path, and the recipe in the training loop."""
import json
import math

import pytest
import torch

from groupo.config import ConfigError, load_config
from groupo.model.forward import completion_logprobs
from groupo.model.logprobs import token_logprobs
from groupo.registry import build
from groupo.types import Batch

EPS = 1e-8          # verl's epsilon in the baseline's denominator


def _batch(rewards, group, mask, pi, s2):
    """A batch whose old-policy token probabilities are ``pi`` and sums of squares ``s2`` [N, T]."""
    mask = torch.tensor(mask, dtype=torch.float32)
    logp = torch.log(torch.tensor(pi, dtype=torch.float64))
    return Batch(rewards=torch.tensor(rewards, dtype=torch.float64), group=torch.tensor(group),
                 completion_mask=mask, lengths=mask.sum(1).long(),
                 extra={"old_logp": logp, "sum_pi2": torch.tensor(s2, dtype=torch.float64)})


# rows (interleaved groups): a, d, b, c, e, f
#   group 0: a (length 3, R = 1), b (length 2, R = 0), c (length 1, R = 0.5)
#   group 1: d alone (length 2, R = 0.7)
#   group 2: e, f (both length 2, R = 1 and 0: no strictly longest row)
# (pi, S) per real token and w = 1 - 2 pi + S:
#   (0.5, 0.5) -> 0.5    (0.25, 0.25) -> 0.75    (0.5, 0.25) -> 0.25
# padding holds pi = 1, S = 9 (w would be 8): it must not count anywhere
P = 1.0
HAND = dict(
    rewards=[1.0, 0.7, 0.0, 0.5, 1.0, 0.0],
    group=[0, 1, 0, 0, 2, 2],
    mask=[[1, 1, 1], [1, 1, 0], [1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0]],
    pi=[[0.5, 0.25, 0.5], [0.5, 0.5, P], [0.25, 0.5, P], [0.5, P, P], [0.5, 0.5, P], [0.5, 0.5, P]],
    s2=[[0.5, 0.25, 0.25], [0.5, 0.5, 9], [0.25, 0.5, 9], [0.5, 9, 9], [0.5, 0.5, 9], [0.5, 0.5, 9]],
)


def test_otb_by_hand_ragged_groups_singleton_and_zero_tail():
    res = build("advantage", "otb")(_batch(**HAND))
    A = res.advantages
    assert A.shape == (6, 3) and A.dtype == torch.float64
    # group 0:  w_a = [0.5, 0.75, 0.25] -> W_a = [0.5, 1.25, 1.5]
    #           w_b = [0.75, 0.5]       -> W_b = [0.75, 1.25]
    #           w_c = [0.5]             -> W_c = [0.5]
    #   t=0: B = (1*0.5 + 0*0.75 + 0.5*0.5) / (0.5 + 0.75 + 0.5 + eps) = 0.75 / (1.75 + eps)  (~ 3/7)
    #   t=1: B = (1*1.25 + 0*1.25) / (1.25 + 1.25 + eps)               = 1.25 / (2.5 + eps)   (~ 0.5)
    #   t=2: only a (strictly longest, 3 > 2): its baseline from t = 2 on is 0 (zero tail)
    b0, b1 = 0.75 / (1.75 + EPS), 1.25 / (2.5 + EPS)
    assert A[0].tolist() == pytest.approx([1 - b0, 1 - b1, 1.0], abs=1e-12)         # a: ~[4/7, 0.5, 1]
    assert A[2].tolist() == pytest.approx([0 - b0, 0 - b1, 0.0], abs=1e-12)         # b: ~[-3/7, -0.5, 0]
    assert A[3].tolist() == pytest.approx([0.5 - b0, 0.0, 0.0], abs=1e-12)          # c: ~[1/14, 0, 0]
    # group 1: one row, baseline 0: A = G = R on its real tokens
    assert A[1].tolist() == [0.7, 0.7, 0.0]
    # group 2: w = [0.5, 0.5] for both -> W = [0.5, 1.0]; lengths tie (2, 2): no zero tail
    #   t=0: B = (1*0.5 + 0) / (1.0 + eps)       t=1: B = (1*1.0 + 0) / (2.0 + eps)
    e0, e1 = 0.5 / (1.0 + EPS), 1.0 / (2.0 + EPS)
    assert A[4].tolist() == pytest.approx([1 - e0, 1 - e1, 0.0], abs=1e-12)
    assert A[5].tolist() == pytest.approx([-e0, -e1, 0.0], abs=1e-12)
    assert res.keep.all() and res.weights.tolist() == [1.0] * 6
    # metrics: mean over the 12 real tokens of w; of the baselines (group 1's are 0, a's tail 0)
    w_real = [0.5, 0.75, 0.25, 0.5, 0.5, 0.75, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert res.metrics["otb/token_energy_mean"] == pytest.approx(sum(w_real) / 12, abs=1e-12)
    base = [b0, b1, 0, 0, 0, b0, b1, b0, e0, e1, e0, e1]
    assert res.metrics["otb/baseline_mean"] == pytest.approx(sum(base) / 12, abs=1e-12)
    # final energy W at each row's last token: a 1.5, d 1.0, b 1.25, c 0.5, e 1.0, f 1.0
    assert res.metrics["otb/final_energy_mean"] == pytest.approx((1.5 + 1.0 + 1.25 + 0.5 + 1.0 + 1.0) / 6, abs=1e-12)


def test_otb_without_zero_tail_gives_the_lone_tail_almost_zero():
    A = build("advantage", "otb", {"handle_zero_tail": False})(_batch(**HAND)).advantages
    # a at t=2 is the only row: B = 1*1.5 / (1.5 + eps), A = 1 - B = eps / (1.5 + eps) (~ 6.7e-9)
    assert A[0, 2].item() == pytest.approx(1 - 1.5 / (1.5 + EPS), abs=1e-15)
    assert A[0, 2].item() > 0 and A[0, 2].item() < 1e-8
    # everything else as with the zero tail
    B = build("advantage", "otb")(_batch(**HAND)).advantages
    B[0, 2] = A[0, 2]
    assert torch.equal(A, B)


def test_otb_size_one_batch_and_equal_energies_reduce_to_mean_baseline():
    one = _batch([0.3], [5], [[1, 1]], [[0.5, 0.5]], [[0.5, 0.5]])
    assert build("advantage", "otb")(one).advantages.tolist() == [[0.3, 0.3]]
    # equal lengths and equal per-token energies: W_t is the same for every row, so B_t is the group's
    # mean reward (up to eps): rewards 1, 0, 0, 1 -> B = 0.5 * 4W / (4W + eps)
    b = _batch([1.0, 0.0, 0.0, 1.0], [0] * 4, [[1, 1]] * 4, [[0.5, 0.5]] * 4, [[0.5, 0.5]] * 4)
    A = build("advantage", "otb")(b).advantages
    for t, W in enumerate([0.5, 1.0]):
        base = 2 * W / (4 * W + EPS)
        assert A[:, t].tolist() == pytest.approx([1 - base, -base, -base, 1 - base], abs=1e-12)


def test_otb_all_equal_group_keeps_verls_eps_and_zero_tail():
    # rewards 1, 1; lengths 2, 1; w = 0.5 everywhere -> W_0 = [0.5, 1.0], W_1 = [0.5]
    #   t=0: B = (0.5 + 0.5) / (1.0 + eps): A = 1 - 1 / (1 + eps) = eps / (1 + eps) (~1e-8), not 0
    #   t=1: row 0 strictly longest (2 > 1): baseline 0 from t = 1, A = 1
    b = _batch([1.0, 1.0], [0, 0], [[1, 1], [1, 0]], [[0.5, 0.5]] * 2, [[0.5, 0.5]] * 2)
    A = build("advantage", "otb")(b).advantages
    assert A.flatten().tolist() == pytest.approx([1 - 1 / (1 + EPS), 1.0, 1 - 1 / (1 + EPS), 0.0], abs=1e-15)
    assert 0 < A[0, 0].item() < 1e-7
    # reward 0 for every row: exactly 0 everywhere
    b0 = _batch([0.0, 0.0], [0, 0], [[1, 1], [1, 0]], [[0.5, 0.5]] * 2, [[0.5, 0.5]] * 2)
    assert build("advantage", "otb")(b0).advantages.abs().max().item() == 0.0


def test_otb_says_what_it_needs():
    b = Batch(rewards=torch.tensor([1.0]), group=torch.tensor([0]), completion_mask=torch.ones(1, 2))
    with pytest.raises(ValueError, match="sum_pi2"):
        build("advantage", "otb")(b)
    with pytest.raises(ValueError, match="eps"):
        build("advantage", "otb", {"eps": -1.0})


# ----------------------------------------------------------------------------- verl, written out
def _verl_otb(token_rewards, mask, index, old_log_probs, sum_pi_squared, handle_zero_tail, eps=EPS):
    """verl's compute_optimal_token_baseline_advantage from its definition, as plain python loops:
    returns = reversed cumulative sum of the masked token rewards; w = 1 - 2 exp(old_logp) + sum pi^2;
    W = cumsum(w * mask); per group of >= 2 rows, B_t = sum_i G W m / (sum_i W m + eps) at every
    position; with handle_zero_tail, the strictly longest row's baseline from the second-longest
    length on is 0; A = (G - B) * mask."""
    n, t_len = len(mask), len(mask[0])
    G = [[0.0] * t_len for _ in range(n)]
    W = [[0.0] * t_len for _ in range(n)]
    for i in range(n):
        run = 0.0
        for t in reversed(range(t_len)):
            run += token_rewards[i][t] * mask[i][t]
            G[i][t] = run
        acc = 0.0
        for t in range(t_len):
            acc += (1 - 2 * math.exp(old_log_probs[i][t]) + sum_pi_squared[i][t]) * mask[i][t]
            W[i][t] = acc
    groups = {}
    for i, k in enumerate(index):
        groups.setdefault(k, []).append(i)
    B = [[0.0] * t_len for _ in range(n)]
    for rows in groups.values():
        if len(rows) == 1:
            continue
        for t in range(t_len):
            num = sum(G[i][t] * W[i][t] * mask[i][t] for i in rows)
            den = sum(W[i][t] * mask[i][t] for i in rows) + eps
            for i in rows:
                B[i][t] = num / den
        if handle_zero_tail:
            lengths = [sum(mask[i]) for i in rows]
            srt = sorted(lengths)
            longest = [i for i, L in zip(rows, lengths) if L == srt[-1]]
            if len(longest) == 1 and srt[-1] > srt[-2]:
                for t in range(int(srt[-2]), t_len):
                    B[longest[0]][t] = 0.0
    return [[(G[i][t] - B[i][t]) * mask[i][t] for t in range(t_len)] for i in range(n)]


def _random_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    group = torch.tensor([3, 0, 0, 3, 1, 1, 1, 0, 2, 3, 1, 0, 4, 4])     # sizes 4, 4, 1, 3, 2; interleaved
    n, t = group.numel(), 7
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    lengths[12], lengths[13] = 5, 5                                        # group 4: tied longest rows
    mask = (torch.arange(t)[None] < lengths[:, None]).float()
    # a vocabulary distribution per token: pi of the sampled token and sum pi^2 from real softmaxes
    probs = torch.softmax(torch.randn(n, t, 11, generator=g, dtype=torch.float64) * 2, -1)
    ids = torch.randint(0, 11, (n, t), generator=g)
    pi = probs.gather(-1, ids[..., None])[..., 0]
    rewards = torch.rand(n, generator=g, dtype=torch.float64).round(decimals=1)
    return Batch(rewards=rewards, group=group, completion_mask=mask, lengths=lengths,
                 extra={"old_logp": torch.log(pi).float(), "sum_pi2": (probs ** 2).sum(-1).float()})


@pytest.mark.parametrize("zero_tail", [True, False])
def test_otb_equals_verls_formula_on_a_random_ragged_batch(zero_tail):
    b = _random_batch()
    mask = b.completion_mask.double()
    last = mask.sum(1).long() - 1
    tok_r = torch.zeros_like(mask)
    tok_r[torch.arange(b.n), last] = b.rewards                 # the outcome reward on the last token
    ref = _verl_otb(tok_r.tolist(), mask.tolist(), b.group.tolist(), b.extra["old_logp"].double().tolist(),
                    b.extra["sum_pi2"].double().tolist(), zero_tail)
    ours = build("advantage", "otb", {"handle_zero_tail": zero_tail})(b).advantages
    assert torch.allclose(ours, torch.tensor(ref, dtype=torch.float64), atol=1e-12, rtol=0)
    # the zero tail really happens: lengths group 1 (rows 4, 5, 6, 10) 2, 3, 7, 3 -> row 6 from t = 3;
    # group 3 (rows 0, 3, 9) 5, 3, 6 -> row 9 from t = 5; groups 0 (4, 1, 4, 1) and 4 (5, 5) tie
    assert b.lengths.tolist() == [5, 4, 1, 3, 2, 3, 7, 4, 5, 6, 3, 1, 5, 5]
    other = build("advantage", "otb", {"handle_zero_tail": not zero_tail})(b).advantages
    assert (ours != other).nonzero().tolist() == [[6, 3], [6, 4], [6, 5], [6, 6], [9, 5]]
    # rows of a group of one: A = R on every real token
    alone = (b.group == 2).nonzero().item()
    assert torch.equal(ours[alone], b.rewards[alone] * mask[alone])


# ----------------------------------------------------------------------------- the Logit-Gradient Proxy
@pytest.mark.parametrize("temp", [1.0, 0.7])
def test_sum_pi2_from_token_logprobs_is_the_sum_of_squared_probabilities(temp):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 50, generator=g, dtype=torch.float64) * 4
    ids = torch.randint(0, 50, (3, 5), generator=g)
    lp, ent, s2 = token_logprobs(logits, ids, temp, True, with_sum_pi2=True)
    p = torch.softmax(logits / temp, -1)
    assert torch.allclose(s2, (p ** 2).sum(-1), atol=1e-13, rtol=0)
    assert ((s2 <= 1) & (s2 >= torch.exp(lp) ** 2)).all()            # p_y^2 <= sum p^2 <= 1
    # asking for it changes nothing else, bit for bit
    lp0, ent0 = token_logprobs(logits, ids, temp, True)
    assert torch.equal(lp, lp0) and torch.equal(ent, ent0)
    lp1, none, s2b = token_logprobs(logits, ids, temp, False, with_sum_pi2=True)
    assert none is None and torch.equal(lp1, lp0) and torch.equal(s2b, s2)
    assert len(token_logprobs(logits, ids, temp, False)) == 2


def _rows(tok):
    p = tok(["a=+1;b=-a;?b", "x=+1;y=+x;?y", "a=+1;b=-a;?b", "c=-1;?c"], return_tensors="pt", padding=True)
    c = torch.randint(5, 60, (4, 6), generator=torch.Generator().manual_seed(1))
    cm = (torch.arange(6)[None] < torch.tensor([6, 3, 1, 4])[:, None]).long()
    return p["input_ids"], p["attention_mask"], c, cm


def test_sum_pi2_brute_force_through_the_naive_and_chunked_forwards(tiny_dir, tiny):
    from groupo.model.load import load_model
    from groupo.model.logprobs import build_inputs

    _, tok = tiny
    model = load_model(tiny_dir).double()
    args = _rows(tok)
    with torch.no_grad():
        lp, ent, s2 = completion_logprobs(model, *args, temperature=0.7, with_entropy=True, with_sum_pi2=True)
        lp_c, ent_c, s2_c = completion_logprobs(model, *args, temperature=0.7, with_entropy=False,
                                                chunk=2, with_sum_pi2=True)
        # brute force: the full forward's logits at the positions predicting each completion token
        ids, attn, pos = build_inputs(*args)
        logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits.double()
        T = args[2].shape[1]
        p = torch.softmax(logits[:, -T - 1:-1] / 0.7, -1)
    m = args[3].bool()
    # the forward paths take the log-softmax of float32 logits (as for the log-probs): float32 accuracy
    assert s2.dtype == torch.float32
    assert torch.allclose(s2[m].double(), (p ** 2).sum(-1)[m], atol=1e-6, rtol=0)
    assert torch.allclose(s2_c, s2, atol=1e-12, rtol=0) and ent_c is None
    assert torch.allclose(lp_c, lp, atol=1e-12, rtol=0)
    lp0, ent0 = completion_logprobs(model, *args, temperature=0.7, with_entropy=True)
    assert torch.equal(lp0, lp) and torch.equal(ent0, ent)


def test_every_forward_component_gives_the_same_sum_pi2(tiny_dir, tiny, monkeypatch):
    from groupo.model import prefix
    from groupo.model.load import load_model

    _, tok = tiny
    model = load_model(tiny_dir).double()
    args = _rows(tok)
    m = args[3].double()
    out = {}
    with torch.no_grad():
        for name in ("naive", "shared", "dense"):
            out[name] = build("forward", name).logprobs(model, *args, temperature=1.3, with_sum_pi2=True)
        monkeypatch.setattr(prefix, "split_supported", lambda model: False)     # "shared" -> the dense mask
        out["shared_dense"] = build("forward", "shared").logprobs(model, *args, temperature=1.3, with_sum_pi2=True)
        out["chunked"] = build("forward", "naive", {"logprob_chunk": 4}).logprobs(model, *args, temperature=1.3,
                                                                                 with_sum_pi2=True)
    assert set(out) == {"naive", "shared", "dense", "shared_dense", "chunked"}
    for name, (lp, ent, s2) in out.items():
        assert ent is None and s2.shape == args[2].shape
        assert torch.allclose(lp * m, out["naive"][0] * m, atol=1e-12, rtol=0), name
        assert torch.allclose(s2 * m, out["naive"][2] * m, atol=1e-12, rtol=0), name


# ----------------------------------------------------------------------------- the loop
BASE = ["model.tiny=false", "model.threads=1", "generation.group_size=2", "generation.prompts_per_step=3",
        "generation.max_new_tokens=5", "generation.temperature=2.0", "train.steps=2", "warmstart.steps=0",
        "task.name=lego", "task.eval_size=4", "eval.n=4", "eval.before=false", "eval.after=false",
        "log.tensorboard=false", "log.progress=false", "checkpoint.every=0", "log.completions_per_step=64"]


def _cfg(tiny_dir, *over):
    return load_config("otb", [f"model.path={tiny_dir}", *BASE, *over])


def _reward(tmp_path):
    f = tmp_path / "r.py"
    f.write_text("def reward(completions, **kw):\n    return [float(len(c) % 3) for c in completions]\n")
    return f"rewards=[{{name: python, path: {f}}}]"


def test_prepare_fills_old_logp_and_sum_pi2(tiny_dir, tmp_path):
    from groupo.train.collect import collect
    from groupo.train.setup import setup
    from groupo.train.update import prepare

    cfg = _cfg(tiny_dir, _reward(tmp_path))
    assert cfg.advantage.needs_sum_pi2 and cfg.train.num_iterations == 1 and not cfg.shaping.needs_logp
    run = setup(cfg, tmp_path / "run")
    col = collect(run, 1)
    d = prepare(run, col)
    ex, r = col.batch.extra, col.rollout
    assert d.old_logp is not None and torch.equal(ex["old_logp"], d.old_logp.cpu())
    assert ex["sum_pi2"].shape == r.completion_ids.shape and ex["sum_pi2"].device.type == "cpu"
    # the same numbers as the naive forward at the sampling temperature (2.0), 0 on padding
    with torch.no_grad():
        lp, _, s2 = completion_logprobs(run.model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask,
                                        temperature=2.0, with_sum_pi2=True)
    m = r.completion_mask.float()
    assert torch.allclose(ex["sum_pi2"] * m, s2.float() * m, atol=1e-6)
    assert torch.allclose(ex["old_logp"] * m, lp.float() * m, atol=1e-6)
    assert (ex["sum_pi2"][m == 0] == 0).all() and (ex["sum_pi2"][m > 0] > 0).all()
    res = cfg.advantage(col.batch)
    assert res.advantages.shape == r.completion_ids.shape


def test_otb_recipe_trains_two_steps_with_its_metrics(tiny_dir, tmp_path):
    from groupo.train.loop import train

    cfg = _cfg(tiny_dir, _reward(tmp_path), "train.lr=1e-3", "checkpoint.every=2")
    assert (cfg.objective.component_name, cfg.aggregation.component_name, cfg.kl.component_name) == \
        ("ppo_clip", "token_mean", "none")
    train(cfg, tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for k in ("otb/baseline_mean", "otb/token_energy_mean", "otb/sum_pi2_mean", "otb/final_energy_mean"):
            assert math.isfinite(r[k]), k
        assert 0 < r["otb/sum_pi2_mean"] <= 1 and r["otb/token_energy_mean"] >= 0
        assert r["grad_norm"] > 0
    assert (tmp_path / "run/checkpoints/step_2/model.safetensors").exists()


@pytest.mark.parametrize("over,needle", [
    (["objective.name=gspo"], "objective 'gspo' takes one per row"),
    (["advantage.eps=-1"], "eps must be >= 0"),
])
def test_otb_bad_combinations_are_one_line_errors(over, needle, tiny_dir):
    with pytest.raises(ConfigError) as e:
        _cfg(tiny_dir, *over)
    assert needle in str(e.value) and "\n" not in str(e.value)
