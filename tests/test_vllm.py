"""The vLLM backend's glue (groupo/rollout/vllm.py) against a fake ``vllm`` module
(tests/fake_vllm.py: its sampler is the training model itself, so its log-probs must match the
training forward exactly): padding conventions equal to groupo's sampler's, log-prob alignment,
seeds, the wake / sync / sleep order, settings from the backend's fields, LoRA weights merged out
of place, a CPU training run through it, and a clear one-line error without vllm or CUDA."""
import copy
import json
import math
import sys

import pytest
import torch
from fake_vllm import Logprob

from groupo.algo.tis import truncated_is_weights
from groupo.registry import build
from groupo.rollout import vllm as vb

PROMPTS = ["a=+1;?a", "b=-2;c=+b;?c", "x=+3;?x"]


def test_vllm_backend_rollout_matches_hf_conventions_and_training_logprobs(fake_vllm, tiny_dir):
    from groupo.model.forward import completion_logprobs
    from groupo.model.load import eos_ids, load_model, load_tokenizer
    from groupo.rollout import generate

    model, tok = load_model(tiny_dir), load_tokenizer(tiny_dir)
    eos, sizes, temp = eos_ids(tok, model), [3, 2, 3], 1.3
    r = build("rollout", "vllm").generate(model, tok, PROMPTS, sizes, 6, eos, temperature=temp,
                                          generator=torch.Generator().manual_seed(0))
    llm = fake_vllm.made[0]
    assert llm.kw["model"] == str(tiny_dir) and llm.kw["dtype"] == "float32" and llm.kw["enable_sleep_mode"]
    assert llm.kw["distributed_executor_backend"] == "external_launcher"
    assert llm.kw["logprobs_mode"] == "processed_logprobs" and llm.kw["skip_tokenizer_init"]
    # the hf sampler's conventions: same prompt tensors and group index, texts decoded alike
    h = generate(model, tok, PROMPTS, sizes, 6, eos, temperature=temp, generator=torch.Generator().manual_seed(0))
    assert torch.equal(r.prompt_ids, h.prompt_ids) and torch.equal(r.prompt_mask, h.prompt_mask)
    assert torch.equal(r.group, h.group) and r.group.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    m = r.completion_mask
    assert torch.equal(m, (m.cumsum(1) == torch.arange(1, m.shape[1] + 1)).long())   # ones, then zeros
    assert bool((r.completion_ids[m == 0] == tok.pad_token_id).all())
    assert r.texts == tok.batch_decode([c[k.bool()].tolist() for c, k in zip(r.completion_ids, m)],
                                       skip_special_tokens=True)
    ends_eos = torch.tensor([bool(c[k.bool()][-1].item() in eos) for c, k in zip(r.completion_ids, m)])
    assert torch.equal(r.truncated, ~ends_eos)
    # the sampler's log-probs are aligned with the training forward's: TIS weights are 1
    lp, _ = completion_logprobs(model, r.prompt_ids, r.prompt_mask, r.completion_ids, m, temperature=temp)
    assert r.sampler_logp.shape == lp.shape and bool((r.sampler_logp[m == 0] == 0).all())
    assert torch.allclose(lp[m.bool()], r.sampler_logp[m.bool()], atol=1e-4)
    w = truncated_is_weights(lp, r.sampler_logp, m, cap=2.0)
    assert torch.allclose(w[m.bool()], torch.ones(int(m.sum())), atol=1e-3)


