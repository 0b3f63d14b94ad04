"""Realistic models: a tiny Qwen2 with a byte-level BPE tokenizer trained here (model/tiny_bpe.py),
as users' Qwen2/Llama checkpoints are, with a ChatML chat template (instruct) or none (base).

The tokenizer round-trips task text and renders ChatML; every built-in recipe trains 2 steps on
it through the CLI (grpo, dapo, disco and r3 in the default suite, the others under ``-m slow``:
all 34 took 45 s on the 2-core machine, and the list grows); base models (Qwen2 and Llama) train
with ``template.name=plain`` and stop with one line for ``template.name=chat``; the lean decode
step and split attention take effect on Qwen2 (q/k/v biases, grouped-query attention) with the
same numbers as the plain paths; completion texts are the tokenizer's decoding of the completion
ids, with no byte symbols left in them."""
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from groupo.cli import main
from groupo.config import recipe_names
from groupo.model.load import ModelError, eos_ids, load_model, load_tokenizer
from groupo.model.tiny_bpe import CHATML, SPECIAL, build_tiny_bpe, train_bpe, vocab_and_merges
from test_recipes import EXTRA, SMALL

ROOT = Path(__file__).resolve().parent.parent
FAST = ("grpo", "dapo", "disco", "r3")      # the default suite's share of the recipe runs
TEXTS = ["12+7+40=", "<answer>59</answer>", "l=-d;d=-r;n=-l;r=+1;k=+n;?k", "x = −3 − (−4)\n",
         "<think>Let me think step by step.</think> The answer is <answer>-1</answer>",
         "Using 3 5 7 make 22 with + - * / ( ), each number once.", "  two spaces, tab\tand é, 中文, 🙂",
         "a , b . c ? don 't"]                  # no clean-up of spaces before punctuation in decode


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory):
    """The instruct-style model: ChatML template, eos <|im_end|>, pad <|endoftext|>."""
    return build_tiny_bpe(tmp_path_factory.mktemp("qwen") / "chat", seed=0)


@pytest.fixture(scope="session")
def qwen_base_dir(tmp_path_factory):
    """The base-style model: no chat template, pad = eos = <|endoftext|>."""
    return build_tiny_bpe(tmp_path_factory.mktemp("qwen") / "base", seed=0, chat_template=False)


@pytest.fixture(scope="session")
def llama_base_dir(tmp_path_factory):
    """A Llama base model with the same BPE as a generic ``tokenizer.json`` tokenizer."""
    return build_tiny_bpe(tmp_path_factory.mktemp("llama") / "base", seed=0, chat_template=False, arch="llama")


@pytest.fixture(scope="session")
def qwen(qwen_dir):
    return load_model(qwen_dir), load_tokenizer(qwen_dir)


def _train(model_dir, tmp_path, name="grpo", *extra):
    out = tmp_path / name
    rc = main(["train", name, "--out", str(out), f"model.path={model_dir}", *SMALL, *EXTRA.get(name, []), *extra])
    return rc, out


def _steps(out):
    return [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()]


# -- the tokenizer ---------------------------------------------------------------------------

FINGERPRINT = ("import hashlib, json; from groupo.model.tiny_bpe import train_bpe, vocab_and_merges; "
               "print(hashlib.sha256(json.dumps(vocab_and_merges(train_bpe()), sort_keys=True).encode()).hexdigest())")


