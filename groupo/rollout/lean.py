"""A lean decode step for Llama-family models (Llama, Mistral, Qwen2, Qwen3).

Decoding one token for a batch of rows is a small amount of arithmetic wrapped in a lot of
per-call work in a transformers forward (cache objects, mask construction, module hooks,
about twice as many tensor operations per layer): most of a small model's decode step on the
CPU (docs/performance.md). ``LeanDecoder`` runs the same
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
tokens against the plain path with the same generator. ``rollout.name=hf`` decodes without it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.gemm import Packed, packing_fits

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
START = 32      # generated-token columns a decode cache starts with (doubled when full)


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


def _rms_heads(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """``_rms`` over the last dim of x [n, heads, D] with a weight per head w [heads, D]."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), None, eps) * w
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class LeanDecoder:
    """Decode state for the rows of ``rows`` ([n] prompt index of each row, sorted) with room for
    ``max_new`` new tokens after prompts of ``prompt_len`` (left-padded) tokens.

    Fewer tensor operations per layer than the model's forward (the per-operation cost is what a
    small model's decode step is made of on the CPU): q/k/v and gate/up are one product each; the
    attention scale is folded into the query weights (or Qwen3's q-norm weight); RoPE is applied to
    the queries and keys together as ``x cos + flip(x) sin'`` (``flip`` swaps the two halves,
    ``sin'`` carries rotate_half's sign).

    Two cache layouts (``layout``):

    * ``"rows"``: one cache per row [n, heads, Lp + max_new, D] with the prompt's keys and values
      copied in; attention is two batched products and one softmax. Used when the prompt is at
      most ``max_new`` tokens long (the copy is then no larger than the generated part) or group
      sizes differ.
    * ``"shared"``: every prompt has G rows; the prompt's keys and values are kept once per prompt
      ([P, heads, Lp, D]) and a group's G queries attend to them with one matrix product (each row
      reading its own copy of a long prompt cache was half of a decode step on the CPU); the
      generated tokens' keys and values are per row, and one softmax runs over the concatenated
      scores, so the result is the plain attention over prompt + generated tokens.

    Attention reads each cache whole: columns not yet written are masked (-inf in the additive
    mask, zeros in the cache), so the products see contiguous [columns, D] blocks (a slice of the
    first t columns was 1.4-1.6x slower: docs/performance.md). The generated columns start at ``start`` and double when full, so past
    the first ``start`` tokens at most twice the columns in use are read."""

    @torch.no_grad()
    def __init__(self, model, rows: torch.Tensor, prompt_len: int, max_new: int, layout: str = "auto",
                 start: int = START):
        cfg, inner = model.config, model.model
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.n = rows.numel()
        counts = torch.bincount(rows)
        equal = bool(counts.numel() > 0 and (counts == counts[0]).all() and int(counts[0]) > 1)
        if layout == "auto":
            layout = "shared" if equal and prompt_len > max_new else "rows"
        if layout not in ("rows", "shared") or (layout == "shared" and not equal):
            raise ValueError(f"layout {layout!r} (shared needs equal group sizes > 1)")
        self.shared = layout == "shared"
        self.rows, self.lp = rows, prompt_len
        self.P = counts.numel() if self.shared else self.n
        self.G = self.n // self.P if self.P else 1
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.rep = self.heads // self.kv_heads
        self.head_dim = D = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.embed, self.final_norm = inner.embed_tokens.weight, inner.norm.weight
        self.eps = cfg.rms_norm_eps
        self.act = {"silu": F.silu, "relu": F.relu, "gelu": F.gelu,
                    "gelu_pytorch_tanh": lambda t: F.gelu(t, approximate="tanh")}[getattr(cfg, "hidden_act", "silu")]
        # weights pre-packed for oneDNN where it is in force and the copies fit in memory (model/gemm.py)
        rows = self.n if packing_fits(sum(4 * q.numel() for q in inner.layers.parameters())) else 0
        lin = lambda w, b=None: Packed(w, b, rows)    # noqa: E731
        H, Hk = self.heads, self.kv_heads
        self.layers = []
        for layer in inner.layers:
            a, m = layer.self_attn, layer.mlp
            scale = getattr(a, "scaling", D ** -0.5)
            qn, kn = getattr(a, "q_norm", None), getattr(a, "k_norm", None)
            wq = a.q_proj.weight if qn is not None else a.q_proj.weight * scale      # scale folded into q
            w_qkv = torch.cat([wq, a.k_proj.weight, a.v_proj.weight])
            b_qkv = None
            if a.q_proj.bias is not None:
                bq = a.q_proj.bias if qn is not None else a.q_proj.bias * scale
                b_qkv = torch.cat([bq, a.k_proj.bias, a.v_proj.bias])
            qk_norm = None
            if qn is not None:          # Qwen3: per-head RMSNorm of q (scaled) and k, one weight row per head
                qk_norm = torch.cat([(qn.weight * scale).expand(H, D), kn.weight.expand(Hk, D)])
            self.layers.append(dict(
                ln1=layer.input_layernorm.weight, ln2=layer.post_attention_layernorm.weight,
                qkv=lin(w_qkv, b_qkv), o=lin(a.o_proj.weight), gu=lin(torch.cat([m.gate_proj.weight, m.up_proj.weight])),
                down=lin(m.down_proj.weight), qk_norm=qk_norm))
        self.head = lin(model.lm_head.weight)
        # generated-token columns: START at first, doubled when full (see _attend); prompt columns first
        self.max_new, self.cap = max_new, max(1, min(max_new, start))
        self.base = 0 if self.shared else prompt_len
        shape = (self.n, Hk, self.base + self.cap, D)
        self.k = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.v = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.kp: list = []
        self.vp: list = []
        pos = torch.arange(prompt_len + max_new, device=self.device)[None]
        cos, sin = inner.rotary_emb(self.embed[:1][None], pos)         # [1, positions, head_dim]
        h = D // 2
        self.cos = cos[0].to(self.dtype)
        self.sin = torch.cat([-sin[0, :, :h], sin[0, :, h:]], -1).to(self.dtype)   # rotate_half's sign
        self.mask = self.gmask = None
        self.t = 0

    @torch.no_grad()
    def load_prefill(self, cache, prompt_mask: torch.Tensor) -> None:
        """Take the prompts' keys and values from a transformers cache of the prefill (one row per
        prompt); ``prompt_mask`` [P, Lp] marks the real (not left-padding) tokens."""
        layers = getattr(cache, "layers", None)
        lp = self.lp
        for i in range(len(self.layers)):
            k, v = (layers[i].keys, layers[i].values) if layers is not None else (cache.key_cache[i], cache.value_cache[i])
            if self.shared:
                self.kp.append(k.contiguous())
                self.vp.append(v.contiguous())
            else:
                self.k[i][:, :, :lp] = k[self.rows]
                self.v[i][:, :, :lp] = v[self.rows]
        m = (prompt_mask if self.shared else prompt_mask[self.rows]).bool()
        if not self.shared:         # generated columns: masked until their token is written
            m = torch.cat([m, m.new_zeros(m.shape[0], self.cap)], 1)
        self.mask = torch.zeros(m.shape, dtype=self.dtype, device=self.device).masked_fill(~m, float("-inf"))
        self.mask = self.mask[:, None, None, :]                        # added to the scores
        if self.shared:
            self.gmask = torch.full((1, 1, 1, self.cap), float("-inf"), dtype=self.dtype, device=self.device)

    def compact(self, keep: torch.Tensor) -> bool:
        """Hold only rows ``keep`` (indices into the rows held now) from here on: the rows layout
        (the shared layout's groups stay whole: False, nothing changed). Later ``step`` calls take
        tokens for these rows only."""
        if self.shared:
            return False
        for bufs in (self.k, self.v):       # one layer at a time: at most one extra layer's cache alive
            for i, old in enumerate(bufs):
                bufs[i] = old.index_select(0, keep)
        self.mask = self.mask.index_select(0, keep)
        self.rows, self.n = self.rows[keep], keep.numel()
        self.P = self.n
        return True

    def _grow(self) -> None:
        """Double the generated-token columns of every layer's cache (and the masks)."""
        new = min(self.max_new, 2 * self.cap)
        for bufs in (self.k, self.v):
            for i, old in enumerate(bufs):
                buf = old.new_zeros(*old.shape[:2], self.base + new, old.shape[3])
                buf[:, :, : old.shape[2]] = old
                bufs[i] = buf
        name = "gmask" if self.shared else "mask"
        m = getattr(self, name)
        setattr(self, name, torch.cat([m, m.new_full((*m.shape[:3], new - self.cap), float("-inf"))], -1))
        self.cap = new

    def _attend(self, i: int, q: torch.Tensor) -> torch.Tensor:
        """q [n, H, D] (already scaled) -> attention output [n, H * D] over prompt + generated tokens."""
        n, Hk, rep, D = self.n, self.kv_heads, self.rep, self.head_dim
        qr = q.reshape(n, Hk, rep, D)
        if not self.shared:
            s = torch.matmul(qr, self.k[i].transpose(-1, -2)) + self.mask
            return torch.matmul(torch.softmax(s, dim=-1), self.v[i]).reshape(n, Hk * rep * D)
        P, G = self.P, self.G
        qg = qr.view(P, G, Hk, rep, D).transpose(1, 2).reshape(P, Hk, G * rep, D)
        sp = torch.matmul(qg, self.kp[i].transpose(-1, -2)) + self.mask                 # [P, Hk, G*rep, Lp]
        sp = sp.view(P, Hk, G, rep, -1).transpose(1, 2).reshape(n, Hk, rep, -1)
        sg = torch.matmul(qr, self.k[i].transpose(-1, -2)) + self.gmask                # [n, Hk, rep, cap]
        pr = torch.softmax(torch.cat([sp, sg], dim=-1), dim=-1)
        lp = sp.shape[-1]
        pp = pr[..., :lp].reshape(P, G, Hk, rep, lp).transpose(1, 2).reshape(P, Hk, G * rep, lp)
        op = torch.matmul(pp, self.vp[i]).view(P, Hk, G, rep, D).transpose(1, 2).reshape(n, Hk, rep, D)
        og = torch.matmul(pr[..., lp:], self.v[i])
        return (op + og).reshape(n, Hk * rep * D)

    @torch.no_grad()
    def step(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Logits [n, V] for one new token per row; ``pos`` [n] is each token's position id."""
        n, t = self.n, self.t
        H, Hk, D = self.heads, self.kv_heads, self.head_dim
        if t >= self.cap:
            self._grow()
        col = self.base + t                                                           # cache column of this token
        if self.shared:
            self.gmask[..., t] = 0.0
        else:
            self.mask[..., col] = 0.0
        cos, sin = self.cos[pos][:, None, :], self.sin[pos][:, None, :]               # [n, 1, D]
        x = F.embedding(tok, self.embed)                                             # [n, hidden]
        for i, w in enumerate(self.layers):
            qkv = w["qkv"](_rms(x, w["ln1"], self.eps))
            qk = qkv[:, : (H + Hk) * D].view(n, H + Hk, D)
            if w["qk_norm"] is not None:
                qk = _rms_heads(qk, w["qk_norm"], self.eps)
            swapped = qk.reshape(n, H + Hk, 2, D // 2).flip(2).reshape(n, H + Hk, D)
            qk = torch.addcmul(qk * cos, swapped, sin)                                 # RoPE
            self.k[i][:, :, col] = qk[:, H:]
            self.v[i][:, :, col] = qkv[:, (H + Hk) * D:].view(n, Hk, D)
            x = x + w["o"](self._attend(i, qk[:, :H]))
            g, u = w["gu"](_rms(x, w["ln2"], self.eps)).chunk(2, dim=-1)
            x = x + w["down"](self.act(g) * u)
        self.t = t + 1
        return self.head(_rms(x, self.final_norm, self.eps))
