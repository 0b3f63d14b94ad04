"""One groupo bench run (main venv): prints RESULT_JSON {...}. See bench/run.py.

It runs groupo's own training loop (``groupo.train.loop.train``: collect -> score -> optimise, the
code path of ``groupo train``) on the bench configuration, and times it from outside:

* step time = wall time between the starts of consecutive loop iterations (``collect`` is
  wrapped to note the time), so everything an iteration does counts, logging included,
  like TRL's time between consecutive ``on_step_end`` callbacks; one extra step is run so
  the last timed step has an end;
* the split comes from the loop's own per-step metrics (time/gen, time/score,
  time/logprobs, time/forward, time/backward, time/optimizer); "other" is the rest.

``--dump-prompts FILE`` writes the prompts the loop will draw (same config, seed and
sampler) instead of training, so the TRL worker can be fed exactly the same ones.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import Contention, emit, median, peak_rss_mb, worker_parser  # noqa: E402


def overrides(model: str, beta: float, steps: int, threads: int, prompts: int, group: int, max_new: int,
              lr: float) -> list[str]:
    """The bench configuration in groupo's terms (TRL's side: worker_trl.py)."""
    return [f"model.path={model}", "model.tiny=false", "model.device=cpu", "model.dtype=float32",
            f"model.threads={threads}", "model.gradient_checkpointing=false",
            "template.name=plain", "task.name=arithmetic", "task.levels=[2]", "task.eval_levels=[2]",
            "task.max_value=49", "task.eval_size=8", "sampler.name=uniform",
            f"rewards=[{{name: python, path: {HERE / 'reward.py'}}}]",
            f"generation.group_size={group}", f"generation.prompts_per_step={prompts}",
            f"generation.max_new_tokens={max_new}", "generation.temperature=1.0", "generation.top_p=1.0",
            "generation.top_k=0",
            "advantage.name=grpo", "advantage.eps=1.0e-4", "objective.name=ppo_clip", "objective.eps_low=0.2",
            "objective.eps_high=0.2",
            "aggregation.name=token_mean",          # = TRL loss_type 'dapo' (its default) on one process
            *(["kl.name=k3", f"kl.coef={beta}"] if beta else ["kl.name=none"]),
            "filter.name=none", f"train.steps={steps}", f"train.lr={lr}", "train.weight_decay=0.0",
            "train.schedule=linear", "train.warmup_steps=0", "train.micro_batches=1", "train.num_iterations=1",
            "train.grad_clip=1.0", "warmstart.steps=0", "eval.before=false", "eval.after=false",
            "log.tensorboard=false", "log.progress=false", "log.line_every=0", "checkpoint.every=0", "seed=0"]


def dump_prompts(cfg, steps: int, path: Path) -> None:
    """The loop's prompt draws: ``cfg.sampler`` with ``random.Random(cfg.seed)``, one call per
    step (filter none: one round per step), exactly as ``collect`` does."""
    import random

    rng, state = random.Random(cfg.seed), cfg.sampler.init_state()
    rows = []
    for _ in range(steps):
        for it in cfg.sampler(cfg.task, rng, cfg.generation.prompts_per_step, state):
            rows.append({"prompt": cfg.template(it.question, None), "answer": it.answer})
    path.write_text(json.dumps(rows))


def main():
    ap = worker_parser()
    ap.add_argument("--prompt-file", default="", help="check that the loop drew exactly these prompts")
    ap.add_argument("--dump-prompts", default="")
    ap.add_argument("--bf16", action="store_true", help="model.autocast=bfloat16 over float32 weights (TRL's bf16=True)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra groupo overrides (experiments; the bench itself passes none)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from groupo.config import load_config
    from groupo.train import loop

    n_steps = args.steps + 1            # the extra step closes the last timed one
    cfg = load_config("grpo", overrides(args.model, args.beta, n_steps, args.threads, args.prompts, args.group,
                                        args.max_new, args.lr) + (["model.autocast=bfloat16"] if args.bf16 else [])
                     + args.set)
    if args.dump_prompts:
        dump_prompts(cfg, n_steps, Path(args.dump_prompts))
        return
    starts, per_step = [], []
    orig_collect = loop.collect

    def timed_collect(run, step=0):
        starts.append(time.perf_counter())
        col = orig_collect(run, step)
        r = col.rollout
        per_step.append({"prompts": [it.question for it in col.prompt_items],
                         "prompt_tokens": int(r.prompt_mask.sum()), "completion_tokens": int(r.completion_mask.sum()),
                         "padded_completion_tokens": int(r.completion_ids.numel()), "rows": int(r.completion_ids.shape[0])})
        return col

    loop.collect = timed_collect
    meter = Contention()
    with tempfile.TemporaryDirectory() as tmp:
        loop.train(cfg, Path(tmp) / "run")
        rows = [json.loads(line) for line in (Path(tmp) / "run/metrics.jsonl").read_text().splitlines()]
    cont, rss = meter.result(), peak_rss_mb()
    walls = [b - a for a, b in zip(starts, starts[1:])]          # steps 1..n_steps-1
    timed = range(args.warmup, len(walls))                       # 0-based indices of timed steps
    keys = {"generation_s": "time/gen", "scoring_s": "time/score", "logprobs_s": "time/logprobs",
            "forward_s": "time/forward", "backward_s": "time/backward", "optimizer_s": "time/optimizer"}
    split = {k: median(rows[i].get(m, 0.0) or 0.0 for i in timed) for k, m in keys.items()}
    split["other_s"] = median(walls[i] - sum((rows[i].get(m, 0.0) or 0.0) for m in keys.values()) for i in timed)
    ok_prompts = None
    if args.prompt_file:
        want = [r["prompt"] for r in json.loads(Path(args.prompt_file).read_text())]
        got = [q for s in per_step for q in s["prompts"]]
        ok_prompts = got == want[: len(got)]
    out = {"lib": "groupo", "beta": args.beta, "threads": torch.get_num_threads(),
           "step_s": median(walls[i] for i in timed), "step_times_s": [round(w, 4) for w in walls],
           "loop_step_s": median(rows[i]["time/step"] for i in timed), **split,
           "completion_tokens": median(per_step[i]["completion_tokens"] for i in timed),
           "padded_completion_tokens": median(per_step[i]["padded_completion_tokens"] for i in timed),
           "prompt_tokens": median(per_step[i]["prompt_tokens"] for i in timed),
           "rows": median(per_step[i]["rows"] for i in timed),
           "zero_adv_rows_skipped": median(rows[i].get("rows/zero_adv_skipped", 0) for i in timed),
           "reward_mean": median(rows[i].get("reward/mean") for i in timed),
           "prompts_match": ok_prompts, "cpu_gemm": __import__("groupo.model.gemm").model.gemm.backend(),
           "cpu_gemm_probes": __import__("groupo.model.gemm").model.gemm.ratio(), "peak_rss_mb": rss, **cont,
           "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__}}
    emit(out)


if __name__ == "__main__":
    main()
