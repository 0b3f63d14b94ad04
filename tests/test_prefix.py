"""Shared-prefix forward (Prefix Grouper, arXiv 2506.05433), both implementations (split
attention over a grid, dense mask over packed rows): log-probs, entropies, sum pi^2 and gradients
equal the naive repeated-prompt forward in float64, for ragged groups, prompts of
different lengths (left padding), responses of different lengths, and groups split or
interleaved across the batch.

Gradients: transformers' LlamaRMSNorm computes in float32 even for a float64 model, so
no forward of it is float64-exact; the bound used is relative to the gradient's size and
no larger than the gap between the naive batched forward and one row at a time without
padding (the ground truth), which has the same cause."""
import pytest
import torch

from groupo.model import prefix
from groupo.model.forward import completion_logprobs
from groupo.model.load import load_model
from groupo.model.prefix import choose, costs, plan
from groupo.registry import build

FORWARD = {"off": "naive", "on": "shared", "dense": "dense", "auto": "auto"}   # prefix.choose's modes


def logprobs(model, mode, *args, **kw):
    """Completion log-probs through the forward component of ``mode``."""
    return build("forward", FORWARD[mode]).logprobs(model, *args, **kw)


@pytest.fixture(params=["split", "split_sdpa", "split_grid", "dense"])
def path(request, monkeypatch):
    """Which shared-prefix implementation ``prefix_sharing=on`` takes for the (Llama) tiny model
    (split_sdpa: the split path with its slots' attention through scaled_dot_product_attention;
    split_grid: the split path with the decoder on the whole grid, not the packed tokens)."""
    if request.param == "dense":
        monkeypatch.setattr(prefix, "split_supported", lambda model: False)
    if request.param == "split_sdpa":
        monkeypatch.setattr(prefix, "EXPLICIT_MAX_SCORES", 0)
    if request.param == "split_grid":
        monkeypatch.setattr(prefix, "PACK_BELOW", 0.0)
    return request.param.split("_")[0]


def _batch(tok):
    qs = ["a=+1;b=-a;?b", "x=+1;y=+x;z=-y;w=+z;?w", "c=-1;?c"]
    rows = [0, 1, 0, 2, 1, 1, 0, 2]                  # ragged, interleaved groups (sizes 3, 3, 2)
    p = tok([qs[r] for r in rows], return_tensors="pt", padding=True)
    g = torch.Generator().manual_seed(0)
    c = torch.randint(5, 60, (len(rows), 9), generator=g)
    cm = torch.zeros(len(rows), 9, dtype=torch.long)
    for i, L in enumerate([9, 3, 1, 5, 9, 7, 2, 4]):
        cm[i, :L] = 1
    return p["input_ids"], p["attention_mask"], c, cm


