"""groupo's vLLM calls against vLLM's real signatures (tests/vllm_api.json, recorded from the pinned
wheel by scripts/check_vllm.py; offline: the download happens only in `make check-vllm`): every call
the glue makes is in the recorded API, the checker names a renamed keyword or attribute, the fake
``vllm`` refuses what the real one refuses, and the pin, the JSON and the glue agree on the version."""
import importlib.util
import inspect
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API = json.loads((ROOT / "tests" / "vllm_api.json").read_text())


def _checker():
    spec = importlib.util.spec_from_file_location("check_vllm", ROOT / "scripts" / "check_vllm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_groupo_calls_match_the_recorded_vllm_api(capsys):
    cv = _checker()
    uses = cv.groupo_uses()
    assert cv.compare(API, uses, cv.documented_engine_args()) == []
    seen = {(what, t, v) for _, what, t, v in uses}
    for use in [("kw", "LLM", "logprobs_mode"), ("value", "logprobs_mode", "processed_logprobs"),
                ("value", "distributed_executor_backend", "external_launcher"), ("kw", "LLM", "enable_sleep_mode"),
                ("kw", "SamplingParams", "detokenize"), ("kw", "SamplingParams", "stop_token_ids"),
                ("kw", "LLM.generate", "use_tqdm"), ("kw", "LLM.sleep", "level"), ("kw", "LLM.wake_up", "tags"),
                ("call", "LLM.reset_prefix_cache", None), ("call", "model.load_weights", None),
                ("attr", "engine_path", "driver_worker"), ("attr", "engine_path", "model_runner"),
                ("level", "sleep_level", 2), ("tag", "wake_up", "kv_cache"), ("output", "Logprob", "logprob"),
                ("output", "CompletionOutput", "token_ids"), ("prompt_key", "TokensPrompt", "prompt_token_ids")]:
        assert use in seen, use                # the checker finds each kind of call it is meant to check
    assert cv.main([]) == 0 and "OK" in capsys.readouterr().out


def test_the_checker_names_each_renamed_keyword_attribute_and_value(tmp_path):
    cv = _checker()
    src = (ROOT / "groupo" / "rollout" / "vllm.py").read_text()
    for old, new in [('logprobs_mode="processed_logprobs"', 'logprob_mode="processed_logprobs"'),
                     ("detokenize=False", "detokenise=False"), ("use_tqdm=False", "progress=False"),
                     ('"driver_worker"', '"driver"'), ("o.token_ids", "o.tokens"),
                     ("sleep_level: Literal[1, 2]", "sleep_level: Literal[1, 3]"),
                     ('"external_launcher"', '"external"'), ("self.llm.reset_prefix_cache()", "self.llm.reset_cache()")]:
        assert src.count(old) >= 1, old
        src = src.replace(old, new)
    bad_file = tmp_path / "vllm.py"
    bad_file.write_text(src)
    bad = "\n".join(cv.compare(API, cv.groupo_uses(bad_file)))
    for name in ["'logprob_mode'", "'detokenise'", "'progress'", "'driver'", "'tokens'", "sleep level 3",
                 "'external'", "'reset_cache'"]:
        assert name in bad, (name, bad)
    assert cv.main(["--glue", str(bad_file)]) == 1
    bad_doc = cv.compare(API, [], [("docs/x.md:1", "max_num_seq")])
    assert bad_doc == ["docs/x.md:1: engine_args key 'max_num_seq' is not a vllm.LLM / EngineArgs argument"]


def test_the_fake_vllm_refuses_unknown_keywords_like_the_real_one(fake_vllm, tiny_dir):
    import sys

    from groupo.registry import build
    from groupo.rollout import vllm as vb

    vllm = sys.modules["vllm"]
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_new_tokens'"):
        vllm.SamplingParams(n=2, max_new_tokens=3)
    sp = vllm.SamplingParams(n=2, max_tokens=3)
    assert sp.max_tokens == 3 and sp.top_k == 0 and sp.seed is None      # the rest: vLLM's defaults
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_num_seq'"):
        vllm.LLM(model=str(tiny_dir), max_num_seq=8)
    with pytest.raises(ValueError, match="processed_logprob"):
        vllm.LLM(model=str(tiny_dir), logprobs_mode="processed_logprob")
    # through the glue: a misspelt engine argument fails at engine start, as with the real vLLM
    from groupo.model.load import load_model

    backend = build("rollout", "vllm", {"engine_args": {"max_num_seq": 512}})
    with pytest.raises(TypeError, match="max_num_seq"):
        vb.get_engine(load_model(tiny_dir), backend)
    llm = vllm.LLM(model=str(tiny_dir), max_num_seqs=8)       # a real EngineArgs field is accepted
    with pytest.raises(TypeError, match="lora"):
        llm.generate([], None, lora=None)


def test_the_fakes_methods_have_the_recorded_signatures():
    from fake_vllm import _FakeLLM

    for name in ("generate", "sleep", "wake_up", "reset_prefix_cache"):
        real = {p[0]: p[1] for p in API["LLM"][name]}
        fake = [p for p in inspect.signature(getattr(_FakeLLM, name)).parameters.values() if p.name != "self"]
        for p in fake:
            if p.kind is not p.VAR_KEYWORD:
                assert p.name in real, f"fake LLM.{name} has {p.name!r}, vLLM's has {list(real)}"
        assert [p.name for p in fake if p.kind is p.POSITIONAL_OR_KEYWORD] == \
            [n for n, k in real.items() if k == "positional"][: len([p for p in fake if p.kind is
                                                                    p.POSITIONAL_OR_KEYWORD])], name


def test_pin_json_and_glue_agree_on_the_vllm_version():
    from packaging.specifiers import SpecifierSet

    from groupo.rollout import vllm as vb

    extra = re.search(r'^vllm = \["vllm([^"]+)"\]', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    spec = SpecifierSet(extra)
    assert API["vllm"] in spec and API["vllm"].startswith(vb.TESTED_VLLM + ".")
    assert "torch==2.13.0" in API["requires"]            # the torch our stack uses (docs/gpu.md)
    assert re.search(r"pip download .*--no-deps", (ROOT / "Makefile").read_text())
    # what the module docstring says about the sleep levels is what the wheel's docstring says
    doc = " ".join(API["docs"]["LLM.sleep"].split())
    para = " ".join(next(p for p in vb.__doc__.split("\n\n") if p.startswith("vLLM's ``LLM.sleep``")).split())
    assert '("weights", "kv_cache", "scheduling")' in para and \
        '("weights", "kv_cache", "scheduling")' in API["docs"]["LLM.wake_up"]
    for quote in re.findall(r'"([^"]{20,})"', para):
        for part in quote.split("[...]"):
            assert part.strip() in doc, part
    assert API["sleep_levels"] == [0, 1, 2] and {"weights", "kv_cache"} <= set(API["wake_up_tags"])


def test_an_untested_vllm_version_is_warned_about(fake_vllm, tiny_dir, monkeypatch):
    import sys

    from groupo.model.load import load_model
    from groupo.registry import build
    from groupo.rollout import vllm as vb

    monkeypatch.setattr(sys.modules["vllm"], "__version__", "0.33.0")
    with pytest.warns(UserWarning, match=r"vllm 0.33.0 is installed; groupo's vLLM calls are checked against vllm 0.30"):
        vb.get_engine(load_model(tiny_dir), build("rollout", "vllm"))
