"""``rollout.name: vllm``: colocated vLLM generation (optional extra ``groupo[vllm]``).

The module imports no vllm itself; the engine does, on first use. ``import groupo``, building a
config and the CPU demo never import vllm (tested).

One ``vllm.LLM`` per process ("colocate" mode, as TRL's ``vllm_mode="colocate"`` and verl's
hybrid engine): it shares the GPU with the training model. It is created on first use from the
training model's directory, in the training forward's compute dtype (the autocast dtype next to
float32 master weights; ``dtype`` overrides it), with the engine in this process
(``distributed_executor_backend="external_launcher"``: under torchrun every rank holds its own
engine on its own GPU) and sleep mode on. Around each generation:

    wake the weights -> push the training weights if stale -> reset the prefix cache ->
    wake the KV cache -> generate -> sleep (``sleep_level``)

vLLM's ``LLM.sleep`` docstring (0.30.0): level 1 "Offload model weights to CPU, discard KV cache
[...] Good for sleeping and waking up the engine to run the same model again. Please make sure
there's enough CPU memory to store the model weights"; level 2 "Discard all GPU memory (weights +
KV cache). Good for sleeping and waking up the engine to run a different model or update the
model, where previous model weights are not needed. It reduces CPU memory pressure." ``wake_up``
takes ``tags`` in ("weights", "kv_cache", "scheduling").

``sleep_level=2`` (default, as TRL's colocate mode): the weights are gone after each sleep (vLLM
restores only the model's buffers), so they are stale at every wake and pushed again from the
training model every time: no host copy of the weights and no GPU<->CPU copies, one push per
generation. Waking from level 2 without restoring the weights samples garbage
(vllm-project/vllm#29341); the full push restores every parameter of a plain Hugging Face model
(TRL also reloads from disk first; we do not). ``sleep_level=1``: the weights go to CPU memory
and come back on wake, and are pushed only when an optimizer step changed them (the loop calls
``weights_changed``): the fallback for models whose weights a push does not fully restore
(quantized or otherwise post-processed weights).

The tested vLLM is the ``vllm`` extra's pin (0.30.x; docs/gpu.md has the versions' torch and
transformers pins): ``scripts/check_vllm.py`` checks every call here against the signatures read
from that wheel (tests/vllm_api.json, from which tests/fake_vllm.py is built).

Samples: ``SamplingParams(n=G, seed=s_j)`` per prompt j, ``s_j`` drawn from the step's generator
(or prompt j's own generator with several processes, so samples do not depend on how prompts are
split); vLLM gives child i the seed ``s_j + i`` (``seeded=false``: vLLM's own RNG, faster sampling
but not reproducible). The engine stops at exactly ``eos_ids`` (``ignore_eos`` +
``stop_token_ids``), as groupo's sampler does. The sampler's per-token log-probs come back in
``Rollout.sampler_logp`` [N, T] (after temperature: ``logprobs_mode="processed_logprobs"``, as TRL
sets it); the loss corrects the mismatch with truncated importance weights (``algo/tis.py``,
``tis_cap``).

With ``train.parallel=fsdp`` generation runs with the model gathered (``fsdp.full_weights``), so
``inference_weights`` reads full tensors and each rank's engine loads them without a collective
of its own (scripts/dist_check.py cases ``vllm`` and ``fsdp_vllm``, on CPU through the fake engine).

Status: the calls are checked against vLLM 0.30.0's source (``make check-vllm``); the glue runs on
CPU against a fake ``vllm`` module that refuses any argument the real one lacks (tests/test_vllm.py:
padding, log-prob alignment, seeds, sleep/sync order for both levels, LoRA weights), but it has
NOT run against real vLLM on a GPU yet (docs/gpu.md; ``bench/gpu_smoke.sh`` is the check to run).
"""
from __future__ import annotations

import importlib
import os
import socket
import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..model.load import ModelError
from ..protocols import RolloutBackend
from ..registry import register
from .base import check_context, empty_rollout, to_rollout

