"""``reward_model``: a tiny random-init LlamaForSequenceClassification (num_labels=1) with the
character tokenizer of groupo/model/tiny.py, saved to a tmp dir, scores completions exactly as a
by-hand forward does (batched and padded vs one text at a time), renders conversational items
with its chat template, is loaded once, gives one-line errors, and trains through the CLI."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from groupo.registry import RegistryError, build
from groupo.rewards import RewardSet
from groupo.rewards import model as rm
from groupo.types import Item


def _save_classifier(path, num_labels: int = 1, seed: int = 0):
    from transformers import LlamaForSequenceClassification

    from groupo.model.tiny import build_tokenizer, tiny_config

    tok = build_tokenizer()
    cfg = tiny_config(len(tok), hidden=32, layers=2, heads=2, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id)
    cfg.num_labels, cfg.tie_word_embeddings = num_labels, False
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(cfg)
    with torch.no_grad():
        model.score.weight.mul_(50.0)         # scores of order 1, so that differences between texts show
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    return _save_classifier(tmp_path_factory.mktemp("rm") / "rm")


@pytest.fixture(scope="module")
def by_hand(rm_dir):
    """Score one text alone (no padding) with a separately loaded copy of the model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    tok = AutoTokenizer.from_pretrained(rm_dir)

    def score(text: str) -> float:
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            return float(model(input_ids=ids).logits[0, 0])

    return score


PROMPTS = ["Q: 1+1=", "Q: what is the value of a if a = -b and b = +1?", "x", "Say hi:\n"]
COMPLETIONS = ["2", " a = -1 <answer>-1</answer>", "yz" * 20, ""]


def _rows(n: int = 8):
    prompts = [PROMPTS[i % 4] for i in range(n)]
    completions = [COMPLETIONS[(i * 3) % 4] + str(i) for i in range(n)]
    items = [Item(question=p, answer="0") for p in prompts]
    return prompts, completions, items


# ------------------------------------------------------------------ scores

@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_scores_equal_a_forward_of_each_text_alone(rm_dir, by_hand, batch_size):
    prompts, completions, items = _rows()
    reward = build("reward", "reward_model", {"path": str(rm_dir), "batch_size": batch_size, "device": "cpu"})
    got = reward(completions, items, prompts=prompts)
    want = [by_hand(p + c) for p, c in zip(prompts, completions)]
    assert all(isinstance(v, float) for v in got)
    assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-5, rtol=0)
    assert torch.tensor(want).std() > 1e-2             # the texts do get different scores


def test_without_prompts_the_question_is_the_prompt(rm_dir, by_hand, tiny_dir):
    reward = build("reward", "reward_model", {"path": str(rm_dir), "device": "cpu"})
    (got,) = reward(["42"], [Item(question="Q: 6*7=", answer="42")])
    assert got == pytest.approx(by_hand("Q: 6*7=42"), abs=1e-5)
    assert reward([], []) == []
    other = build("reward", "reward_model", {"path": str(rm_dir), "device": "cpu", "tokenizer": str(tiny_dir)})
    assert other(["42"], [Item(question="Q: 6*7=", answer="42")]) == pytest.approx([got], abs=1e-5)