def _run(model, args, temp, mode):
    model.zero_grad()
    lp, ent, s2 = logprobs(model, mode, *args, temperature=temp, with_entropy=True, with_sum_pi2=True)
    w = torch.linspace(0.5, 1.5, lp.numel(), dtype=lp.dtype).view_as(lp)
    (lp * w * args[3]).sum().backward()
    return lp * args[3], ent * args[3], s2 * args[3], [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("temp", [1.0, 0.7])
def test_shared_prefix_equals_naive_float64(tiny_dir, tiny, temp, path):
    _, tok = tiny
    model = load_model(tiny_dir).double()
    args = _batch(tok)
    lp_a, ent_a, s2_a, g_a = _run(model, args, temp, "off")
    lp_b, ent_b, s2_b, g_b = _run(model, args, temp, "on")
    assert torch.allclose(lp_a, lp_b, atol=1e-12, rtol=0) and torch.allclose(ent_a, ent_b, atol=1e-12, rtol=0)
    assert torch.allclose(s2_a, s2_b, atol=1e-12, rtol=0) and s2_a.abs().sum() > 0     # OTB's sum pi^2
    scale = max(float(a.abs().max()) for a in g_a)
    gap = max(float((a - b).abs().max()) for a, b in zip(g_a, g_b))
    assert scale > 0 and gap <= 1e-6 * scale
    # the ground truth: each row alone, no padding; the naive batch is no closer to it
    model.zero_grad()
    pi, pm, c, cm = args
    w = torch.linspace(0.5, 1.5, c.numel(), dtype=torch.float64).view(c.shape)
    for i in range(pi.shape[0]):
        p, L = pi[i][pm[i].bool()][None], int(cm[i].sum())
        lp, _ = completion_logprobs(model, p, torch.ones_like(p), c[i:i + 1, :L], torch.ones(1, L, dtype=torch.long),
                                    temperature=temp)
        (lp * w[i:i + 1, :L]).sum().backward()
    truth = [p.grad for p in model.parameters()]
    naive_gap = max(float((a - t).abs().max()) for a, t in zip(g_a, truth))
    shared_gap = max(float((b - t).abs().max()) for b, t in zip(g_b, truth))
    assert shared_gap <= 2 * naive_gap + 1e-12


def test_float32_close_and_plan(tiny_dir, tiny, path):
    model, tok = tiny
    args = _batch(tok)
    groups, packed, naive = plan(args[0], args[1], args[3])
    assert sorted(map(sorted, groups)) == [[0, 2, 6], [1, 4, 5], [3, 7]]
    assert packed < naive
    a, _ = logprobs(model, "off", *args)
    b, _ = logprobs(model, "on", *args)
    assert torch.allclose(a * args[3], b * args[3], atol=1e-5)
    # on: split attention where supported, else the dense mask; off: naive
    assert choose(model, *args[:2], args[3], "on") == path and choose(model, *args[:2], args[3], "off") == "naive"
    assert choose(model, *args[:2], args[3], "dense") == "dense"
    # auto: the cheapest path by the cost model if it saves >= 10%; a single unpadded row: naive
    c = costs(model, *args[:2], args[3])
    assert set(c) == ({"naive", "split", "dense"} if path == "split" else {"naive", "dense"})
    best = min((k for k in c if k != "naive"), key=c.get)
    assert choose(model, *args[:2], args[3], "auto") == (best if c[best] < 0.9 * c["naive"] else "naive")
    L = int(args[1][0].sum())
    one = (args[0][:1, -L:], args[1][:1, -L:], args[3][:1])
    assert choose(model, *one, "auto") == "naive"


def test_cost_model_by_hand(tiny):
    """costs() for 2 prompts x 2 rows, prompt 3 (no padding), completions of width 4 (lengths 4, 2, 4, 1):
    per position 2 x (parameters of a layer), per score entry 4 x heads x head_dim. The naive and
    split inputs end before the last completion column (width 3); the dense path packs real tokens."""
    from groupo.model.prefix import slot_inputs

    assert slot_inputs(torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])).tolist() == [3, 1, 2, 0]
    model, _ = tiny
    cfg = model.config
    tok = 2 * sum(p.numel() for p in model.model.layers[0].parameters())
    ent = 4 * cfg.num_attention_heads * (cfg.hidden_size // cfg.num_attention_heads)
    pi = torch.tensor([[5, 6, 7], [5, 6, 7], [8, 9, 10], [8, 9, 10]])
    cm = (torch.arange(4)[None] < torch.tensor([4, 2, 4, 1])[:, None]).long()
    c = costs(model, pi, torch.ones_like(pi), cm)
    assert c["naive"] == 4 * 6 * tok + 4 * 36 * ent
    assert c["dense"] == 2 * 9 * tok + 2 * 81 * ent              # longest packed row: 3 + 4 + 2
    # split: per-token work on the packed inputs (2 prompts x 3, then 3 + 1 + 3 + 0 completion
    # tokens before each row's last one), attention over the grid of width 3 + 2 x 3
    assert c["split"] == (6 + 7) * tok + (2 * 9 + 2 * 2 * 3 * 6) * ent


def test_split_path_skipped_under_activation_checkpointing(tiny_dir):
    """Activation checkpointing recomputes attention in backward, after the forward has put the
    model's attention implementation back: the dense path is used there."""
    model = load_model(tiny_dir)
    assert prefix.split_supported(model)
    model.gradient_checkpointing_enable()
    assert not prefix.split_supported(model)


@pytest.mark.parametrize("kind", ["llama_gqa", "qwen2", "qwen3"])
def test_split_attention_other_families_float64(kind, monkeypatch):
    """The split path for grouped-query attention, q/k/v biases (Qwen2) and per-head q/k norms
    with head_dim != hidden/heads (Qwen3): log-probs equal the naive forward to 1e-12, gradients
    to 1e-6 of their size (the float32 RMSNorm bound of the module docstring), and the split
    attention function really ran (once per layer)."""
    from test_lean_decode import _model

    model = _model(kind, seed=3, vocab=50).train()
    g = torch.Generator().manual_seed(1)
    pi = torch.randint(2, 50, (6, 7), generator=g)
    pi = pi[[0, 0, 1, 1, 1, 2]]                          # groups of 2, 3, 1
    pm = torch.ones_like(pi)
    pm[:2, :3] = 0                                      # the first prompt is shorter (left padding)
    pi = pi.masked_fill(pm == 0, 0)
    c = torch.randint(2, 50, (6, 5), generator=g)
    cm = (torch.arange(5)[None] < torch.tensor([5, 2, 4, 1, 5, 3])[:, None]).long()
    calls = []
    real = prefix._split_attention
    monkeypatch.setattr(prefix, "_split_attention", lambda *a, **k: calls.append(a[1].shape[2]) or real(*a, **k))
    from transformers import AttentionInterface
    AttentionInterface._global_mapping.pop(prefix._ATTN, None)      # registered again with the spy
    lp_a, ent_a, s2_a, g_a = _run(model, (pi, pm, c, cm), 0.9, "off")
    lp_b, ent_b, s2_b, g_b = _run(model, (pi, pm, c, cm), 0.9, "on")
    AttentionInterface._global_mapping.pop(prefix._ATTN, None)
    # the decoder ran on the packed tokens: prompts 4 + 7 + 7, completion inputs 4+1+3+0+4+2 (not the
    # grid's 3 x (7 + 3 x 4) positions)
    assert calls == [32] * model.config.num_hidden_layers
    assert model.config._attn_implementation != prefix._ATTN           # put back after the forward
    assert torch.allclose(lp_a, lp_b, atol=1e-12, rtol=0) and torch.allclose(ent_a, ent_b, atol=1e-12, rtol=0)
    assert torch.allclose(s2_a, s2_b, atol=1e-12, rtol=0)
    scale = max(float(a.abs().max()) for a in g_a)
    assert max(float((a - b).abs().max()) for a, b in zip(g_a, g_b)) <= 1e-6 * scale
    # the same prompts padded on the right (a tokenizer with padding_side="right"): same log-probs
    right_i, right_m = pi.clone(), pm.clone()
    right_i[:2], right_m[:2] = pi[:2].roll(-3, 1), pm[:2].roll(-3, 1)
    with torch.no_grad():
        lp_r, _ = logprobs(model, "on", right_i, right_m, c, cm, temperature=0.9)
    AttentionInterface._global_mapping.pop(prefix._ATTN, None)         # no spy left registered
    assert torch.allclose(lp_a, lp_r * cm, atol=1e-12, rtol=0)


@pytest.mark.slow
def test_prefix_bench_script_runs():
    """bench/prefix_bench.py (part of `make bench`) on a one-layer model: times the three paths and
    prints the target line of the path `auto` picks."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "bench/prefix_bench.py"), "--prompt", "24", "--completion", "4",
                          "--reps", "1", "--hidden", "64", "--layers", "1", "--threads", "1"],
                         capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "split attention" in out.stdout and "dense-mask path" in out.stdout
    assert [l for l in out.stdout.splitlines() if l.startswith("target prefix_fwd_bwd ")]


@pytest.mark.parametrize("width", [1, 2, 9])
def test_leaving_out_the_last_completion_token_is_exact(tiny_dir, tiny, width):
    """The forwards end their input before the last completion column (its output predicts
    nothing scored): log-probs equal a full-width forward of the model itself (a float64 model;
    completion_logprobs returns float32), for the naive path and the grid, widths 1, 2 and 9."""
    import torch.nn.functional as F

    _, tok = tiny
    model = load_model(tiny_dir).double()
    pi, pm, c, cm = _batch(tok)
    c, cm = c[:, :width], cm[:, :width].clone()
    cm[:, 0] = 1                                          # every row has at least one token
    ids = torch.cat([pi, c], 1)
    mask = torch.cat([pm, cm], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits
        full = F.log_softmax(logits[:, pi.shape[1] - 1:-1], -1).gather(-1, c[..., None])[..., 0] * cm
        for mode in ("off", "on"):
            lp, _ = logprobs(model, mode, pi, pm, c, cm)
            assert torch.allclose(lp.double() * cm, full, atol=1e-6, rtol=0), mode     # log-probs come back float32


def test_split_path_under_bf16_autocast_matches_its_sdpa_twin(tiny_dir, tiny, monkeypatch):
    """model.autocast=bfloat16 on the split path: the explicit slot attention (float32 softmax over
    bf16 scores) runs and gives the log-probs of the SDPA twin to bf16 precision."""
    _, tok = tiny
    model = load_model(tiny_dir)
    args = _batch(tok)
    with torch.no_grad():
        a, _ = logprobs(model, "on", *args, autocast=torch.bfloat16)
        monkeypatch.setattr(prefix, "EXPLICIT_MAX_SCORES", 0)
        b, _ = logprobs(model, "on", *args, autocast=torch.bfloat16)
    assert a.dtype == torch.float32 and torch.isfinite(a).all()
    assert float(((a - b) * args[3]).abs().max()) < 0.05
