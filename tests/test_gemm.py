"""Float32 CPU products through oneDNN (groupo/model/gemm.py): the same numbers as torch's own
path to float32 rounding, forward and gradients; the backend choice; packed decode weights;
and the choice surviving a resume."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from groupo.model import gemm

pytestmark = pytest.mark.skipif(not gemm.available(), reason="this torch build has no usable oneDNN linear ops")


@pytest.fixture(autouse=True)
def _restore_backend():
    before = gemm.backend()
    yield
    gemm.select(before)


def _close(a, b, rel=2e-6):
    return float((a - b).detach().abs().max()) <= rel * float(b.detach().abs().max())


@pytest.mark.parametrize("bias", [False, True])
def test_onednn_linear_forward_and_gradients_match_torch(bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 70, 300, generator=g, requires_grad=True)
    lin = torch.nn.Linear(300, 260, bias=bias)
    gy = torch.randn(3, 70, 260, generator=g)
    y_ref = F.linear(x, lin.weight, lin.bias)
    ref = torch.autograd.grad(y_ref, [x, lin.weight] + ([lin.bias] if bias else []), gy)
    gemm.select("onednn")
    assert gemm.install(lin) == 1
    y = lin(x)
    got = torch.autograd.grad(y, [x, lin.weight] + ([lin.bias] if bias else []), gy)
    assert _close(y, y_ref)
    for a, b in zip(got, ref):
        assert _close(a, b)
    with torch.no_grad():                          # the no-grad path (reference / old log-probs)
        assert _close(lin(x), y_ref)
    xs = x.detach().clone().requires_grad_(True)   # y.sum(): the output gradient is a stride-0 expand
    lin(xs).sum().backward()
    assert _close(xs.grad, torch.ones(3, 70, 260) @ lin.weight.detach())
    # float64 inputs, bfloat16 autocast and small layers keep torch's own product, bit for bit
    with torch.no_grad():
        x64, lin64 = x.double(), torch.nn.Linear(300, 260).double()
        gemm.install(lin64)
        assert torch.equal(lin64(x64), F.linear(x64, lin64.weight, lin64.bias))
        small = torch.nn.Linear(300, 100)
        assert gemm.install(small) == 0 and torch.equal(small(x), F.linear(x, small.weight, small.bias))


def test_torch_backend_is_the_plain_path_bit_for_bit():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 512, generator=g)
    lin = torch.nn.Linear(512, 512)
    ref = F.linear(x, lin.weight, lin.bias)
    gemm.select("torch")
    assert gemm.install(lin) == 0
    assert torch.equal(lin(x), ref)
    p = gemm.Packed(lin.weight, lin.bias, rows=40)
    assert p.packed is None and torch.equal(p(x), ref)
    gemm.uninstall(lin)
    assert "forward" not in lin.__dict__


def test_packed_weight_matches_and_only_where_it_applies():
    g = torch.Generator().manual_seed(2)
    w, b = torch.randn(1024, 256, generator=g), torch.randn(1024, generator=g)
    x = torch.randn(64, 256, generator=g)
    ref = F.linear(x, w, b)
    for backend in ("onednn", "onednn_decode"):
        gemm.select(backend)
        p = gemm.Packed(w, b, rows=64)
        assert p.packed is not None and _close(p(x), ref)
        assert _close(p(x[:5]), ref[:5])                        # another row count still right
        assert gemm.Packed(torch.randn(1024, 128), rows=64).packed is None      # a side < MIN_DIM
        assert gemm.Packed(w.double(), rows=64).packed is None                  # float64 stays on torch
    gemm.select("onednn_decode")
    lin = torch.nn.Linear(256, 1024)
    assert gemm.install(lin) == 0                               # decode-only: training products on torch


def test_select_modes():
    with pytest.raises(ValueError, match="cpu_gemm"):
        gemm.select("fast")
    assert gemm.select("torch") == "torch" and gemm.ratio() is None
    assert gemm.select("onednn") == "onednn"
    small = torch.nn.Sequential(torch.nn.Linear(64, 128))
    assert gemm.select("auto", small) == "torch" and gemm.ratio() is None       # nothing to speed up: no probe
    big = torch.nn.Sequential(torch.nn.Linear(512, 512))
    chosen = gemm.select("auto", big)
    dec, tr = gemm.ratio()
    assert dec > 0 and chosen == ("torch" if dec >= gemm.THRESHOLD else "onednn" if tr < gemm.THRESHOLD_TRAIN
                                  else "onednn_decode")


def test_auto_probes_once_per_machine_and_keeps_the_result(tmp_path, monkeypatch):
    """"auto" times the products once per machine (CPU, threads, torch) and keeps the ratios in
    the cache, so a second process chooses the same way without timing; a corrupt or unwritable
    cache is probed again, never an error."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(gemm, "_probes", lambda: calls.append(1) or (0.5, 0.95))
    monkeypatch.setattr(gemm, "_PROBED", {})
    big = torch.nn.Sequential(torch.nn.Linear(512, 512))
    assert gemm.select("auto", big) == "onednn" and gemm.ratio() == (0.5, 0.95) and len(calls) == 1
    monkeypatch.setattr(gemm, "_PROBED", {})                       # as a new process: read from the file
    monkeypatch.setattr(gemm, "_probes", lambda: calls.append(1) or (1.2, None))
    assert gemm.select("auto", big) == "onednn" and len(calls) == 1
    kept = json.loads(gemm.probe_file().read_text())
    assert list(kept.values()) == [[0.5, 0.95]] and f"{torch.get_num_threads()} threads" in next(iter(kept))
    gemm.probe_file().write_text("{not json")
    monkeypatch.setattr(gemm, "_PROBED", {})
    assert gemm.select("auto", big) == "torch" and len(calls) == 2          # probed again and kept
    assert list(json.loads(gemm.probe_file().read_text()).values()) == [[1.2, None]]
    gemm.probe_file().write_text(json.dumps({k: [0.5, None] for k in kept}))  # no training probe where one is due
    monkeypatch.setattr(gemm, "_PROBED", {})
    assert gemm.select("auto", big) == "torch" and len(calls) == 3
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/no-such-dir")              # nowhere to keep it: probe each time
    monkeypatch.setattr(gemm, "_PROBED", {})
    assert gemm.select("auto", big) == "torch" and len(calls) == 4
    gemm.select("torch")