def test_conversational_items_use_the_reward_models_chat_template(rm_dir, by_hand):
    msgs = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"})
    prefill = ({"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<answer>"})
    items = [Item(question="What is 2+2?", answer="4", messages=msgs),
             Item(question="2+2?", answer="4", messages=prefill)]
    policy_prompts = ["POLICY-RENDERED 1", "POLICY-RENDERED 2"]     # what the policy saw: not used
    reward = build("reward", "reward_model", {"path": str(rm_dir), "device": "cpu"})
    got = reward(["4", "4</answer>"], items, prompts=policy_prompts)
    hand = ["<|system|>Be brief.<|end|><|user|>What is 2+2?<|end|><|assistant|>4<|end|>",
            "<|user|>2+2?<|end|><|assistant|><answer>4</answer><|end|>"]     # the prefill is continued
    assert reward.texts(["4", "4</answer>"], items, policy_prompts, rm._load(str(rm_dir), "", "cpu", "float32")[1]) \
        == hand
    assert got == pytest.approx([by_hand(t) for t in hand], abs=1e-5)

    # render=text: the policy's prompt text + completion, as for plain items
    text = build("reward", "reward_model", {"path": str(rm_dir), "device": "cpu", "render": "text"})
    assert text(["4"], items[:1], prompts=policy_prompts[:1]) == pytest.approx([by_hand("POLICY-RENDERED 14")],
                                                                                abs=1e-5)
    # render=chat: a plain item becomes one user turn through the reward model's template
    chat = build("reward", "reward_model", {"path": str(rm_dir), "device": "cpu", "render": "chat"})
    (got,) = chat(["4"], [Item(question="2+2?", answer="4")], prompts=["ignored"])
    assert got == pytest.approx(by_hand("<|user|>2+2?<|end|><|assistant|>4<|end|>"), abs=1e-5)