def test_bpe_training_is_deterministic_and_fast():
    """Same corpus, same vocab and merges: twice here and in two other processes (other Python
    and Rust hash seeds); training takes well under a second."""
    t = time.perf_counter()
    tok = train_bpe()
    took = time.perf_counter() - t
    vocab, merges = vocab_and_merges(tok)
    assert took < 1.0, took
    assert (vocab, merges) == vocab_and_merges(train_bpe())
    assert len(vocab) == 384 and len(merges) == 384 - 256 - len(SPECIAL)
    assert [vocab[s] for s in SPECIAL] == [0, 1, 2]
    runs = [subprocess.run([sys.executable, "-c", FINGERPRINT], capture_output=True, text=True, check=True,
                           cwd=ROOT, env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    here = hashlib.sha256(json.dumps((vocab, merges), sort_keys=True).encode()).hexdigest()
    assert [r.strip() for r in runs] == [here, here]


def test_same_seed_same_model_directory(qwen_dir, tmp_path):
    again = build_tiny_bpe(tmp_path / "again", seed=0)
    for f in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json", "chat_template.jinja"):
        assert (again / f).read_bytes() == (qwen_dir / f).read_bytes(), f
    other = build_tiny_bpe(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (qwen_dir / "model.safetensors").read_bytes()


def test_tokenizer_round_trips_task_text(qwen):
    _, tok = qwen
    assert type(tok).__name__ == "Qwen2Tokenizer"
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    pieces = tok.convert_ids_to_tokens(tok("x = −3", add_special_tokens=False)["input_ids"])
    assert "Ġ" in "".join(pieces) and "−" not in "".join(pieces)   # byte symbols, 3 for the minus
    assert pieces[-1] == "3" and tok.tokenize("1234") == ["1", "2", "3", "4"]   # digits one by one
    ids = tok("<think>Let me think step by step.</think>", add_special_tokens=False)["input_ids"]
    assert len(ids) < 20                                     # merges learned from the corpus
    marks = tok("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)["input_ids"]
    assert marks[0] == tok.convert_tokens_to_ids("<|im_start|>") and marks[-1] == tok.eos_token_id
    assert tok.decode(marks, skip_special_tokens=True) == "user\nhi"


def test_chat_template_renders_chatml(qwen, qwen_base_dir):
    from groupo.registry import build

    model, tok = qwen
    chat = build("template", "chat", {})
    assert chat("1+2=", tok) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                 "<|im_start|>user\n1+2=<|im_end|>\n<|im_start|>assistant\n")
    with_system = build("template", "chat", {"system": "Be brief."})("q", tok)
    assert with_system.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nq<|im_end|>")
    assert tok.chat_template == CHATML
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert eos_ids(tok, model) == [0, 2]                    # <|im_end|> and <|endoftext|> (generation config)
    base = load_tokenizer(qwen_base_dir)
    assert not base.chat_template and base.eos_token_id == base.pad_token_id == 0
    assert eos_ids(base, load_model(qwen_base_dir)) == [0]


# -- training through the CLI ---------------------------------------------------------------

@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in recipe_names()])
def test_recipe_trains_two_steps_on_qwen2_bpe(name, qwen_dir, tmp_path):
    rc, out = _train(qwen_dir, tmp_path, name)
    assert rc == 0
    assert _steps(out) == [1, 2]
    assert (out / "checkpoints/step_2/model.safetensors").exists()


@pytest.mark.parametrize("base", ["qwen_base_dir", "llama_base_dir"])
def test_base_model_trains_with_the_plain_template(base, tmp_path, request):
    model_dir = request.getfixturevalue(base)
    tok = load_tokenizer(model_dir)
    assert all(tok.decode(tok(t, add_special_tokens=False)["input_ids"]) == t for t in TEXTS)
    rc, out = _train(model_dir, tmp_path, "grpo", "template.name=plain")
    assert rc == 0 and _steps(out) == [1, 2]
    assert main(["eval", str(out), "--n", "4"]) == 0           # the checkpoint's tokenizer and config reload


def test_chat_template_on_a_base_model_is_one_line(qwen_base_dir, tmp_path, capsys):
    rc, out = _train(qwen_base_dir, tmp_path, "grpo")
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and err.startswith("error: ") and "template.name=plain" in err, err
    assert not (out / "metrics.jsonl").exists()


def test_chat_template_refusing_a_system_turn_is_a_user_error(qwen_dir):
    """Gemma's template raises on a system turn (jinja ``raise_exception``): a ModelError naming
    template.system, not a jinja traceback."""
    from groupo.registry import build

    tok = load_tokenizer(qwen_dir)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                         "{{ raise_exception('System role not supported') }}{% endif %}"
                         "<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}")
    assert build("template", "chat", {})("q", tok).startswith("<start_of_turn>user\nq")
    with pytest.raises(ModelError, match=r"System role not supported \(template.system=''"):
        build("template", "chat", {"system": "Be brief."})("q", tok)