def test_lean_decode_with_packed_weights_matches_the_plain_decode():
    """Same model, same generator: the decode logits through packed oneDNN products agree with
    torch's to float32 rounding, and the sampled tokens are the same."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from groupo.rollout import lean

    cfg = LlamaConfig(vocab_size=300, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=0, eos_token_id=1, bos_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    rows = torch.repeat_interleave(torch.arange(2), 3)
    g = torch.Generator().manual_seed(3)
    p_ids = torch.randint(2, 300, (2, 5), generator=g)
    p_mask = torch.ones_like(p_ids)
    toks = torch.randint(2, 300, (4, rows.numel()), generator=g)
    logits = {}
    for backend in ("torch", "onednn"):
        gemm.select(backend)
        with torch.no_grad():
            out = model(input_ids=p_ids, attention_mask=p_mask, use_cache=True)
            dec = lean.LeanDecoder(model, rows, 5, 4)
            assert (dec.layers[0]["gu"].packed is not None) == (backend == "onednn")
            dec.load_prefill(out.past_key_values, p_mask)
            logits[backend] = torch.stack([dec.step(toks[t], torch.full((rows.numel(),), 5 + t)) for t in range(4)])
    assert _close(logits["onednn"], logits["torch"], rel=1e-5)


def test_no_packed_copies_when_they_would_not_fit_in_memory(monkeypatch):
    from transformers import AutoModelForCausalLM, LlamaConfig

    from groupo.rollout import lean

    cfg = LlamaConfig(vocab_size=300, hidden_size=256, intermediate_size=512, num_hidden_layers=1,
                      num_attention_heads=4, max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
                      bos_token_id=None)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    gemm.select("onednn")
    rows = torch.zeros(4, dtype=torch.long)
    assert lean.LeanDecoder(model, rows, 3, 2).layers[0]["gu"].packed is not None
    weights = sum(4 * p.numel() for p in model.model.layers.parameters())
    monkeypatch.setattr(gemm, "mem_available", lambda: int(weights / gemm.PACK_MEM_FRACTION) - 1)
    assert lean.LeanDecoder(model, rows, 3, 2).layers[0]["gu"].packed is None
    monkeypatch.setattr(gemm, "mem_available", lambda: None)
    assert lean.LeanDecoder(model, rows, 3, 2).layers[0]["gu"].packed is not None


def test_resume_keeps_the_backend_of_the_checkpoint(tiny_dir, tmp_path, monkeypatch):
    """A run that multiplied on oneDNN resumes on oneDNN even if this process's probe would say
    otherwise (the products' summation order is part of an exact resume)."""
    from groupo.config import load_config
    from groupo.train.loop import train

    over = [f"model.path={tiny_dir}", "model.tiny=false", "model.threads=1", "generation.group_size=2",
            "generation.prompts_per_step=2", "generation.max_new_tokens=3", "train.steps=2", "warmstart.steps=0",
            "task.eval_size=4", "eval.n=4", "eval.before=false", "eval.after=false", "log.tensorboard=false",
            "checkpoint.every=1", "checkpoint.keep=5"]
    train(load_config("demo", over + ["train.steps=1", "model.cpu_gemm=onednn"]), tmp_path / "r")
    state = torch.load(tmp_path / "r/checkpoints/step_1/state.pt", weights_only=False)
    assert state["gemm"] == "onednn"
    monkeypatch.setattr(gemm, "_big_linear", lambda model: True)
    monkeypatch.setattr(gemm, "_PROBED", {torch.get_num_threads(): (1.0, None)})    # "auto" would pick torch
    lines = []

    class Console:
        def print(self, *a, **k):
            lines.append(" ".join(str(x) for x in a))

    train(load_config("demo", over), tmp_path / "r", resume=True, console=Console())
    assert gemm.backend() == "onednn"
    assert any("float32 products on onednn (as in the checkpoint)" in line for line in lines), lines