def test_no_chat_template_falls_back_to_prompt_plus_completion(rm_dir, by_hand, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(rm_dir, plain)
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        p = plain / name
        if p.suffix == ".jinja":
            p.unlink(missing_ok=True)
        else:
            cfg = json.loads(p.read_text())
            cfg.pop("chat_template", None)
            p.write_text(json.dumps(cfg))
    item = Item(question="q", answer="a", messages=({"role": "user", "content": "q"},))
    reward = build("reward", "reward_model", {"path": str(plain), "device": "cpu"})
    assert reward(["done"], [item], prompts=["<prompt>"]) == pytest.approx([by_hand("<prompt>done")], abs=1e-5)
    with pytest.raises(rm.ModelError, match="render=chat but the tokenizer of .* has no chat template"):
        build("reward", "reward_model", {"path": str(plain), "device": "cpu", "render": "chat"})(["x"], [item])


def test_truncation_keeps_the_end_and_dtype_is_applied(rm_dir, by_hand):
    reward = build("reward", "reward_model", {"path": str(rm_dir), "device": "cpu", "max_length": 5})
    (got,) = reward(["0123456789"], [Item(question="long prompt ", answer="")], prompts=["long prompt "])
    assert got == pytest.approx(by_hand("56789"), abs=1e-5)
    bf16 = build("reward", "reward_model", {"path": str(rm_dir), "device": "cpu", "dtype": "bfloat16"})
    prompts, completions, items = _rows(4)
    got16 = bf16(completions, items, prompts=prompts)
    assert next(rm._load(str(rm_dir), "", "cpu", "bfloat16")[0].parameters()).dtype == torch.bfloat16
    assert got16 == pytest.approx([by_hand(p + c) for p, c in zip(prompts, completions)], abs=0.1)


def test_loaded_once_on_first_call_not_when_the_config_is_built(rm_dir, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    monkeypatch.setattr(rm, "_MODELS", {})
    loads = []
    real = AutoModelForSequenceClassification.from_pretrained
    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained",
                        lambda *a, **k: loads.append(a) or real(*a, **k))
    specs = [{"name": "reward_model", "path": str(rm_dir), "device": "cpu"}]
    sets = [RewardSet(specs), RewardSet(specs)]
    assert loads == []
    prompts, completions, items = _rows(3)
    a = sets[0](completions, items, prompts=prompts)
    b = sets[1](completions, items, prompts=prompts)
    assert len(loads) == 1 and torch.equal(a, b) and a.shape == (3, 1)
    model, tok = next(iter(rm._MODELS.values()))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.config.pad_token_id == tok.pad_token_id


def test_pad_token_is_eos_when_the_tokenizer_has_none(tmp_path, by_hand, rm_dir):
    nopad = tmp_path / "nopad"
    shutil.copytree(rm_dir, nopad)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        p = nopad / name
        if p.exists():
            cfg = json.loads(p.read_text())
            cfg.pop("pad_token", None)
            p.write_text(json.dumps(cfg))
    model, tok = rm._load(str(nopad), "", "cpu", "float32")
    assert tok.pad_token == tok.eos_token == "<|end|>" and model.config.pad_token_id == tok.eos_token_id
    prompts, completions, items = _rows(4)
    got = build("reward", "reward_model", {"path": str(nopad), "device": "cpu"})(completions, items, prompts=prompts)
    assert got == pytest.approx([by_hand(p + c) for p, c in zip(prompts, completions)], abs=1e-5)


# ------------------------------------------------------------------ errors

def _one_line_error(spec: dict) -> str:
    with pytest.raises(RegistryError) as e:
        RewardSet([{"name": "reward_model", **spec}])
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_one_line_errors(tiny_dir, rm_dir, tmp_path):
    msg = _one_line_error({"path": str(tiny_dir)})
    assert "is a LlamaForCausalLM, not a sequence-classification model" in msg
    two = _save_classifier(tmp_path / "two", num_labels=2)
    assert "has num_labels=2 (LABEL_0, LABEL_1)" in _one_line_error({"path": str(two)})
    assert "reward model directory" in _one_line_error({"path": str(tmp_path / "missing")})
    assert "no config.json" in _one_line_error({"path": str(tmp_path)})
    assert "needs 'path'" in _one_line_error({})
    assert "reward tokenizer directory" in _one_line_error({"path": str(rm_dir), "tokenizer": "./no/tokenizer"})
    assert "offline" in _one_line_error({"path": "nobody-groupo/no-such-reward-model"})
    assert "batch_size must be >= 1" in _one_line_error({"path": str(two), "batch_size": 0})
    assert "not one of ['auto', 'cpu', 'cuda']" in _one_line_error({"path": str(two), "device": "tpu"})

    # configs that name no architecture (loaded with num_labels=1, as TRL): over a causal LM's
    # weights the score head is missing; over a 2-label classifier's it has the wrong shape
    for src, error in ((tiny_dir, r"checkpoint lacks score\.weight .*not a trained reward model"),
                       (two, r"its score head does not have one output")):
        anon = tmp_path / f"anon_{src.name}"
        shutil.copytree(src, anon)
        cfg = json.loads((anon / "config.json").read_text())
        cfg.pop("architectures", None)
        (anon / "config.json").write_text(json.dumps(cfg))
        reward = build("reward", "reward_model", {"path": str(anon), "device": "cpu"})
        with pytest.raises(rm.ModelError, match=error) as e:
            reward(["x"], [Item(question="q", answer="a")])
        assert "\n" not in str(e.value)


# ------------------------------------------------------------------ training

def test_trains_two_steps_through_the_cli(tiny_dir, rm_dir, tmp_path):
    from groupo.cli import main

    out = tmp_path / "run"
    small = ["model.tiny=false", "model.threads=1", "generation.group_size=4", "generation.prompts_per_step=2",
             "generation.max_new_tokens=4", "train.steps=2", "train.micro_batches=2", "warmstart.steps=0",
             "task.name=lego", "task.eval_size=4", "eval.n=4", "eval.before=false", "eval.after=false",
             "log.tensorboard=false", "log.progress=false", "checkpoint.every=0"]
    rewards = f"rewards=[{{name: reward_model, path: {rm_dir}, batch_size: 3}}, {{name: correct}}]"
    assert main(["train", "grpo", "--out", str(out), f"model.path={tiny_dir}", *small, rewards]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(isinstance(r["reward/reward_model/mean"], float) and r["reward/reward_model/mean"] == r[
        "reward/reward_model/mean"] for r in rows)
    assert all(abs(r["reward/reward_model/mean"]) > 0 for r in rows)
