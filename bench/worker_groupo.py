"""One groupo bench run (main venv): prints RESULT_JSON {...}. See bench/run.py."""
import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from groupo.config import load_config
    from groupo.train.loop import train

    reward = Path(__file__).resolve().parent / "reward.py"
    over = [f"model.path={args.model}", "model.tiny=false", f"model.threads={args.threads}", "template.name=plain",
            "task.name=arithmetic", "task.levels=[2]", "task.eval_levels=[2]", "task.max_value=49",
            "task.eval_size=8", f"rewards=[{{name: python, path: {reward}}}]",
            "generation.group_size=8", "generation.prompts_per_step=8", "generation.max_new_tokens=32",
            "generation.temperature=1.0", "advantage.name=grpo", "objective.name=ppo_clip",
            "aggregation.name=token_mean", f"kl.name={'k3' if args.beta else 'none'}", f"kl.coef={args.beta}",
            f"train.steps={args.steps}", "train.lr=1e-4", "train.schedule=linear", "train.micro_batches=1",
            "train.grad_clip=1.0", "warmstart.steps=0", "eval.before=false", "eval.after=false",
            "log.tensorboard=false", "log.line_every=0", "checkpoint.every=0"]
    cfg = load_config("grpo", over)
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp) / "run")
        rows = [json.loads(l) for l in (Path(tmp) / "run/metrics.jsonl").read_text().splitlines()]
    rows = rows[2:]                                   # steps 3.. (warm-up excluded)
    med = lambda k: statistics.median(r.get(k, 0.0) for r in rows)  # noqa: E731
    out = {"lib": "groupo", "step_s": med("time/step"), "generation_s": med("time/gen"), "scoring_s": med("time/score"),
           "logprobs_s": med("time/logprobs"), "forward_s": med("time/forward"), "backward_s": med("time/backward"),
           "optimizer_s": med("time/optimizer"), "completion_tokens": med("tokens/generated"),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "mean_completion_len": med("len/mean")}
    print("RESULT_JSON " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
