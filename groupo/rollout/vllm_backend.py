"""``generation.backend: vllm``: colocated vLLM generation (optional extra ``groupo[vllm]``).

Imported only when a recipe asks for it; ``import groupo`` and the CPU demo never import
vllm (tested). One ``vllm.LLM`` per process, created on first use from the training
model's directory, in the training dtype, with sleep mode so that training and
generation share the GPU: the engine wakes up, receives the current training weights if
an optimizer step happened since the last sync, generates, and goes back to sleep
(level 1: weights offloaded, KV cache freed). This is TRL's and verl's "colocate" mode.

The sampler's per-token log-probs come back with the rollout (``Rollout.sampler_logp``):
vLLM's kernels and sampling differ slightly from the training forward, so the loss uses
truncated importance sampling (TIS; Yao et al. 2025, as TRL's
``vllm_importance_sampling_correction`` and verl's ``tis_imp_ratio_cap``): every token's
loss weight is multiplied by ``min(exp(logp_old - logp_sampler), generation.tis_cap)``.

Status: written against vLLM's documented ``LLM`` / ``SamplingParams`` API; no GPU was
available in the session that wrote it, so it has NOT been run yet (docs/gpu.md;
``bench/gpu_smoke.sh`` is the check to run on a GPU machine). ``truncated_is_weights``
is pure torch and tested on CPU.
"""
from __future__ import annotations

import torch

from ..model.load import ModelError

_ENGINES: dict = {}


def truncated_is_weights(logp_old: torch.Tensor, logp_sampler: torch.Tensor, mask: torch.Tensor,
                         cap: float = 2.0) -> torch.Tensor:
    """Per-token TIS weights min(exp(logp_old - logp_sampler), cap), 0 off the mask; no gradient."""
    if cap <= 0:
        raise ValueError(f"tis cap must be > 0, got {cap}")
    with torch.no_grad():
        ratio = torch.exp((logp_old - logp_sampler).clamp(max=20.0))
        return torch.clamp(ratio, max=cap) * mask.to(ratio.dtype)


class VLLMEngine:
    def __init__(self, model, dtype: torch.dtype, seed: int = 0, gpu_memory_utilization: float = 0.4,
                 sleep: bool = True):
        try:
            import vllm
        except ImportError:
            raise ModelError("generation.backend=vllm needs `pip install groupo[vllm]` and a CUDA GPU") from None
        if not torch.cuda.is_available():
            raise ModelError("generation.backend=vllm needs a CUDA GPU (none is visible)")
        self.vllm = vllm
        self.sleep_enabled = sleep
        self.llm = vllm.LLM(model=str(model.name_or_path), dtype=str(dtype).replace("torch.", ""), seed=seed,
                            gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=sleep)
        self.version = getattr(model, "_groupo_weights_version", 0)
        self.sleeping = False

    def _load_weights(self, model) -> None:
        named = [(k, v.detach()) for k, v in _plain_state(model).items()]
        try:        # vLLM V1: run load_weights in every worker
            self.llm.collective_rpc("load_weights", args=(named,))
        except (AttributeError, TypeError, NotImplementedError):
            runner = self.llm.llm_engine.model_executor.driver_worker.model_runner   # older engine
            runner.model.load_weights(named)
        self.version = getattr(model, "_groupo_weights_version", 0)

    def generate(self, model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p, top_k,
                 seed: int):
        from .hf import Rollout

        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False
        if getattr(model, "_groupo_weights_version", 0) != self.version:
            self._load_weights(model)
        enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        outs = []
        for j, (ids, g) in enumerate(zip(enc, group_sizes)):
            sp = self.vllm.SamplingParams(n=g, temperature=temperature, top_p=top_p, top_k=top_k or -1,
                                          max_tokens=max_new_tokens, logprobs=0, stop_token_ids=list(eos_ids),
                                          seed=seed + j)
            outs.append((ids, sp))
        results = self.llm.generate([{"prompt_token_ids": ids} for ids, _ in outs], [sp for _, sp in outs],
                                    use_tqdm=False)
        if self.sleep_enabled:
            self.llm.sleep(level=1)
            self.sleeping = True
        dev = next(model.parameters()).device
        pad = tokenizer.pad_token_id
        rows, comps, lps = [], [], []
        for j, res in enumerate(results):
            for o in res.outputs:
                rows.append(j)
                comps.append(list(o.token_ids))
                lps.append([lp[t].logprob for lp, t in zip(o.logprobs or [], o.token_ids)])
        T = max(1, max(len(c) for c in comps))
        Lp = max(len(e) for e in enc)
        n = len(rows)
        p_ids = torch.full((n, Lp), pad, dtype=torch.long)
        p_mask = torch.zeros(n, Lp, dtype=torch.long)
        c_ids = torch.full((n, T), pad, dtype=torch.long)
        c_mask = torch.zeros(n, T, dtype=torch.long)
        s_lp = torch.zeros(n, T)
        trunc = torch.zeros(n, dtype=torch.bool)
        eos = set(eos_ids)
        for i, (j, c, lp) in enumerate(zip(rows, comps, lps)):
            ids = enc[j]
            p_ids[i, Lp - len(ids):] = torch.tensor(ids)
            p_mask[i, Lp - len(ids):] = 1
            c_ids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            c_mask[i, : len(c)] = 1
            s_lp[i, : len(lp)] = torch.tensor(lp)
            trunc[i] = not c or c[-1] not in eos
        texts = tokenizer.batch_decode(comps, skip_special_tokens=True)
        return Rollout(p_ids.to(dev), p_mask.to(dev), c_ids.to(dev), c_mask.to(dev), trunc,
                       torch.tensor(rows, dtype=torch.long), texts, sampler_logp=s_lp.to(dev))


def _plain_state(model) -> dict:
    """Weights in the base model's names (LoRA merged into a copy when present)."""
    if hasattr(model, "peft_config"):
        merged = {}
        with torch.no_grad():
            model.merge_adapter()
            try:
                for k, v in model.get_base_model().state_dict().items():
                    if "lora_" not in k:
                        merged[k.replace("base_layer.", "")] = v.clone()
            finally:
                model.unmerge_adapter()
        return merged
    return model.state_dict()


def generate_vllm(model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p, top_k,
                  generator=None):
    key = id(model)
    if key not in _ENGINES:
        _ENGINES[key] = VLLMEngine(model, next(model.parameters()).dtype)
    g = generator[0] if isinstance(generator, list) else generator
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g, device=g.device).item()) if g is not None else 0
    return _ENGINES[key].generate(model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature,
                                  top_p, top_k, seed)
