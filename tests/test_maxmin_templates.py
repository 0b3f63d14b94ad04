"""MaxMin-RLHF advantage (§12) and prompt augmentation templates / format reward (§14)."""
import math
from collections import Counter

import pytest
import torch

from groupo.algo.advantage.maxmin import MaxMin
from groupo.prompts.augmentation import TEMPLATES, PromptAugmentation, TemplateFormat, format_score, template_of
from groupo.registry import RegistryError, build
from groupo.types import Batch, Item

EPS = 1e-4


def _batch(comps, group, names=("a", "b"), weights=None):
    R = torch.tensor(comps, dtype=torch.float32).T.contiguous()  # [N, K]
    w = torch.ones(R.shape[1]) if weights is None else torch.tensor(weights)
    return Batch(rewards=torch.nan_to_num(R, nan=0.0) @ w, group=torch.tensor(group),
                 reward_components=R, reward_weights=w, reward_names=tuple(names))


# a: mean 0.8, b: mean 0.4 -> b is worst-off. Groups ragged: sizes 3 and 2.
A = [1, 0, 1, 1, 1]
B = [0, 1, 0, 0, 1]
G = [0, 0, 0, 1, 1]


def test_maxmin_hard_hand_numbers_ragged():
    res = MaxMin()(_batch([A, B], G))
    s3 = math.sqrt(1 / 3)            # unbiased std of [0, 1, 0]
    s2 = math.sqrt(0.5)              # unbiased std of [0, 1]
    want = [-1 / 3 / (s3 + EPS), 2 / 3 / (s3 + EPS), -1 / 3 / (s3 + EPS), -0.5 / (s2 + EPS), 0.5 / (s2 + EPS)]
    assert torch.allclose(res.advantages, torch.tensor(want, dtype=torch.float64), atol=1e-6)
    assert res.metrics["maxmin/worst"] == 1.0
    assert res.metrics["maxmin/a/mean"] == pytest.approx(0.8)
    assert res.metrics["maxmin/b/mean"] == pytest.approx(0.4)
    assert res.keep.all() and torch.all(res.weights == 1)


def test_maxmin_soft_hand_numbers():
    tau = 0.5
    res = MaxMin(mode="soft", tau=tau)(_batch([A, B], G))
    wb = 1 / (1 + math.exp(-(0.8 - 0.4) / tau))   # softmin weight of b = 0.689974
    wa = 1 - wb
    assert wb == pytest.approx(0.689974, abs=1e-6)
    assert res.metrics["maxmin/a/weight"] == pytest.approx(wa)
    assert res.metrics["maxmin/b/weight"] == pytest.approx(wb)
    assert res.metrics["maxmin/worst"] == 1.0
    # group 0 signal [wa, wb, wa]; group 1 signal [wa, 1]
    d = wb - wa
    m0, s0 = (2 * wa + wb) / 3, math.sqrt(((d / 3) ** 2 * 2 + (2 * d / 3) ** 2) / 2)
    g1 = [wa, 1.0]
    m1, s1 = sum(g1) / 2, abs(1.0 - wa) / math.sqrt(2)
    want = [(wa - m0) / (s0 + EPS), (wb - m0) / (s0 + EPS), (wa - m0) / (s0 + EPS),
            (wa - m1) / (s1 + EPS), (1.0 - m1) / (s1 + EPS)]
    assert torch.allclose(res.advantages, torch.tensor(want, dtype=torch.float64), atol=1e-6)


def test_maxmin_soft_small_tau_equals_hard():
    b = _batch([A, B], G)
    assert torch.allclose(MaxMin(mode="soft", tau=1e-3)(b).advantages, MaxMin()(b).advantages, atol=1e-6)


def test_maxmin_paper_example_and_ties_and_selection():
    # §12 (e): means [0.8, 0.3] -> u_min = the second model
    r1 = [1, 1, 1, 1, 0]
    r2 = [1, 0, 0, 0, 0.5]
    res = MaxMin()(_batch([r1, r2], G, names=("m1", "m2")))
    assert res.metrics["maxmin/worst"] == 1.0 and res.metrics["maxmin/m2/mean"] == pytest.approx(0.3)
    # ties: lowest index
    assert MaxMin()(_batch([B, B], G)).metrics["maxmin/worst"] == 0.0
    # groups picks labels; the worst index is into the selection
    c = [1, 1, 1, 1, 1]
    b3 = _batch([A, B, c], G, names=("a", "b", "c"))
    res = MaxMin(groups=("c", "a"))(b3)
    assert res.metrics["maxmin/worst"] == 1.0 and "maxmin/b/mean" not in res.metrics
    assert torch.allclose(res.advantages, MaxMin(groups=("a",))(b3).advantages)
    with pytest.raises(ValueError, match="unknown reward group"):
        MaxMin(groups=("zzz",))(b3)