# -- the fast paths on Qwen2 ----------------------------------------------------------------

def _rendered(tok, qs):
    return [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in qs]


def test_lean_decode_and_split_attention_take_effect(qwen, monkeypatch):
    from groupo.model import prefix
    from groupo.registry import build
    from groupo.rollout import hf, lean

    model, tok = qwen
    assert lean.supports(model) is None and prefix.split_supported(model)
    assert model.config.model_type == "qwen2" and model.model.layers[0].self_attn.q_proj.bias is not None
    steps = []
    real = lean.LeanDecoder.step
    monkeypatch.setattr(lean.LeanDecoder, "step", lambda self, *a: steps.append(1) or real(self, *a))
    prompts = _rendered(tok, ["12+7=", "a=+1;b=-a;?b", "Using 3 5 7 make 22 with + - * / ( ), each number once."])
    out, ran = {}, {}
    for decode in ("lean", "hf"):
        gen = torch.Generator().manual_seed(5)
        out[decode] = hf.generate(model, tok, prompts, [3, 2, 3], 8, eos_ids(tok, model), generator=gen, decode=decode)
        ran[decode] = len(steps)
    assert ran["lean"] > 0 and ran["hf"] == ran["lean"]    # the lean step ran, for decode="lean" only
    assert torch.equal(out["lean"].completion_ids, out["hf"].completion_ids)
    assert out["lean"].texts == out["hf"].texts
    # the training forward: split attention over the grid gives the naive log-probs (float32)
    r = out["lean"]
    args = (r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask)
    assert prefix.choose(model, *args[:2], args[3], "on") == "split"
    with torch.no_grad():
        a, _ = build("forward", "naive").logprobs(model, *args)
        b, _ = build("forward", "shared").logprobs(model, *args)
    m = r.completion_mask.bool()
    assert torch.allclose(a[m], b[m], atol=1e-5, rtol=0)


def test_completion_texts_are_the_decoded_ids(qwen):
    """Sampled completions (the lean path) and token ids from an engine (``to_rollout``, as vLLM
    returns them): texts are ``tokenizer.decode`` of the ids up to the first end token, special
    tokens skipped, with spaces, newlines and the unicode minus as text, not byte symbols."""
    from groupo.rollout import hf
    from groupo.rollout.base import to_rollout

    model, tok = qwen
    prompts = _rendered(tok, ["12+7=", "x=-1;?x"])
    r = hf.generate(model, tok, prompts, [4, 4], 24, eos_ids(tok, model), generator=torch.Generator().manual_seed(0))
    for ids, mask, text in zip(r.completion_ids, r.completion_mask, r.texts):
        assert text == tok.decode(ids[mask.bool()].tolist(), skip_special_tokens=True)
    answer = "<think>add: 12 + 7</think>\n<answer>−19</answer>"
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    stop = [tok.eos_token_id, 99]                           # ends at <|im_end|>; what follows is cut
    roll = to_rollout(enc, [(0, ids + stop, [0.0] * (len(ids) + 2)), (1, ids, [0.0] * len(ids))], tok,
                      eos_ids(tok, model), "cpu")
    pieces = "".join(tok.convert_ids_to_tokens(ids))
    assert all(c in pieces for c in "ĠĊâ") and roll.texts == [answer, answer]   # byte symbols in, text out
    assert roll.truncated.tolist() == [False, True]
    assert roll.completion_mask.sum(1).tolist() == [len(ids) + 1, len(ids)]
