"""A lean decode step for Llama-family models (Llama, Mistral, Qwen2, Qwen3).

Decoding one token for a batch of rows is a small amount of arithmetic wrapped in a lot of
per-call work in a transformers forward (cache objects, mask construction, module hooks,
about twice as many tensor operations per layer). On the CPU with the bench's 1M model that
overhead was ~75% of a decode step (docs/performance.md). ``LeanDecoder`` runs the same
arithmetic as the model's own forward with the model's own weights, gathered once per
``generate`` call (q/k/v and gate/up projections fused into one matrix each):

    per layer:  h = RMSNorm(x);  q, k, v = split(h W_qkv^T + b);  [Qwen3: per-head RMSNorm of q, k]
                q, k = RoPE(q, k, position);  K[:, :, t], V[:, :, t] = k, v   (preallocated cache)
                x = x + softmax(q K^T * scale + mask) V W_o^T
                h = RMSNorm(x);  g, u = split(h W_gu^T);  x = x + (act(g) * u) W_down^T
    logits = RMSNorm(x) W_head^T

The rotary tables come from the model's own ``rotary_emb`` module (so its RoPE scaling type
is honoured), computed once for every position the generation can reach. The prompt is
still prefilled by the model's forward; its KV cache is copied into the preallocated one.

``supports(model)`` says why a model cannot take this path (then the transformers forward is
used): another architecture, adapters (peft) or other wrapped projections, biases in places
the family has none, a sliding window shorter than the generation, dynamic RoPE. Tests check
the logits against the transformers forward step by step (float64, 1e-10) and the sampled
tokens against the plain path with the same generator. Switch: ``GROUPO_LEAN_DECODE=0``.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


def enabled() -> bool:
    return os.environ.get("GROUPO_LEAN_DECODE", "1") not in ("0", "false", "off")


def supports(model, max_len: int | None = None) -> str | None:
    """None when ``model`` can decode with LeanDecoder, else the reason it cannot."""
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in FAMILIES:
        return f"model_type {kind!r} is not one of {FAMILIES}"
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not hasattr(model, "lm_head") or not hasattr(inner, "rotary_emb"):
        return "not the usual CausalLM layout (model.model.layers, lm_head, rotary_emb)"
    if getattr(cfg, "hidden_act", "silu") not in ("silu", "gelu", "gelu_pytorch_tanh", "relu"):
        return f"activation {cfg.hidden_act!r}"
    rope = getattr(cfg, "rope_scaling", None) or getattr(cfg, "rope_parameters", None) or {}
    if isinstance(rope, dict) and rope.get("rope_type", rope.get("type", "default")) in ("dynamic", "longrope"):
        return "dynamic RoPE"
    window = getattr(cfg, "sliding_window", None)
    if window and (kind == "mistral" or getattr(cfg, "use_sliding_window", False)) and (max_len is None or max_len > window):
        return "sliding-window attention"
    for layer in layers:
        a, m = layer.self_attn, layer.mlp
        for lin in (a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj):
            if type(lin) is not torch.nn.Linear:
                return f"a projection is a {type(lin).__name__}, not a plain Linear (adapters?)"
        if a.o_proj.bias is not None or m.gate_proj.bias is not None or m.down_proj.bias is not None:
            return "biases outside q/k/v"
    if next(model.parameters()).device.type != "cpu":
        return "not on the CPU (the GPU path has not been measured)"
    if type(model.lm_head) is not torch.nn.Linear or model.lm_head.bias is not None:
        return "the output head is not a plain Linear without bias"
    return None


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' RMSNorm: normalised in float32 (also for float64 models), cast back, scaled."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * sin


class LeanDecoder:
    """Decode state for the rows of ``rows`` ([n] prompt index of each row, sorted) with room for
    ``max_new`` new tokens after prompts of ``prompt_len`` (left-padded) tokens.

    Shared-prefix attention: when every prompt has the same number of rows G, the prompt's keys
    and values are kept once per prompt ([P, heads, Lp, D]) and a group's G queries attend to them
    with one matrix product (each row reading its own copy of the prompt cache was half of a decode
    step on the CPU); the generated tokens' keys and values are per row. The two score blocks are
    normalised by one softmax over their concatenation, so the result is the plain attention over
    prompt + generated tokens. With unequal group sizes the prompt cache is copied to each row
    (G = 1, the same code)."""

    @torch.no_grad()
    def __init__(self, model, rows: torch.Tensor, prompt_len: int, max_new: int):
        cfg, inner = model.config, model.model
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.n = rows.numel()
        counts = torch.bincount(rows)
        self.shared = bool(counts.numel() > 0 and (counts == counts[0]).all() and int(counts[0]) > 1)
        self.rows = rows
        self.P = counts.numel() if self.shared else self.n
        self.G = self.n // self.P if self.P else 1
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.rep = self.heads // self.kv_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.embed, self.final_norm, self.head = inner.embed_tokens.weight, inner.norm.weight, model.lm_head.weight
        self.eps = cfg.rms_norm_eps
        self.act = {"silu": F.silu, "relu": F.relu, "gelu": F.gelu,
                    "gelu_pytorch_tanh": lambda t: F.gelu(t, approximate="tanh")}[getattr(cfg, "hidden_act", "silu")]
        self.layers = []
        for layer in inner.layers:
            a, m = layer.self_attn, layer.mlp
            w_qkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
            b_qkv = (torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]) if a.q_proj.bias is not None else None)
            qn, kn = getattr(a, "q_norm", None), getattr(a, "k_norm", None)
            self.layers.append(dict(
                ln1=layer.input_layernorm.weight, ln2=layer.post_attention_layernorm.weight,
                w_qkv=w_qkv, b_qkv=b_qkv, w_o=a.o_proj.weight,
                w_gu=torch.cat([m.gate_proj.weight, m.up_proj.weight]), w_down=m.down_proj.weight,
                q_norm=None if qn is None else qn.weight, k_norm=None if kn is None else kn.weight,
                scale=getattr(a, "scaling", self.head_dim ** -0.5)))
        shape = (self.n, self.kv_heads, max_new, self.head_dim)
        self.kg = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.vg = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.kp: list = []
        self.vp: list = []
        pos = torch.arange(prompt_len + max_new, device=self.device)[None]
        cos, sin = inner.rotary_emb(self.embed[:1][None], pos)         # [1, positions, head_dim]
        self.cos, self.sin = cos[0].to(self.dtype), sin[0].to(self.dtype)
        self.pmask = None
        self.t = 0

    @torch.no_grad()
    def load_prefill(self, cache, prompt_mask: torch.Tensor) -> None:
        """Take the prompts' keys and values from a transformers cache of the prefill (one row per
        prompt); ``prompt_mask`` [P, Lp] marks the real (not left-padding) tokens."""
        layers = getattr(cache, "layers", None)
        pick = (lambda x: x) if self.shared else (lambda x: x[self.rows])
        for i in range(len(self.layers)):
            k, v = (layers[i].keys, layers[i].values) if layers is not None else (cache.key_cache[i], cache.value_cache[i])
            self.kp.append(pick(k).contiguous())
            self.vp.append(pick(v).contiguous())
        m = pick(prompt_mask).bool()
        self.pmask = torch.zeros(m.shape, dtype=self.dtype, device=self.device).masked_fill(~m, float("-inf"))
        self.pmask = self.pmask[:, None, None, :]                      # [P, 1, 1, Lp] added to the scores

    def _attend(self, i: int, q: torch.Tensor, scale: float) -> torch.Tensor:
        """q [n, H, D] -> attention output [n, H * D] over the prompt and the generated tokens."""
        n, P, G, Hk, rep, D, t = self.n, self.P, self.G, self.kv_heads, self.rep, self.head_dim, self.t
        qg = q.view(P, G, Hk, rep, D).transpose(1, 2).reshape(P, Hk, G * rep, D)
        sp = torch.matmul(qg, self.kp[i].transpose(-1, -2)) * scale + self.pmask      # [P, Hk, G*rep, Lp]
        sp = sp.view(P, Hk, G, rep, -1).transpose(1, 2).reshape(n, Hk, rep, -1)
        qr = q.view(n, Hk, rep, D)
        kg, vg = self.kg[i][:, :, : t + 1], self.vg[i][:, :, : t + 1]
        sg = torch.matmul(qr, kg.transpose(-1, -2)) * scale                           # [n, Hk, rep, t+1]
        pr = torch.softmax(torch.cat([sp, sg], dim=-1), dim=-1)
        lp = sp.shape[-1]
        pp = pr[..., :lp].reshape(P, G, Hk, rep, lp).transpose(1, 2).reshape(P, Hk, G * rep, lp)
        op = torch.matmul(pp, self.vp[i]).view(P, Hk, G, rep, D).transpose(1, 2).reshape(n, Hk, rep, D)
        og = torch.matmul(pr[..., lp:], vg)
        return (op + og).reshape(n, Hk * rep * D)

    @torch.no_grad()
    def step(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Logits [n, V] for one new token per row; ``pos`` [n] is each token's position id."""
        n, t = self.n, self.t
        H, Hk, D = self.heads, self.kv_heads, self.head_dim
        cos, sin = self.cos[pos][:, None, :], self.sin[pos][:, None, :]               # [n, 1, D]
        x = F.embedding(tok, self.embed)                                             # [n, hidden]
        for i, w in enumerate(self.layers):
            h = _rms(x, w["ln1"], self.eps)
            qkv = F.linear(h, w["w_qkv"], w["b_qkv"])
            q = qkv[:, : H * D].view(n, H, D)
            k = qkv[:, H * D: (H + Hk) * D].view(n, Hk, D)
            v = qkv[:, (H + Hk) * D:].view(n, Hk, D)
            if w["q_norm"] is not None:
                q, k = _rms(q, w["q_norm"], self.eps), _rms(k, w["k_norm"], self.eps)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
            self.kg[i][:, :, t] = k
            self.vg[i][:, :, t] = v
            x = x + F.linear(self._attend(i, q, w["scale"]), w["w_o"])
            h = _rms(x, w["ln2"], self.eps)
            g, u = F.linear(h, w["w_gu"]).chunk(2, dim=-1)
            x = x + F.linear(self.act(g) * u, w["w_down"])
        self.t = t + 1
        return F.linear(_rms(x, self.final_norm, self.eps), self.head)
