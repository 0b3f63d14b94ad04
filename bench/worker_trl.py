"""One TRL GRPOTrainer bench run (run with .venv-bench/bin/python): prints RESULT_JSON {...}.

Same model directory, tokenizer, prompts (the exact list groupo's loop draws, from
--prompt-file, in order: shuffle_dataset=False), reward (bench/reward.py), 8 prompts x 8
generations per optimizer step, up to 32 new tokens, temperature 1, lr 1e-4 with linear
decay, AdamW, grad clip 1.0, fp32, beta as given, loss_type 'dapo' (TRL's default; token
mean over the step = groupo's aggregation token_mean), use_bias_correction_kl=False (TRL
1.16 defaults it to True: the k3 KL times the importance ratio, whose value is 1 on-policy
but whose gradient differs; groupo's k3 is the plain DeepSeekMath estimator; see
bench/equivalence.py).

TRL at its fastest fp32 setting on this CPU (../shared/bench/TRL_BASELINE.md):
bf16=False (its default is True even on CPU), gradient_checkpointing=False (its default
True recomputes the forward in backward), per_device_train_batch_size=64 completions (it
counts completions, not prompts) with gradient_accumulation_steps=1, so one generate, one
forward and one backward of all 64 rows per step; logging only at the end. TRL's other speed
switches were measured against these and left off: cache_implementation="static" and
torch_compile=True were no faster, use_transformers_continuous_batching=True ~35x slower in
generation (docs/performance.md, "TRL's other settings"). ``--set KEY=VALUE`` tries others.

Timing: step time between consecutive on_step_end callbacks. Phases by wrapping TRL's own
methods via super(): generation (_generate_single_turn), scoring (_calculate_rewards),
log-probs (no-grad _get_per_token_logps_and_entropies: the reference model when beta > 0),
forward (compute_loss), backward (training_step - _prepare_inputs - compute_loss),
optimizer (_clip_grad_norm + optimizer.step via the pre/post optimizer callbacks); other =
the rest (tokenising, padding, decoding, TRL bookkeeping, scheduler, dataloader).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from common import Contention, emit, median, peak_rss_mb, worker_parser  # noqa: E402


def grpo_config(out_dir: str, beta: float, steps: int, prompts: int, group: int, max_new: int, lr: float,
                loss_type: str = "dapo", **extra):
    import torch
    from trl import GRPOConfig

    kw = dict(
        output_dir=out_dir, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        num_generations=group, per_device_train_batch_size=prompts * group, gradient_accumulation_steps=1,
        max_completion_length=max_new, temperature=1.0, top_p=1.0, top_k=0, learning_rate=lr,
        lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, beta=beta,
        loss_type=loss_type, scale_rewards="group", epsilon=0.2, num_iterations=1, max_steps=steps,
        use_bias_correction_kl=False,      # TRL 1.16 default True: k3 x ratio (DeepSeek-V3.2), not groupo's k3
        logging_steps=max(steps, 1), report_to="none", save_strategy="no", seed=0, data_seed=0,
        shuffle_dataset=False, dataloader_num_workers=0, disable_tqdm=True,
        model_init_kwargs={"dtype": torch.float32})
    kw.update(extra)
    return GRPOConfig(**kw)


def _kv(item: str) -> tuple:
    key, eq, value = item.partition("=")
    if not eq or not key:
        raise SystemExit(f"worker_trl.py: --set {item!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main():
    ap = worker_parser()
    ap.add_argument("--prompt-file", required=True)
    ap.add_argument("--bf16", action="store_true", help="TRL's bf16=True: bf16 autocast over float32 weights")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra GRPOConfig fields, VALUE as JSON where it parses (experiments: trying TRL's other "
                         "settings; the bench itself passes none)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    import torch

    torch.set_num_threads(args.threads)
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOTrainer

    from reward import reward

    rows = json.loads(Path(args.prompt_file).read_text())[: args.prompts * args.steps]
    data = Dataset.from_dict({"prompt": [r["prompt"] for r in rows], "answer": [r["answer"] for r in rows]})
    tok = AutoTokenizer.from_pretrained(args.model)
    tok.padding_side = "left"
    ph = {k: [] for k in ("generation", "scoring", "logprobs", "gen_and_score", "prepare", "forward",
                          "training_step", "clip", "opt")}
    toks, seen_prompts = [], []

    def acc(key, t0):
        ph[key].append(time.perf_counter() - t0)

    class Timed(GRPOTrainer):
        def _generate_single_turn(self, prompt_ids, *a, **kw):
            t = time.perf_counter()
            ids, lp = super()._generate_single_turn(prompt_ids, *a, **kw)
            acc("generation", t)
            lens = [len(c) for c in ids]
            toks.append({"completion_tokens": sum(lens), "padded_completion_tokens": len(lens) * max(lens),
                         "prompt_tokens": sum(len(p) for p in prompt_ids), "rows": len(lens)})
            return ids, lp

        def _calculate_rewards(self, inputs, prompts, *a, **kw):
            t = time.perf_counter()
            out = super()._calculate_rewards(inputs, prompts, *a, **kw)
            acc("scoring", t)
            seen_prompts.extend(prompts[:: args.group])
            return out

        def _get_per_token_logps_and_entropies(self, *a, **kw):
            if torch.is_grad_enabled():
                return super()._get_per_token_logps_and_entropies(*a, **kw)
            t = time.perf_counter()
            out = super()._get_per_token_logps_and_entropies(*a, **kw)
            acc("logprobs", t)
            return out

        def _generate_and_score_completions(self, *a, **kw):
            t = time.perf_counter()
            out = super()._generate_and_score_completions(*a, **kw)
            acc("gen_and_score", t)
            return out

        def _prepare_inputs(self, *a, **kw):
            t = time.perf_counter()
            out = super()._prepare_inputs(*a, **kw)
            acc("prepare", t)
            return out

        def compute_loss(self, *a, **kw):
            t = time.perf_counter()
            out = super().compute_loss(*a, **kw)
            acc("forward", t)
            return out

        def training_step(self, *a, **kw):
            t = time.perf_counter()
            out = super().training_step(*a, **kw)
            acc("training_step", t)
            return out

        def _clip_grad_norm(self, *a, **kw):
            t = time.perf_counter()
            out = super()._clip_grad_norm(*a, **kw)
            acc("clip", t)
            return out

    ends = []

    class Clock(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            ends.append(time.perf_counter())

        def on_pre_optimizer_step(self, a, state, control, **kw):
            self.t_opt = time.perf_counter()

        def on_optimizer_step(self, a, state, control, **kw):
            acc("opt", self.t_opt)

        def on_step_end(self, a, state, control, **kw):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        cfg = grpo_config(tmp, args.beta, args.steps, args.prompts, args.group, args.max_new, args.lr,
                          **{"bf16": args.bf16, **dict(_kv(item) for item in args.set)})
        trainer = Timed(model=args.model, reward_funcs=reward, args=cfg, train_dataset=data, processing_class=tok,
                        callbacks=[Clock()])
        meter = Contention()
        trainer.train()
        cont, rss = meter.result(), peak_rss_mb()
    walls = [b - a for a, b in zip(ends, ends[1:])]
    timed = range(args.warmup, len(walls))
    split = {}
    for i in timed:
        gen, score, lp = ph["generation"][i], ph["scoring"][i], ph["logprobs"][i] if ph["logprobs"] else 0.0
        fwd, opt = ph["forward"][i], ph["clip"][i] + ph["opt"][i]
        bwd = ph["training_step"][i] - ph["prepare"][i] - fwd
        for k, v in (("generation_s", gen), ("scoring_s", score), ("logprobs_s", lp), ("forward_s", fwd),
                     ("backward_s", bwd), ("optimizer_s", opt),
                     ("other_s", walls[i] - gen - score - lp - fwd - bwd - opt)):
            split.setdefault(k, []).append(v)
    out = {"lib": "trl", "beta": args.beta, "threads": torch.get_num_threads(),
           "step_s": median(walls[i] for i in timed), "step_times_s": [round(w, 4) for w in walls],
           **{k: median(v) for k, v in split.items()},
           **{k: median(toks[i][k] for i in timed) for k in toks[0]},
           "prompts_match": seen_prompts == [r["prompt"] for r in rows][: len(seen_prompts)],
           "peak_rss_mb": rss, **cont,
           "config": {"loss_type": cfg.loss_type, "use_bias_correction_kl": cfg.use_bias_correction_kl, "bf16": cfg.bf16, "gradient_checkpointing": cfg.gradient_checkpointing,
                      "per_device_train_batch_size": cfg.per_device_train_batch_size, "optim": str(cfg.optim)},
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}}
    emit(out)


if __name__ == "__main__":
    main()
