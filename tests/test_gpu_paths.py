"""GPU-only paths stay optional and are checked on CPU as far as they can be:
* importing groupo, building a config and training on CPU never import vllm or peft;
* truncated importance-sampling weights from hand numbers;
* the vLLM backend's glue against a fake ``vllm`` module (its sampler is the training
  model itself, so its log-probs must match the training forward exactly): padding
  conventions equal to the hf sampler's, log-prob alignment, seeds, the wake / sync /
  sleep order, LoRA weights merged out of place, and a CPU training run through it;
* a clear one-line error without vllm or CUDA; the real-model recipes validate;
* bench/gpu_smoke.* parse, show --help, refuse without CUDA, and the estimate table in
  docs/scaling.md is the script's output (slow: a CPU dry run of the script's checks).
Nothing here needs a GPU; docs/gpu.md says what has not run on one yet."""
import copy
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from groupo.algo.tis import tis_stats, truncated_is_weights
from groupo.registry import build
from groupo.rollout import vllm as vb

ROOT = Path(__file__).resolve().parent.parent


def test_import_and_cpu_train_never_import_optional_gpu_packages(tiny_dir, tmp_path):
    code = (
        "import sys, groupo\n"
        "from groupo.config import load_config\n"
        "cfg0 = load_config('demo', ['model.path=x'])\n"
        "bad0 = [m for m in sys.modules if m.split('.')[0] in ('vllm', 'peft')]\n"
        "print('CONFIG', bad0)\n"
        "from groupo.train.loop import train\n"
        f"cfg = load_config('demo', ['model.path={tiny_dir}', 'model.tiny=false', 'model.threads=1', "
        "'generation.group_size=2', 'generation.prompts_per_step=2', 'generation.max_new_tokens=3', "
        "'train.steps=1', 'warmstart.steps=0', 'eval.before=false', 'eval.after=false', "
        "'log.tensorboard=false', 'task.eval_size=4'])\n"
        f"train(cfg, r'{tmp_path / 'run'}')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('vllm', 'peft', 'flash_attn', 'deepspeed')]\n"
        "print('IMPORTED', bad)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "CONFIG []" in r.stdout and "IMPORTED []" in r.stdout


# ----------------------------------------------------------------------------- TIS
def test_truncated_is_weights_by_hand():
    old = torch.tensor([[-1.0, -2.0, -0.5, -3.0]])
    smp = torch.tensor([[-1.0, -1.0, -2.0, -3.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    w = truncated_is_weights(old, smp, mask, cap=2.0)
    # ratios exp(0)=1, exp(-1)=0.3679, exp(1.5)=4.48 -> capped at 2, masked -> 0
    assert w.tolist()[0] == pytest.approx([1.0, math.exp(-1.0), 2.0, 0.0])
    assert not w.requires_grad
    with pytest.raises(ValueError):
        truncated_is_weights(old, smp, mask, cap=0)
    with pytest.raises(ValueError, match="shapes differ"):
        truncated_is_weights(old, smp[:, :3], mask, cap=2.0)


def test_truncated_is_weights_cap_and_padding_by_hand():
    # row 0: diff +5 nats -> exp(5)=148 capped at 3; diff -0.5 -> 0.6065
    # row 1: padding holds inf / nan sampler values: weight 0, not nan
    old = torch.tensor([[0.0, -1.0], [-0.2, 0.0]], requires_grad=True)
    smp = torch.tensor([[-5.0, -0.5], [-0.2, float("nan")]])
    mask = torch.tensor([[1, 1], [1, 0]])
    w = truncated_is_weights(old, smp, mask, cap=3.0)
    assert torch.allclose(w, torch.tensor([[3.0, math.exp(-0.5)], [1.0, 0.0]]))
    s = tis_stats(w, old.detach(), smp, mask, cap=3.0)
    # mean weight (3 + 0.6065 + 1) / 3; one of three tokens capped; |diff| (5 + 0.5 + 0) / 3
    assert s["tis/mean_weight"] == pytest.approx((3 + math.exp(-0.5) + 1) / 3)
    assert s["tis/capped_frac"] == pytest.approx(1 / 3)
    assert s["tis/abs_logp_diff"] == pytest.approx(5.5 / 3)


# ----------------------------------------------------------------------------- fake vllm
class _Logprob:
    def __init__(self, v):
        self.logprob = v


class _SamplingParams:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _FakeLLM:
    """vllm.LLM stand-in: samples from its own copy of the model, token by token (full
    forward each time), child i of a request with seed s from torch.Generator(s + i), as
    vLLM does; log-probs after temperature. Records calls and refuses to run asleep."""
    made: list = []

    def __init__(self, **kw):
        from groupo.model.load import load_model

        self.kw, self.calls, self.asleep = kw, [], set()
        self.model = load_model(kw["model"]).eval()
        runner = types.SimpleNamespace(model=self)
        self.llm_engine = types.SimpleNamespace(
            model_executor=types.SimpleNamespace(driver_worker=types.SimpleNamespace(model_runner=runner)))
        _FakeLLM.made.append(self)

    def load_weights(self, weights):
        assert "weights" not in self.asleep
        params = dict(self.model.named_parameters())
        names = set()
        for name, w in weights:
            assert name in params, f"vLLM has no weight named {name}"
            params[name].data.copy_(w)
            names.add(name)
        assert names == set(params), "every weight is synced"
        self.calls.append("load_weights")
        return names

    def sleep(self, level):
        self.calls.append(f"sleep{level}")
        self.asleep = {"weights", "kv_cache"}

    def wake_up(self, tags=None):
        self.calls.append("wake:" + ",".join(tags or []))
        self.asleep -= set(tags or self.asleep)

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")

    @torch.no_grad()
    def generate(self, prompts, params, use_tqdm=True):
        assert not self.asleep, f"generate while asleep: {self.asleep}"
        self.calls.append("generate")
        out = []
        for pr, sp in zip(prompts, params):
            assert sp.ignore_eos and sp.logprobs == 0 and not sp.detokenize
            outs = []
            for i in range(sp.n):
                g = torch.Generator().manual_seed(sp.seed + i) if sp.seed is not None else None
                ids, lps = list(pr["prompt_token_ids"]), []
                for _ in range(sp.max_tokens):
                    logits = self.model(input_ids=torch.tensor([ids])).logits[0, -1].float() / sp.temperature
                    logp = torch.log_softmax(logits, -1)
                    tok = int(torch.multinomial(logp.exp(), 1, generator=g))
                    ids.append(tok)
                    other = (tok + 1) % logp.shape[0]                     # vLLM also returns other entries
                    lps.append({other: _Logprob(-99.0), tok: _Logprob(float(logp[tok]))})
                    if tok in sp.stop_token_ids:
                        break
                comp = ids[len(pr["prompt_token_ids"]):]
                outs.append(types.SimpleNamespace(index=i, token_ids=comp, logprobs=lps))
            out.append(types.SimpleNamespace(outputs=outs))
        return out


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = _FakeLLM, _SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(vb, "_ENGINE", None)
    saved = dict(os.environ)           # the engine sets torch.distributed's env:// variables
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "VLLM_ENABLE_V1_MULTIPROCESSING"):
        os.environ.pop(k, None)
    _FakeLLM.made.clear()
    yield _FakeLLM
    os.environ.clear()
    os.environ.update(saved)


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


def test_vllm_backend_seeds_wake_sync_sleep_order(fake_vllm, tiny_dir):
    from groupo.model.load import eos_ids, load_model, load_tokenizer

    model, tok = load_model(tiny_dir), load_tokenizer(tiny_dir)
    eos = eos_ids(tok, model)
    backend = build("rollout", "vllm")

    def run(gen, prompts=PROMPTS, sizes=(2, 2, 2)):
        return backend.generate(model, tok, prompts, list(sizes), 5, eos, temperature=1.0, generator=gen)

    a = run(torch.Generator().manual_seed(7))
    llm = fake_vllm.made[0]
    # first use: weights synced from the in-memory model (it may differ from the directory)
    assert llm.calls == ["load_weights", "reset_prefix_cache", "generate", "sleep1"]
    b = run(torch.Generator().manual_seed(7))
    assert torch.equal(a.completion_ids, b.completion_ids)                 # same seed, same samples
    assert llm.calls[4:] == ["wake:weights,kv_cache", "generate", "sleep1"]   # weights unchanged: no sync
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
    assert llm.calls[n:] == ["wake:weights", "load_weights", "reset_prefix_cache", "wake:kv_cache", "generate",
                             "sleep1"]
    for (k, p), q in zip(model.named_parameters(), llm.model.parameters()):
        assert torch.equal(p, q), k
    assert len(fake_vllm.made) == 1                                         # one engine per process


def test_vllm_seeds_unseeded_and_engine_args(fake_vllm, tiny_dir):
    """The backend's own fields configure the engine (no environment variables)."""
    from groupo.config import load_config
    from groupo.model.load import load_model

    cfg = load_config("grpo", [f"model.path={tiny_dir}", "rollout.name=vllm", "rollout.seeded=false",
                               "rollout.engine_args={max_num_seqs: 512}", "rollout.gpu_memory_utilization=0.25"])
    model = load_model(tiny_dir)
    eng = vb.get_engine(model, cfg.rollout, autocast=torch.bfloat16)   # float32 weights, bf16 forward: vLLM in bf16
    assert not eng.seeded and eng.llm.kw["max_num_seqs"] == 512 and eng.llm.kw["gpu_memory_utilization"] == 0.25
    assert eng.llm.kw["dtype"] == "bfloat16"
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
    lps = vb._sampled_logprobs([{x: _Logprob(-0.5)}, {}], [x, y])     # a position vLLM gave nothing for: NaN
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


# ----------------------------------------------------------------------------- recipes, scripts
@pytest.mark.parametrize("recipe", ["qwen_math_1p5b_1gpu", "qwen_math_1p5b_8gpu"])
def test_real_model_recipes_validate(recipe, tiny_dir, tmp_path):
    from groupo.config import ConfigError, load_config

    data = tmp_path / "d.jsonl"
    data.write_text("".join(f'{{"question": "q{i}", "answer": "{i}"}}\n' for i in range(20)))
    cfg = load_config(recipe, [f"model.path={tiny_dir}", f"task.path={data}"])
    g, m = cfg.generation, cfg.model
    # float32 master weights + bf16 autocast: see test_pure_bf16_adamw_loses_small_updates
    assert cfg.raw["rollout"]["name"] == "vllm" and m.dtype == "float32" and m.autocast == "bfloat16"
    assert m.gradient_checkpointing and cfg.forward.logprob_chunk == 64
    assert g.group_size == 8 and g.max_new_tokens == 1024 and cfg.rollout.tis_cap == 2.0
    assert g.prompts_per_step == (64 if recipe.endswith("1gpu") else 256)
    with pytest.raises(ConfigError, match="model.path is required"):       # the user must give the model
        load_config(recipe, [f"task.path={data}"])


def test_pure_bf16_adamw_loses_small_updates():
    """Why the real-model recipes keep float32 weights (model.autocast=bfloat16 for speed):
    bf16 has 8 significant bits, so at 0.02 the spacing is 2^-13 = 1.2e-4 and an AdamW step
    of about lr = 1e-6 rounds away; 100 steps leave the weight unchanged. In float32 they
    move it by 100 x 1e-6 = 1e-4."""
    for dtype, moved in ((torch.bfloat16, 0.0), (torch.float32, 1e-4)):
        p = torch.nn.Parameter(torch.tensor([0.02], dtype=dtype))
        start = p.item()
        opt = torch.optim.AdamW([p], lr=1e-6, weight_decay=0.0)
        for _ in range(100):
            p.grad = torch.ones_like(p)
            opt.step()
        assert start - p.item() == pytest.approx(moved, abs=2e-6 if moved else 0)
    assert torch.tensor(0.02, dtype=torch.bfloat16) + 1e-6 == torch.tensor(0.02, dtype=torch.bfloat16)


def test_gpu_smoke_scripts_parse_show_help_and_refuse_without_cuda():
    sh, py = ROOT / "bench/gpu_smoke.sh", ROOT / "bench/gpu_smoke.py"
    assert subprocess.run(["bash", "-n", str(sh)]).returncode == 0
    r = subprocess.run([sys.executable, str(py), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--model" in r.stdout
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run the script itself")
    r = subprocess.run(["bash", str(sh)], capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PY": sys.executable})
    assert r.returncode != 0 and "no CUDA device" in r.stderr


def test_scaling_doc_estimates_are_the_scripts_output():
    r = subprocess.run([sys.executable, str(ROOT / "bench/gpu_smoke.py"), "--estimate"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = (ROOT / "docs/scaling.md").read_text()
    table = r.stdout.strip()
    assert table.count("\n") > 10 and table in doc, "regenerate the table: python bench/gpu_smoke.py --estimate"


def _gpu_smoke_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_smoke", ROOT / "bench/gpu_smoke.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow      # the default suite only parses the GPU script (--help, refusal, estimate)
def test_gpu_smoke_checks_dry_run_on_cpu_with_the_fake_engine(fake_vllm, tiny_dir, tmp_path):
    """The script's own logic (training-run parsing, vLLM checks) runs on CPU before any GPU
    time is spent on it; the memory check is skipped on CPU. (This caught a prompt-count bug
    in the script and a wrong log-prob entry in the fake: the alignment check does fail.)"""
    gs = _gpu_smoke_module()
    rc = gs.main(["--model", str(tiny_dir), "--skip-train", "--device", "cpu", "--prompts", "4", "--hf-prompts", "2",
                  "--max-new-tokens", "4", "--out", str(tmp_path / "smoke")])
    status = {r["check"]: r["status"] for r in gs.RESULTS}
    assert rc == 0, gs.RESULTS
    assert status["vllm rollout layout"] == "OK" and status["vllm weight sync"] == "OK"
    assert status["vllm log-probs vs training forward"] == "OK" and status["vllm sleep frees memory"] == "SKIP"
    assert json.loads((tmp_path / "smoke" / "summary.json").read_text()) == gs.RESULTS
    args = gs.main.__globals__["argparse"].Namespace(model=str(tiny_dir), max_new_tokens=4, steps=1, train_arg=[],
                                                     precision="autocast", device="cpu", timeout=600)
    gs.RESULTS.clear()
    gs.run_train(args, tiny_dir, tmp_path / "smoke", "lean")
    assert gs.RESULTS[0]["status"] == "OK" and gs.RESULTS[0]["steps"] == 1, gs.RESULTS
