"""One TRL GRPOTrainer bench run (run with .venv-bench/bin/python): prints RESULT_JSON {...}.

Same model directory, tokenizer, prompts ("a+b=", a, b in 0..49), reward (bench/reward.py),
8 prompts x 8 generations per optimizer step, up to 32 new tokens, temperature 1, lr 1e-4,
AdamW, fp32, beta as given. TRL at its fastest fp32 setting on this CPU: bf16=False (its
default is True even on CPU), gradient_checkpointing=False (its default True recomputes the
forward; measured slower here in ../shared/bench/TRL_BASELINE.md). Phases are timed by
wrapping TRL's own methods via super(); step time between on_step_end callbacks.
"""
import argparse
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from reward import reward

    rng = random.Random(0)
    pairs = [(rng.randint(0, 49), rng.randint(0, 49)) for _ in range(8 * args.steps)]
    data = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a, b in pairs], "answer": [str(a + b) for a, b in pairs]})
    tok = AutoTokenizer.from_pretrained(args.model)
    tok.padding_side = "left"
    cfg = GRPOConfig(output_dir="/tmp/trl_bench_out", use_cpu=True, bf16=False, fp16=False,
                     gradient_checkpointing=False, num_generations=8, per_device_train_batch_size=64,
                     gradient_accumulation_steps=1, max_completion_length=32, learning_rate=1e-4,
                     max_steps=args.steps, logging_steps=1, report_to="none", save_strategy="no", beta=args.beta,
                     temperature=1.0, seed=0, dataloader_num_workers=0)
    phases = {"generation": [], "score_and_ref": [], "loss_forward": [], "training_step": []}

    class Timed(GRPOTrainer):
        def _generate_single_turn(self, *a, **kw):
            t = time.perf_counter()
            out = super()._generate_single_turn(*a, **kw)
            phases["generation"].append(time.perf_counter() - t)
            return out

        def _generate_and_score_completions(self, *a, **kw):
            t = time.perf_counter()
            n = len(phases["generation"])
            out = super()._generate_and_score_completions(*a, **kw)
            gen = sum(phases["generation"][n:])
            phases["score_and_ref"].append(time.perf_counter() - t - gen)
            return out

        def compute_loss(self, *a, **kw):
            t = time.perf_counter()
            out = super().compute_loss(*a, **kw)
            phases["loss_forward"].append(time.perf_counter() - t)
            return out

        def training_step(self, *a, **kw):
            t = time.perf_counter()
            out = super().training_step(*a, **kw)
            phases["training_step"].append(time.perf_counter() - t)
            return out

    steps = []

    class Clock(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            now = time.perf_counter()
            steps.append(now - self.t)
            self.t = now

    trainer = Timed(model=args.model, reward_funcs=reward, args=cfg, train_dataset=data, processing_class=tok,
                    callbacks=[Clock()])
    trainer.train()
    k = slice(2, None)
    med = lambda xs: statistics.median(xs[k]) if len(xs) > 2 else float("nan")  # noqa: E731
    gen, score = med(phases["generation"]), med(phases["score_and_ref"])
    fwd, ts = med(phases["loss_forward"]), med(phases["training_step"])
    step = med(steps)
    out = {"lib": "trl", "step_s": step, "generation_s": gen, "scoring_s": score, "logprobs_s": None,
           "forward_s": fwd, "backward_s": ts - gen - score - fwd, "optimizer_s": step - ts,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("RESULT_JSON " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