def test_maxmin_nan_flat_singleton_and_fallback():
    # NaN ignored in the mean; a component all-NaN is never the worst
    nan = float("nan")
    res = MaxMin()(_batch([[nan] * 5, [0, 1, nan, 0, 1]], G))
    assert res.metrics["maxmin/worst"] == 1.0 and res.metrics["maxmin/b/mean"] == pytest.approx(0.5)
    assert math.isnan(res.metrics["maxmin/a/mean"])
    # all-equal group -> exactly 0; singleton group -> 0
    res = MaxMin()(_batch([[1, 1, 1, 0, 1], [0.3, 0.3, 0.3, 0.2, 0.9]], [0, 0, 0, 1, 2]))
    assert torch.all(res.advantages == 0)
    # no components: the scalar reward is the single group (= GRPO)
    b = Batch(rewards=torch.tensor([1.0, 0.0, 0.0, 1.0]), group=torch.tensor([0, 0, 0, 0]))
    res = MaxMin()(b)
    assert torch.allclose(res.advantages, torch.tensor([1, -1, -1, 1], dtype=torch.float64) * 0.5 / (math.sqrt(1 / 3) + EPS), atol=1e-9)
    assert res.metrics["maxmin/reward/mean"] == 0.5


def test_maxmin_registry_validation():
    m = build("advantage", "maxmin", {"groups": ["a", "b"], "mode": "soft", "tau": 2})
    assert m.groups == ("a", "b") and m.tau == 2.0
    with pytest.raises(RegistryError):
        build("advantage", "maxmin", {"mode": "median"})
    with pytest.raises(RegistryError):
        build("advantage", "maxmin", {"tau": 0})


# ---------------------------------------------------------------- prompt augmentation

@pytest.fixture(scope="module")
def tok():
    from groupo.model.tiny import build_tokenizer
    return build_tokenizer()


def test_registry_has_the_13_templates():
    assert len(TEMPLATES) == 13
    for t in TEMPLATES.values():
        assert t.description and t.system and t.pattern


def test_choose_deterministic_across_instances_and_varies():
    a, b = PromptAugmentation(seed=7), PromptAugmentation(seed=7)
    assert [a.choose(3, i) for i in range(200)] == [b.choose(3, i) for i in range(200)]
    assert [a.choose(3, i) for i in range(200)] != [a.choose(4, i) for i in range(200)]
    assert [a.choose(3, i) for i in range(200)] != [PromptAugmentation(seed=8).choose(3, i) for i in range(200)]
    counts = Counter(a.choose(0, i) for i in range(2600))
    assert set(counts) == set(TEMPLATES)
    assert min(counts.values()) > 100        # uniform: about 200 each
    sub = PromptAugmentation(templates=("abel", "open-r1"), seed=1)
    assert {sub.choose(0, i) for i in range(100)} == {"abel", "open-r1"}
    with pytest.raises(ValueError, match="unknown template"):
        PromptAugmentation(templates=("nope",))


def test_call_keyed_on_question_text(tok):
    a, b = PromptAugmentation(seed=3), PromptAugmentation(seed=3)
    qs = [f"What is {i}+{i}?" for i in range(100)]
    assert [a(q, tok) for q in qs] == [b(q, tok) for q in qs]
    assert len({template_of(a(q, tok)) for q in qs}) > 5


@pytest.mark.parametrize("role", ["system", "user"])
@pytest.mark.parametrize("use_chat", [True, False])
def test_template_of_round_trip(tok, role, use_chat):
    pa = PromptAugmentation(use_chat=use_chat, instruction_role=role)
    for name in TEMPLATES:
        prompt = pa.render("Compute 2+3.", tok, name)
        assert "Compute 2+3." in prompt
        assert template_of(prompt) == name
    assert template_of("just a question") is None


def test_chat_markup_from_tokenizer(tok):
    user_only = tok.apply_chat_template([{"role": "user", "content": "XQX"}], tokenize=False)
    user_token = user_only[:user_only.index("XQX")]
    gen = tok.apply_chat_template([{"role": "user", "content": "XQX"}], tokenize=False, add_generation_prompt=True)
    gen_prompt = gen[len(user_only):]
    assert user_token == "<|user|>" and gen_prompt == "<|assistant|>"
    pa = PromptAugmentation(instruction_role="user")
    for name, t in TEMPLATES.items():
        p = pa.render("Q?", tok, name)
        assert p.startswith(user_token)
        assert p.endswith(gen_prompt + t.prefill)
        if not t.prefill:
            assert p.endswith(gen_prompt)
    # default: the instruction is the system message
    p = PromptAugmentation().render("Q?", tok, "qwen-math")
    assert p == f"<|system|>{TEMPLATES['qwen-math'].system}<|end|><|user|>Q?<|end|><|assistant|>"
    # no chat template (or use_chat off) -> plain text
    plain = PromptAugmentation(use_chat=False).render("Q?", tok, "abel")
    assert "<|" not in plain and plain.endswith("Assistant: Let's think step by step.\n")


