"""GPU-only paths stay optional and are checked on CPU as far as they can be:
* importing groupo, building a config and training on CPU never import vllm or peft;
* truncated importance-sampling weights from hand numbers;
* the vLLM backend's glue against a fake ``vllm`` module: tests/test_vllm.py;
* the real-model recipes validate;
* bench/gpu_smoke.* parse, show --help, refuse without CUDA, and the estimate table in
  docs/scaling.md is the script's output (slow: a CPU dry run of the script's checks).
Nothing here needs a GPU; docs/gpu.md says what has not run on one yet."""
import json
import os
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from groupo.algo.tis import tis_stats, truncated_is_weights

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
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
    assert status["vllm rollout layout"] == "OK"
    assert status["vllm weight sync (sleep level 2)"] == "OK" and status["vllm weight sync (sleep level 1)"] == "OK"
    assert status["vllm log-probs vs training forward"] == "OK" and status["vllm sleep frees memory"] == "SKIP"
    assert json.loads((tmp_path / "smoke" / "summary.json").read_text()) == gs.RESULTS
    args = gs.main.__globals__["argparse"].Namespace(model=str(tiny_dir), max_new_tokens=4, steps=1, train_arg=[],
                                                     precision="autocast", device="cpu", timeout=600)
    gs.RESULTS.clear()
    gs.run_train(args, tiny_dir, tmp_path / "smoke", "lean")
    assert gs.RESULTS[0]["status"] == "OK" and gs.RESULTS[0]["steps"] == 1, gs.RESULTS


def _gpu_scale_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_scale", ROOT / "bench/gpu_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_session_results_are_written_between_the_markers(tmp_path):
    """bench/gpu_scale.py report: every check of a session's OUT/*.json in one table, written into
    docs/gpu.md in place of the previous session's (the text around the markers kept)."""
    gs = _gpu_scale_module()
    out = tmp_path / "out"
    out.mkdir()
    (out / "server.json").write_text(json.dumps([{"check": "train server", "status": "OK", "step_s": 0.61234},
                                                 {"check": "overlap / synchronous step time", "status": "OK",
                                                  "ratio": 0.736}]))
    (out / "fsdp.json").write_text(json.dumps([{"check": "fsdp fsdp_grpo (1 GPU)", "status": "FAIL",
                                                "max_abs_diff": 3e-3}]))
    (out / "session.log").write_text("not json")
    table = gs.report(out)
    assert table.splitlines()[2:] == ["| fsdp | fsdp fsdp_grpo (1 GPU) | FAIL | max_abs_diff 0.003 |",
                                      "| server | train server | OK | step_s 0.6123 |",
                                      "| server | overlap / synchronous step time | OK | ratio 0.736 |"]
    doc = tmp_path / "gpu.md"
    doc.write_text("# GPU checks\n\nintro\n")
    gs.write_doc(doc, table, "H200, first")
    gs.write_doc(doc, table.replace("FAIL", "OK"), "H200, second")
    text = doc.read_text()
    assert text.startswith("# GPU checks\n\nintro\n") and text.count(gs.BEGIN) == 1 and "first" not in text
    assert "| fsdp | fsdp fsdp_grpo (1 GPU) | OK |" in text and text.rstrip().endswith(gs.END)


def test_gpu_session_script_parses_and_runs_the_scale_checks():
    text = (ROOT / "bench/gpu_session.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "bench/gpu_session.sh")]).returncode == 0
    assert "bench/gpu_scale.py server" in text and "bench/gpu_scale.py fsdp" in text
    r = subprocess.run([sys.executable, str(ROOT / "bench/gpu_scale.py"), "fsdp", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "--cases" in r.stdout


@pytest.mark.slow
def test_gpu_scale_server_check_dry_run_on_cpu(tmp_path):
    """The server check's own logic on CPU (about 75 s): server and colocated runs give the same
    weights, the overlapped run logs a staleness of 1."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "bench/gpu_scale.py"), "server", "--device", "cpu", "--out",
                        str(tmp_path), "--steps", "4", "--max-new", "16"], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = {x["check"]: x for x in json.loads((tmp_path / "server.json").read_text())}
    assert rows["server vs colocated weights"]["max_abs_diff"] == 0.0
    assert rows["train server_overlap"]["staleness_max"] == 1
    assert rows["server --weights group (nccl)"]["status"] == "SKIP"      # NCCL needs a second GPU
