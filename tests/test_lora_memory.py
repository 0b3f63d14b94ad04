"""LoRA through peft (train, resume, merged export loads with plain transformers), the
adapter-off KL reference, gradient checkpointing, bf16 autocast, and the chunked log-prob
path (float64 equivalence of log-probs and gradients with the naive forward)."""
import json

import pytest
import torch

from groupo.cli import main
from groupo.model.forward import completion_logprobs
from groupo.model.load import load_model


def _batch(tok, n=3):
    p = tok(["a=+1;b=-a;?b", "c=-1;?c", "x=+1;y=+x;z=-y;?z"][:n], return_tensors="pt", padding=True)
    c = torch.randint(5, 30, (n, 7), generator=torch.Generator().manual_seed(0))
    cm = torch.ones(n, 7, dtype=torch.long)
    cm[0, 5:] = 0
    return p["input_ids"], p["attention_mask"], c, cm


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_chunked_logprobs_equal_naive_in_float64(tiny_dir, tiny, chunk):
    _, tok = tiny
    model = load_model(tiny_dir).double()
    args = _batch(tok)
    lp_a, ent_a = completion_logprobs(model, *args, temperature=1.3, with_entropy=True)
    (lp_a * args[3]).sum().backward()
    grads_a = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    lp_b, ent_b = completion_logprobs(model, *args, temperature=1.3, with_entropy=True, chunk=chunk)
    (lp_b * args[3]).sum().backward()
    assert torch.allclose(lp_a, lp_b, atol=1e-12, rtol=0) and torch.allclose(ent_a, ent_b, atol=1e-12, rtol=0)
    for ga, p in zip(grads_a, model.parameters()):
        assert torch.allclose(ga, p.grad, atol=1e-12, rtol=0)


def _train(out, tiny_dir, *over):
    return main(["train", "demo", "--out", str(out), f"model.path={tiny_dir}", "model.tiny=false",
                 "model.threads=1", "generation.group_size=4", "generation.prompts_per_step=3",
                 "generation.max_new_tokens=5", "warmstart.steps=0", "task.eval_size=8", "eval.n=8",
                 "eval.before=false", "log.tensorboard=false", "checkpoint.every=1", "checkpoint.keep=5",
                 "train.lr=1e-2", *over])


def test_lora_trains_resumes_and_exports_a_plain_model(tiny_dir, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    f = tmp_path / "varied.py"
    f.write_text("def reward(completions, **kw):\n    return [float(len(c) % 3) for c in completions]\n")
    lora = ["model.lora_r=4", "kl.name=k3", "kl.coef=0.1", f"rewards=[{{name: python, path: {f}}}]", "train.steps=2"]
    assert _train(tmp_path / "run", tiny_dir, *lora) == 0
    ck = tmp_path / "run/checkpoints/step_2"
    assert (ck / "adapter_config.json").exists() and not (ck / "model.safetensors").exists()
    ad = load_file(ck / "adapter_model.safetensors")
    assert ad and all("lora_" in k for k in ad)
    rows = [json.loads(l) for l in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert rows[0]["kl/mean"] == pytest.approx(0.0, abs=1e-6)     # reference = the base (adapters off)
    assert rows[1]["kl/mean"] > 0 and rows[0]["grad_norm"] > 0
    # resume from step 1 ends with the same adapters as the uninterrupted run
    import shutil

    assert _train(tmp_path / "b", tiny_dir, *lora) == 0
    shutil.rmtree(tmp_path / "b/checkpoints/step_2")
    assert _train(tmp_path / "b", tiny_dir, *lora, "--resume") == 0
    bd = load_file(tmp_path / "b/checkpoints/step_2/adapter_model.safetensors")
    assert max(float((ad[k] - bd[k]).abs().max()) for k in ad) == 0.0
    # merged export: plain transformers, same outputs as the adapted model
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "merged")]) == 0
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    adapted = load_model(ck)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    assert torch.allclose(plain(ids).logits, adapted(ids).logits, atol=1e-5)
    base = load_model(tiny_dir)
    assert not torch.allclose(base(ids).logits, plain(ids).logits, atol=1e-5)   # the adapters did something


def test_gradient_checkpointing_and_bf16_autocast_run(tiny_dir, tmp_path):
    f = tmp_path / "varied.py"
    f.write_text("def reward(completions, **kw):\n    return [float(len(c) % 3) for c in completions]\n")
    over = ["model.gradient_checkpointing=true", "model.autocast=bfloat16", "forward.name=naive", "forward.logprob_chunk=2",
            "train.steps=1", "eval.after=false", f"rewards=[{{name: python, path: {f}}}]"]
    assert _train(tmp_path / "run", tiny_dir, *over) == 0
    row = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[0])
    assert row["loss"] == row["loss"] and row["grad_norm"] > 0


def test_lora_errors_are_one_line(tiny_dir, tmp_path, capsys):
    assert _train(tmp_path / "r", tiny_dir, "model.lora_r=4", "model.lora_targets=nope_proj") == 2
    assert "model.lora_targets" in capsys.readouterr().err
    assert _train(tmp_path / "r2", tiny_dir, "model.autocast=fp8") == 2
