"""A fake ``vllm`` module for the CPU tests: its "engine" samples with the training model itself,
so its log-probs must match the training forward exactly; it records the calls groupo makes
(wake, sleep, load_weights, reset_prefix_cache, generate). It is built from vLLM's real signatures
(tests/vllm_api.json, read from the pinned wheel by scripts/check_vllm.py): ``LLM(...)``,
``SamplingParams(...)`` and the engine's methods refuse any keyword the real ones lack (TypeError)
and any value outside vLLM's literals (ValueError), so a renamed argument fails the CPU tests."""
import ast
import json
import os
import sys
import types
from pathlib import Path

import torch

API = json.loads((Path(__file__).resolve().parent / "vllm_api.json").read_text())
ENGINE_KW = {p[0] for p in API["LLM"]["__init__"] if p[1] != "var_keyword"} | set(API["EngineArgs"])
VALUES = {"logprobs_mode": "LogprobsMode", "dtype": "ModelDType", "distributed_executor_backend":
          "DistributedExecutorBackend"}


def refuse_unknown(where: str, kw: dict, known) -> None:
    """TypeError for a keyword vLLM's ``where`` does not take (as Python and msgspec raise it)."""
    for k in kw:
        if k not in known:
            raise TypeError(f"{where}() got an unexpected keyword argument '{k}'")


def method_keywords(name: str) -> set:
    return {p[0] for p in API["LLM"][name] if p[1] != "var_keyword"}


class Logprob:
    def __init__(self, logprob, rank=None, decoded_token=None):
        self.logprob, self.rank, self.decoded_token = logprob, rank, decoded_token


def _default(src):
    try:
        return ast.literal_eval(src) if src is not None else None
    except ValueError:
        return None


class _SamplingParams:
    """vllm.SamplingParams: keyword arguments among its recorded fields only; the rest default."""

    def __init__(self, **kw):
        refuse_unknown("SamplingParams", kw, API["SamplingParams"])
        self.__dict__.update({k: _default(v) for k, v in API["SamplingParams"].items()})
        self.__dict__.update(kw)


class _FakeLLM:
    """vllm.LLM stand-in: samples from its own copy of the model, token by token (full
    forward each time), child i of a request with seed s from torch.Generator(s + i), as
    vLLM does; log-probs after temperature. Records calls and refuses to run asleep."""
    made: list = []

    def __init__(self, model, **kw):
        from groupo.model.load import load_model

        refuse_unknown("EngineArgs.__init__", kw, ENGINE_KW)
        for k, lit in VALUES.items():
            if k in kw and kw[k] not in API["literals"][lit]:
                raise ValueError(f"{k}={kw[k]!r} is not one of {API['literals'][lit]}")
        kw = dict(model=model, **kw)
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
        self.loaded = {n: p.detach().clone() for n, p in self.model.named_parameters()}   # level 2 discards them
        return names

    def sleep(self, level=1, mode="abort"):
        """Level 1 keeps the weights (offloaded); level 2 discards them: they read as garbage (NaN)
        until load_weights writes them, as vLLM's memory comes back uninitialised."""
        assert level in API["sleep_levels"] and level > 0, level
        self.calls.append(f"sleep{level}")
        self.asleep = {"weights", "kv_cache"}
        if level == 2:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.fill_(float("nan"))

    def wake_up(self, tags=None):
        assert tags is None or set(tags) <= set(API["wake_up_tags"]), tags
        self.calls.append("wake:" + ",".join(tags or []))
        self.asleep -= set(tags or self.asleep)

    def reset_prefix_cache(self, reset_running_requests=False, reset_connector=False):
        self.calls.append("reset_prefix_cache")

    @torch.no_grad()
    def generate(self, prompts, sampling_params=None, **kw):
        refuse_unknown("LLM.generate", kw, method_keywords("generate"))
        params = sampling_params
        assert not self.asleep, f"generate while asleep: {self.asleep}"
        assert all(torch.isfinite(p).all() for p in self.model.parameters()), "weights discarded and not pushed"
        self.calls.append("generate")
        out = []
        for pr, sp in zip(prompts, params):
            assert sp.ignore_eos and sp.logprobs == 0 and not sp.detokenize
            outs = []
            for i in range(sp.n):
                g = torch.Generator().manual_seed(sp.seed + i) if sp.seed is not None else None
                ids, lps = list(pr["prompt_token_ids"]), []
                for _ in range(sp.max_tokens):
                    logits = self.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
                    if sp.temperature == 0:          # greedy, as vLLM's temperature 0 (ReMax's baseline)
                        logp = torch.log_softmax(logits, -1)
                        tok = int(logp.argmax())
                    else:
                        logp = torch.log_softmax(logits / sp.temperature, -1)
                        tok = int(torch.multinomial(logp.exp(), 1, generator=g))
                    ids.append(tok)
                    other = (tok + 1) % logp.shape[0]                     # vLLM also returns other entries
                    lps.append({other: Logprob(-99.0), tok: Logprob(float(logp[tok]))})
                    if tok in sp.stop_token_ids:
                        break
                comp = ids[len(pr["prompt_token_ids"]):]
                outs.append(types.SimpleNamespace(index=i, token_ids=comp, logprobs=lps))
            out.append(types.SimpleNamespace(prompt_token_ids=list(pr["prompt_token_ids"]), outputs=outs))
        return out


def _module():
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams, mod.__version__ = _FakeLLM, _SamplingParams, API["vllm"]
    return mod


def install_for_process() -> None:
    """Install the fake for the rest of this process (tests/fake_vllm_launch.py: torchrun runs)."""
    from groupo.rollout import vllm as vb

    sys.modules["vllm"] = _module()
    vb.check_available = lambda: None      # not torch.cuda.is_available: checkpoints ask it too


def install(monkeypatch):
    """Install the fake as ``vllm`` (and pretend CUDA is there); yields the fake LLM class."""
    from groupo.rollout import vllm as vb

    monkeypatch.setitem(sys.modules, "vllm", _module())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(vb, "_ENGINE", None)
    saved = dict(os.environ)           # the engine sets torch.distributed's env:// variables
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "VLLM_ENABLE_V1_MULTIPROCESSING"):
        os.environ.pop(k, None)
    _FakeLLM.made.clear()
    yield _FakeLLM
    os.environ.clear()
    os.environ.update(saved)