@pytest.mark.parametrize("level", [2, 1])
def test_vllm_backend_seeds_wake_sync_sleep_order(fake_vllm, tiny_dir, level):
    """Level 2 (default) discards the weights at each sleep: every generation wakes the weights,
    pushes them again and then wakes the KV cache (the fake's discarded weights are NaN, so a
    missing push fails). Level 1 keeps a CPU copy and pushes only after an optimizer step."""
    from groupo.model.load import eos_ids, load_model, load_tokenizer

    model, tok = load_model(tiny_dir), load_tokenizer(tiny_dir)
    eos = eos_ids(tok, model)
    backend = build("rollout", "vllm", {"sleep_level": level})
    sync = ["wake:weights", "load_weights", "reset_prefix_cache", "wake:kv_cache", "generate", f"sleep{level}"]

    def run(gen, prompts=PROMPTS, sizes=(2, 2, 2)):
        return backend.generate(model, tok, prompts, list(sizes), 5, eos, temperature=1.0, generator=gen)

    a = run(torch.Generator().manual_seed(7))
    llm = fake_vllm.made[0]
    assert llm.kw["enable_sleep_mode"] and vb.get_engine(model, backend).sleep_level == level
    # first use: weights synced from the in-memory model (it may differ from the directory)
    assert llm.calls == ["load_weights", "reset_prefix_cache", "generate", f"sleep{level}"]
    b = run(torch.Generator().manual_seed(7))
    assert torch.equal(a.completion_ids, b.completion_ids)                 # same seed, same samples
    # weights unchanged: level 2 pushes them anyway (discarded), level 1 wakes its CPU copy
    assert llm.calls[4:] == (sync if level == 2 else ["wake:weights,kv_cache", "generate", "sleep1"])
    # one generator per prompt (multi-process runs): a prompt's samples do not depend on the others
    gens = [torch.Generator().manual_seed(100 + j) for j in range(3)]
    c = run(gens)
    alone = run([torch.Generator().manual_seed(101)], PROMPTS[1:2], (2,))
    rows = (c.group == 1).nonzero().squeeze(1)
    w = alone.completion_ids.shape[1]
    assert torch.equal(c.completion_ids[rows][:, :w], alone.completion_ids)
    # an optimizer step (the loop tells the backend): wake weights, sync, reset cache, wake KV cache
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(3.0)
    backend.weights_changed(model)
    n = len(llm.calls)
    run(torch.Generator().manual_seed(7))
    assert llm.calls[n:] == sync
    for k, p in model.named_parameters():                                 # what the last push wrote
        assert torch.equal(p, llm.loaded[k]), k
    assert llm.calls.count("load_weights") == (5 if level == 2 else 2)       # every generation / first + step
    assert len(fake_vllm.made) == 1                                         # one engine per process


def test_vllm_seeds_unseeded_and_engine_args(fake_vllm, tiny_dir):
    """The backend's own fields configure the engine (no environment variables)."""
    from groupo.config import load_config
    from groupo.model.load import load_model

    cfg = load_config("grpo", [f"model.path={tiny_dir}", "rollout.name=vllm", "rollout.seeded=false",
                               "rollout.engine_args={max_num_seqs: 512}", "rollout.gpu_memory_utilization=0.25",
                               "rollout.sleep_level=1"])
    model = load_model(tiny_dir)
    eng = vb.get_engine(model, cfg.rollout, autocast=torch.bfloat16)   # float32 weights, bf16 forward: vLLM in bf16
    assert not eng.seeded and eng.llm.kw["max_num_seqs"] == 512 and eng.llm.kw["gpu_memory_utilization"] == 0.25
    assert eng.llm.kw["dtype"] == "bfloat16" and eng.sleep_level == 1
    assert vb.engine_dtype(model, build("rollout", "vllm", {"dtype": "float16"})) == "float16"
    assert vb.engine_dtype(model, cfg.rollout) == torch.float32
    s1 = vb.prompt_seeds(torch.Generator().manual_seed(3), 4)
    s2 = vb.prompt_seeds(torch.Generator().manual_seed(3), 4)
    assert s1 == s2 and len(set(s1)) == 4 and all(0 <= s < 2 ** 30 for s in s1)
    assert vb.prompt_seeds([torch.Generator().manual_seed(3)], 1)[0] == s1[0]
    assert vb.prompt_seeds(None, 2) == [None, None]