def test_format_score_hand_cases():
    ok = "<think>\nx\n</think>\n<answer>\n\\boxed{3}\n</answer>"
    assert format_score("open-r1", ok) == 1.0 and format_score("open-r1", ok, "parts") == 1.0   # §14 (e)
    assert format_score("open-r1", "<think>\nx\n</think>\n", "parts") == 0.5
    assert format_score("open-r1", "<think>\nx\n</think>\n") == 0.0
    # teacher: <think>\n is prefilled, so the completion starts inside the think block
    t_ok = "x\n</think>\n<answer>\n\\boxed{3}\n</answer>"
    assert format_score("open-r1-teacher", t_ok) == 1.0 and format_score("open-r1-teacher", t_ok, "parts") == 1.0
    assert format_score("open-r1-teacher", ok, "parts") == 1.0 and format_score("open-r1-teacher", ok) == 0.0
    r1 = "<think> a </think> <answer> \\boxed{1} </answer>"
    assert format_score("deepseek-r1", r1) == 1.0 and format_score("deepseek-r1", r1, "parts") == 1.0
    assert format_score("deepseek-r1", "<think> a </think> <think> </think> <answer>x</answer>", "parts") == 0.5
    assert format_score("deepseek-r1-teacher", " a </think><answer>1</answer>") == 1.0
    twice = "The final answer is: \\boxed{1}. The final answer is: \\boxed{1}"
    assert format_score("lm_eval_prompt1", twice) == 0.0 and format_score("lm_eval_prompt1", twice, "parts") == 0.0  # §14 (e)
    assert format_score("lm_eval_prompt4", "so The final answer is: \\boxed{2}") == 1.0
    assert format_score("abel", "so \\boxed{2}") == 1.0 and format_score("abel", "so 2") == 0.0
    assert format_score("abel", "so 2", "parts") == 1.0      # repo: constant 1 for these templates
    assert format_score("deepseek-r1", "<think> a <think> b </think> <answer>1</answer>") == 0.0
    refl = "<solution>\nx\n</solution>\n<check>\nLet's verify step by step: ok\n</check>"
    assert format_score("reflective_prompt", refl) == 1.0 and format_score("reflective_prompt", refl, "parts") == 1.0
    assert format_score("reflective_prompt-teacher", refl[len("<solution>\n"):]) == 1.0
    assert format_score("reflective_prompt-teacher", refl[len("<solution>\n"):], "parts") == 1.0
    assert format_score("reflective_prompt-teacher", refl) == 0.0


def test_template_format_reward_component(tok):
    pa = PromptAugmentation()
    prompts = [pa.render("Q1", tok, "open-r1")] * 2 + [pa.render("Q2", tok, "lm_eval_prompt1")] * 2 + ["raw"]
    comps = ["<think>\nx\n</think>\n<answer>\n1\n</answer>", "no tags",
             "The final answer is: \\boxed{1}", "The final answer is: 1 The final answer is: 1", "x"]
    items = [Item(question="q", answer="1")] * 5
    rf = build("reward", "template_format", {})
    assert rf(comps, items, prompts=prompts) == [1.0, 0.0, 1.0, 0.0, None]
    assert rf(comps, items) == [None] * 5
    parts = TemplateFormat(scoring="parts")
    assert parts(comps, items, prompts=prompts) == [1.0, 0.0, 1.0, 0.0, None]
    with pytest.raises(RegistryError):
        build("reward", "template_format", {"scoring": "exact"})


@pytest.mark.slow
def test_template_draws_identical_across_processes():
    """Same seed, separate interpreters with different hash seeds: the same template per
    (step, index), so a resumed or rerun job sees the same prompts."""
    import os
    import subprocess
    import sys

    code = ("from groupo.prompts.augmentation import PromptAugmentation as P; a = P(seed=5); "
            "print(','.join(a.choose(s, i) for s in range(3) for i in range(40)))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": h}).stdout for h in ("1", "2", "random")}
    assert len(outs) == 1 and len(next(iter(outs)).split(",")) == 120
