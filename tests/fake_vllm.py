"""A fake ``vllm`` module for the CPU tests: its "engine" samples with the training model itself,
so its log-probs must match the training forward exactly; it records the calls groupo makes
(wake, sleep, load_weights, reset_prefix_cache, generate)."""
import os
import sys
import types

import torch

class Logprob:
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
                    lps.append({other: Logprob(-99.0), tok: Logprob(float(logp[tok]))})
                    if tok in sp.stop_token_ids:
                        break
                comp = ids[len(pr["prompt_token_ids"]):]
                outs.append(types.SimpleNamespace(index=i, token_ids=comp, logprobs=lps))
            out.append(types.SimpleNamespace(outputs=outs))
        return out


def install(monkeypatch):
    """Install the fake as ``vllm`` (and pretend CUDA is there); yields the fake LLM class."""
    from groupo.rollout import vllm as vb

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


