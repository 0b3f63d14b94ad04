"""GPU-only paths stay optional: importing groupo and running the CPU demo path never
imports vllm, peft or CUDA-only code; the truncated importance-sampling weights of the
vLLM backend from hand numbers; a clear error without vllm/GPU; the real-model recipes
validate."""
import math
import subprocess
import sys

import pytest
import torch

from groupo.rollout.vllm_backend import truncated_is_weights


def test_import_and_cpu_train_never_import_optional_gpu_packages(tiny_dir, tmp_path):
    code = (
        "import sys, groupo\n"
        "from groupo.config import load_config\n"
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
    assert "IMPORTED []" in r.stdout


def test_truncated_is_weights_by_hand():
    old = torch.tensor([[-1.0, -2.0, -0.5, -3.0]])
    smp = torch.tensor([[-1.0, -1.0, -2.0, -3.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    w = truncated_is_weights(old, smp, mask, cap=2.0)
    # ratios exp(0)=1, exp(-1)=0.3679, exp(1.5)=4.48 -> capped at 2, masked -> 0
    assert w.tolist()[0] == pytest.approx([1.0, math.exp(-1.0), 2.0, 0.0])
    with pytest.raises(ValueError):
        truncated_is_weights(old, smp, mask, cap=0)


def test_vllm_backend_without_vllm_or_gpu_is_one_clear_error(tiny):
    model, tok = tiny
    from groupo.model.load import ModelError
    from groupo.rollout import generate

    try:
        import vllm  # noqa: F401
        has = torch.cuda.is_available()
    except ImportError:
        has = False
    if has:
        pytest.skip("vllm and a GPU are present")
    with pytest.raises(ModelError, match="generation.backend=vllm needs"):
        generate(model, tok, ["a=+1;?a"], [2], 3, [tok.eos_token_id], backend="vllm")


@pytest.mark.parametrize("recipe", ["qwen_math_1p5b_1gpu", "qwen_math_1p5b_8gpu"])
def test_real_model_recipes_validate(recipe, tiny_dir, tmp_path):
    from groupo.config import load_config

    data = tmp_path / "d.jsonl"
    data.write_text("".join(f'{{"question": "q{i}", "answer": "{i}"}}\n' for i in range(20)))
    cfg = load_config(recipe, [f"model.path={tiny_dir}", f"task.path={data}"])
    assert cfg.generation.backend == "vllm" and cfg.model.dtype == "bfloat16"


def test_gpu_smoke_script_is_valid_and_refuses_without_cuda():
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench/gpu_smoke.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run the script itself")
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PY": sys.executable})
    assert r.returncode != 0 and "no CUDA device" in r.stderr
