"""Every built-in recipe validates and trains 2 steps on the tiny model through the CLI entry point."""
import json

import pytest

from groupo.cli import main
from groupo.config import load_config, recipe_names

SMALL = ["model.tiny=false", "model.threads=1", "generation.group_size=4", "generation.prompts_per_step=2",
         "generation.max_new_tokens=4", "train.steps=2", "train.micro_batches=2", "warmstart.steps=0",
         "task.name=lego", "task.eval_size=4", "eval.n=4", "eval.before=false", "eval.after=false",
         "log.tensorboard=false", "log.progress=false", "checkpoint.every=0"]


# the real-model GPU recipes run here with the CPU settings (no vLLM, fp32, the lego task)
GPU = ["rollout.name=lean", "model.device=cpu", "model.dtype=float32", "forward.logprob_chunk=0",
       "model.gradient_checkpointing=false"]
NEEDS = {r: GPU for r in ("qwen_math_1p5b_1gpu", "qwen_math_1p5b_8gpu")}


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_validates(name, tiny_dir):
    over = ["task.name=lego"] if name in NEEDS else []
    cfg = load_config(name, [f"model.path={tiny_dir}", *over])
    assert cfg.raw["advantage"]["name"] and cfg.raw["objective"]["name"]


EXTRA = {"dapo": ["shaping.cache=2"], **NEEDS}   # dapo: the overlong buffer must fit in max_new_tokens=4


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_trains_two_steps(name, tiny_dir, tmp_path):
    out = tmp_path / name
    assert main(["train", name, "--out", str(out), f"model.path={tiny_dir}", *SMALL, *EXTRA.get(name, [])]) == 0
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert (out / "checkpoints/step_2/model.safetensors").exists()