def test_to_rollout_by_hand():
    from groupo.model.tiny import build_tokenizer
    from groupo.rollout.base import to_rollout

    tok = build_tokenizer()
    pad, eos = tok.pad_token_id, tok.eos_token_id
    x, y = tok.convert_tokens_to_ids("x"), tok.convert_tokens_to_ids("y")
    enc = [[x, y, x], [y]]
    comps = [(0, [x, eos], [-0.5, -0.1]),              # stops at EOS: mask 2, not truncated
             (0, [y, y, y], [-1.0, -2.0, -3.0]),       # no EOS: truncated
             (1, [eos, x, y], [-0.2, -9.0, -9.0]),     # tokens after EOS are cut
             (1, [x, y, eos], [-0.3, -0.4, -0.6])]     # EOS on the last position: not truncated
    r = to_rollout(enc, comps, tok, [eos], "cpu")
    assert r.prompt_ids.tolist() == [[x, y, x], [x, y, x], [pad, pad, y], [pad, pad, y]]
    assert r.prompt_mask.tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 1], [0, 0, 1]]
    assert r.completion_ids.tolist() == [[x, eos, pad], [y, y, y], [eos, pad, pad], [x, y, eos]]
    assert r.completion_mask.tolist() == [[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]]
    assert r.truncated.tolist() == [False, True, False, False]
    assert r.group.tolist() == [0, 0, 1, 1]
    assert r.texts == ["x", "yyy", "", "xy"]
    assert torch.allclose(r.sampler_logp, torch.tensor([[-0.5, -0.1, 0], [-1, -2, -3], [-0.2, 0, 0], [-0.3, -0.4, -0.6]]))
    lps = vb._sampled_logprobs([{x: Logprob(-0.5)}, {}], [x, y])     # a position vLLM gave nothing for: NaN
    assert lps[0] == -0.5 and math.isnan(lps[1])


def test_lora_inference_weights_are_merged_out_of_place(tiny_dir):
    pytest.importorskip("peft")
    from groupo.model.load import add_lora, load_model

    plain = load_model(tiny_dir)
    model = add_lora(load_model(tiny_dir), 4, 8.0, 0.0, "all-linear")
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)                       # fresh adapters are zero; make them count
    before = {n: p.clone() for n, p in model.named_parameters()}
    got = dict(vb.inference_weights(model))
    assert set(got) == {n for n, _ in plain.named_parameters()}
    merged = copy.deepcopy(model).merge_and_unload()
    for n, p in merged.named_parameters():
        assert torch.allclose(got[n], p, atol=1e-6), n
    assert any(not torch.allclose(got[n], p) for n, p in plain.named_parameters())   # adapters changed weights
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), f"{n} changed: the training model must not be merged in place"


def test_training_step_through_the_vllm_backend_on_cpu(fake_vllm, tiny_dir, tmp_path):
    """The loop with rollout.name=vllm: weights synced after every optimizer step and
    the TIS weights are 1 (this sampler is exact)."""
    from groupo.config import load_config
    from groupo.train.loop import train

    cfg = load_config("demo", [f"model.path={tiny_dir}", "model.tiny=false", "model.threads=1", "model.device=cpu",
                               "rollout.name=vllm", "generation.group_size=2", "generation.prompts_per_step=2",
                               "generation.max_new_tokens=3", "train.steps=2", "warmstart.steps=0",
                               "eval.before=false", "eval.after=false", "log.tensorboard=false", "log.progress=false",
                               "task.eval_size=4", "checkpoint.every=0"])
    train(cfg, tmp_path / "run")
    llm = fake_vllm.made[0]
    assert llm.calls.count("generate") == 2 and llm.calls.count("load_weights") == 2   # first use + after step 1
    assert llm.calls[-1] == "sleep2"
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(row["tis/mean_weight"] == pytest.approx(1.0, abs=1e-3) for row in rows if "tis/mean_weight" in row)
    assert any("tis/mean_weight" in row for row in rows)


def test_vllm_backend_without_vllm_or_gpu_is_one_clear_error(tiny, monkeypatch):
    model, tok = tiny
    from groupo.model.load import ModelError

    generate = build("rollout", "vllm").generate
    monkeypatch.setattr(vb, "_ENGINE", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match=r"rollout.name=vllm needs `pip install groupo\[vllm\]` and a CUDA GPU "
                                         r"\(no CUDA device is visible\)"):
        generate(model, tok, ["a=+1;?a"], [2], 3, [tok.eos_token_id])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", None)         # import vllm -> ImportError
    with pytest.raises(ModelError, match=r"\(vllm is not installed\)"):
        generate(model, tok, ["a=+1;?a"], [2], 3, [tok.eos_token_id])