NEEDS = "rollout.name=vllm needs `pip install groupo[vllm]` and a CUDA GPU"
TESTED_VLLM = "0.30"    # the minor version of the `vllm` extra's pin (tests/vllm_api.json records it)
_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}
_ENGINE = None      # the process's engine (one vllm.LLM per process)


@register("rollout", "vllm")
@dataclass(frozen=True)
class VLLM(RolloutBackend):
    """Colocated vLLM generation (GPU only), with truncated importance sampling at ``tis_cap``."""

    gpu_memory_utilization: float = 0.4   # vLLM's share of the GPU memory
    seeded: bool = True                   # per-prompt seeds (reproducible); false: vLLM's own RNG
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"   # auto: the training forward's compute dtype
    engine_args: dict = field(default_factory=dict)   # merged into vllm.LLM(...), e.g. {max_num_seqs: 512}
    tis_cap: float = 2.0                  # truncated importance-sampling cap (0 = no correction)
    sleep_level: Literal[1, 2] = 2        # 2: drop the weights, push them at every wake; 1: keep a CPU copy

    def __post_init__(self):
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.tis_cap < 0:
            raise ValueError(f"tis_cap must be >= 0 (0 = no importance correction), got {self.tis_cap}")

    def generate(self, model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature=1.0,
                 top_p=1.0, top_k=0, generator=None, autocast=None):
        if not prompts:                   # nothing to sample: do not start an engine for it
            return empty_rollout(next(model.parameters()).device, sampler_logp=True)
        enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        check_context(model, max(len(e) for e in enc), max_new_tokens)   # one clear line before vLLM starts
        return sample(get_engine(model, self, autocast), model, tokenizer, prompts, group_sizes, max_new_tokens,
                      eos_ids, temperature, top_p, top_k, generator, enc)

    def weights_changed(self, model) -> None:
        if _ENGINE is not None:
            _ENGINE.dirty = True

    def prepare(self, model, autocast=None) -> None:
        """Create the engine now, on every rank: with ``external_launcher`` its creation is a
        collective, so a rank with no prompt at step 1 would otherwise leave the others waiting."""
        get_engine(model, self, autocast)

    def __hash__(self):                   # engine_args is a dict
        return hash((self.gpu_memory_utilization, self.seeded, self.dtype, self.tis_cap, self.sleep_level))


# ----------------------------------------------------------------------------- weights
def inference_weights(model):
    """Yield (name, tensor): the training model's weights under the plain Hugging Face
    checkpoint names vLLM's ``load_weights`` expects. A LoRA model yields W + delta per
    adapted layer, computed out of place with peft's ``get_delta_weight`` (merging into
    the training weights and unmerging would add bf16 rounding to them at every sync)."""
    if not hasattr(model, "peft_config"):
        for name, p in model.named_parameters():
            yield _clean(name), p.detach()
        return
    base = model.get_base_model()
    adapted = {}
    for mname, mod in base.named_modules():
        if hasattr(mod, "base_layer") and hasattr(mod, "get_delta_weight") and not getattr(mod, "merged", False):
            names = [a for a in getattr(mod, "active_adapters", []) if a in getattr(mod, "lora_A", {})]
            if names:
                adapted[f"{mname}.base_layer.weight"] = (mod, names)
    for name, p in base.named_parameters():
        if "lora_" in name or "original_module" in name:
            continue
        w = p.detach()
        if name in adapted:
            mod, names = adapted[name]
            with torch.no_grad():
                w = w + sum(mod.get_delta_weight(a) for a in names).to(w.dtype)
        yield _clean(name.replace(".base_layer", "").replace("modules_to_save.default.", "")), w


def _clean(name: str) -> str:
    for wrapper in ("_checkpoint_wrapped_module.", "_orig_mod."):
        name = name.replace(wrapper, "")
    return name


# ----------------------------------------------------------------------------- engine
def check_available() -> None:
    """One line (ModelError) unless a CUDA device is visible and vllm imports."""
    if not torch.cuda.is_available():
        raise ModelError(f"{NEEDS} (no CUDA device is visible)")
    try:
        importlib.import_module("vllm")
    except ImportError:
        raise ModelError(f"{NEEDS} (vllm is not installed)") from None


def _launcher_env() -> None:
    """vLLM's external_launcher executor joins torch.distributed through env://; torchrun
    sets these variables, a single process becomes rank 0 of 1 on a free local port."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")     # engine core in this process
    if "MASTER_ADDR" in os.environ and "WORLD_SIZE" in os.environ:
        return
    for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(k, v)
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])


class VLLMEngine:
    """One colocated ``vllm.LLM``: ``generate`` (wake, push the weights if stale, sample, sleep),
    ``sync_weights``, ``sleep`` and ``wake_up``."""

    def __init__(self, model_dir, dtype: torch.dtype | str = torch.bfloat16, gpu_memory_utilization: float = 0.4,
                 seed: int = 0, sleep: bool = True, seeded: bool = True, engine_kwargs: dict | None = None,
                 sleep_level: int = 2):
        check_available()
        import vllm

        version = getattr(vllm, "__version__", "")
        if version and not version.startswith(TESTED_VLLM + "."):
            warnings.warn(f"vllm {version} is installed; groupo's vLLM calls are checked against vllm "
                          f"{TESTED_VLLM}.* (pip install 'groupo[vllm]'; docs/gpu.md)", stacklevel=2)
        self.vllm = vllm
        _launcher_env()
        util = gpu_memory_utilization
        self.seeded = seeded
        kw = dict(model=str(model_dir), dtype=dtype if isinstance(dtype, str) else _DTYPES.get(dtype, "auto"),
                  seed=seed, gpu_memory_utilization=util,
                  enable_sleep_mode=sleep, distributed_executor_backend="external_launcher",
                  skip_tokenizer_init=True,          # we pass token ids and decode ourselves
                  max_num_batched_tokens=4096,       # TRL: vLLM's memory profiler misjudges the larger default
                  logprobs_mode="processed_logprobs")    # log-probs after temperature, as the training side
        kw.update(engine_kwargs or {})
        try:
            self.llm = vllm.LLM(**kw)
        except TypeError as e:
            if "logprobs_mode" in str(e):
                raise ModelError(f"{NEEDS}: vllm {TESTED_VLLM}.* (this one has no logprobs_mode)") from None
            raise
        self.sleep_enabled, self.sleep_level = sleep, sleep_level
        self.asleep: set = set()          # tags currently asleep: "weights", "kv_cache"
        self.dirty = True                 # the engine's weights are not the training model's (changed or discarded)
        self.model_id = None

    # -- memory
    def sleep(self) -> None:
        """Free the KV cache and the weights' GPU memory until the next generate: level 2 discards
        the weights (pushed again at the next wake), level 1 offloads them to CPU memory."""
        if self.sleep_enabled and not self.asleep:
            self.llm.sleep(level=self.sleep_level)
            self.asleep = {"weights", "kv_cache"}
            if self.sleep_level == 2:
                self.dirty = True         # nothing left on the GPU: the next generate pushes them

    def wake_up(self, tags: list | None = None) -> None:
        want = set(tags or ("weights", "kv_cache")) & self.asleep
        if not want:
            return
        torch.cuda.empty_cache()          # blocks PyTorch cached during training go back to the driver
        self.llm.wake_up(tags=sorted(want, key=["weights", "kv_cache"].index))
        self.asleep -= want

    # -- weights
    def _driver_model(self):
        ex = getattr(self.llm.llm_engine, "model_executor", None)
        worker = getattr(ex, "driver_worker", None)
        runner = getattr(worker, "model_runner", None) or getattr(getattr(worker, "worker", None), "model_runner", None)
        if runner is None:
            raise ModelError("cannot reach the vLLM model from this process to load the training weights; "
                             "run with VLLM_ENABLE_V1_MULTIPROCESSING=0")
        return runner.model

    def sync_weights(self, model) -> None:
        """Load the training model's current weights into the engine (and drop cached prefixes)."""
        self.wake_up(["weights"])
        with torch.no_grad():
            self._driver_model().load_weights(inference_weights(model))
        self.llm.reset_prefix_cache()     # KV blocks cached under the old weights are stale
        self.dirty, self.model_id = False, id(model)

    def stale(self, model) -> bool:
        return self.dirty or self.model_id != id(model)

    # -- sampling
    def generate(self, model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p, top_k,
                 seeds=None, enc=None):
        dev = next(model.parameters()).device
        if not prompts:
            return empty_rollout(dev, sampler_logp=True)
        if self.stale(model):
            self.sync_weights(model)
        self.wake_up()
        enc = enc if enc is not None else [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        seeds = seeds if (seeds is not None and self.seeded) else [None] * len(prompts)
        asked = [j for j, g in enumerate(group_sizes) if g > 0]
        params = [self.vllm.SamplingParams(n=group_sizes[j], temperature=temperature, top_p=top_p,
                                           top_k=top_k if top_k > 0 else -1, max_tokens=max_new_tokens, logprobs=0,
                                           stop_token_ids=list(eos_ids), ignore_eos=True, seed=seeds[j],
                                           detokenize=False)
                  for j in asked]
        try:
            results = self.llm.generate([{"prompt_token_ids": enc[j]} for j in asked], params, use_tqdm=False)
        finally:
            self.sleep()
        comps = []
        for j, res in zip(asked, results):
            g = group_sizes[j]
            if len(res.outputs) != g:
                raise RuntimeError(f"vLLM returned {len(res.outputs)} completions for prompt {j}, expected {g}")
            for o in res.outputs:
                ids = list(o.token_ids)
                comps.append((j, ids, _sampled_logprobs(o.logprobs, ids)))
        return to_rollout(enc, comps, tokenizer, eos_ids, dev)


def _sampled_logprobs(logprobs, ids) -> list:
    """The sampled token's log-prob at each position (NaN where vLLM gave none)."""
    out = []
    for t, tok in enumerate(ids):
        entry = logprobs[t] if logprobs is not None and t < len(logprobs) else None
        lp = entry.get(tok) if entry is not None else None
        out.append(float(getattr(lp, "logprob", lp)) if lp is not None else float("nan"))
    return out


def _model_dir(model) -> str:
    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    if not path:
        raise ModelError("generation.backend=vllm: the training model has no directory to start vLLM from")
    return str(path)


def engine_dtype(model, backend: VLLM, autocast=None):
    """vLLM's dtype: the backend's ``dtype`` unless "auto", else the training forward's compute
    dtype (``autocast``, e.g. bf16 next to float32 master weights; else the parameters' dtype)."""
    if backend.dtype != "auto":
        return backend.dtype
    return autocast or next(model.parameters()).dtype


def get_engine(model, backend: VLLM, autocast=None) -> VLLMEngine:
    """The process's engine, created on first use from ``model``'s directory."""
    global _ENGINE
    if _ENGINE is None:
        from ..train import dist

        _ENGINE = VLLMEngine(_model_dir(model), engine_dtype(model, backend, autocast),
                             gpu_memory_utilization=backend.gpu_memory_utilization, seed=dist.rank(),
                             seeded=backend.seeded, engine_kwargs=backend.engine_args,
                             sleep_level=backend.sleep_level)
    return _ENGINE


def sample(engine, model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p, top_k,
           generator, enc=None):
    """Sample with ``engine``, one seed per prompt drawn from ``generator`` (the colocated
    backend and the rollout server's ``--engine vllm`` draw them alike, so they sample alike)."""
    if enc is None:
        enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        check_context(model, max(len(e) for e in enc), max_new_tokens)
    seeds = prompt_seeds(generator, len(prompts))
    return engine.generate(model, tokenizer, prompts, group_sizes, max_new_tokens, eos_ids, temperature, top_p,
                           top_k, seeds, enc=enc)


def prompt_seeds(generator, n: int) -> list:
    """One sampling seed per prompt: from prompt j's own generator when ``generator`` is a
    list (multi-process runs), else n draws from the step's generator."""
    hi = 2 ** 30          # vLLM adds the child index to the seed; stay far from int32 overflow
    if isinstance(generator, (list, tuple)):
        return [int(torch.randint(0, hi, (1,), generator=g, device=g.device).item()) for g in generator]
    if generator is None:
        return [None] * n
    return [int(s) for s in torch.randint(0, hi, (n,), generator=generator, device=generator.device).tolist()]
