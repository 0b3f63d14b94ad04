"""Two processes vs one: the weights after training steps must agree (make test-dist).

``--device cuda --nproc N`` runs the same cases on GPUs with nccl (bench/gpu_session.sh).

For each case, trains the same recipe (a) in this process and (b) with ``torchrun
--nproc_per_node 2`` (gloo on CPU), both with per-prompt sampling seeds so the global batch
is the same, and prints the largest absolute weight difference. Exit status 1 when any
difference exceeds the tolerance (1e-5). Cases cover the batch-level statistics that must
be computed over all ranks: GDPO batch normalisation, DAPO's global token mean (with the
zero-variance refill deciding on global counts), DGPO valid-token normalisation and
question weights, old log-probs gathered for num_iterations=2 with a KL reference, OTB's old
log-probs and sum pi^2 gathered from the ranks, and
R³ replay state; and the same with the model sharded by FSDP2 (``train.parallel=fsdp``), including
a step where one rank has no prompt (it runs zero-weight passes to keep the collectives in step);
PPO's critic and ReMax's greedy rows; generation in a rollout server (``groupo serve-rollouts``,
started once here and shared by both sides), from a plain and from a sharded trainer (weights as files, and over a gloo group); and colocated
vLLM, plain and sharded (on CPU the fake engine of tests/fake_vllm.py samples).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FAKE_VLLM = str(Path(__file__).resolve().parents[1] / "tests" / "fake_vllm_launch.py")
CASES = {
    "grpo": [],
    "dapo_token_mean_refill": ["aggregation.name=token_mean", "filter.name=zero_variance", "filter.refill=true",
                               "filter.max_rounds=2", "objective.eps_high=0.28"],
    "gdpo_batch_norm": ["advantage.name=gdpo"],
    "dgpo": ["advantage.name=dgpo", "weighting.name=dgpo_dqw", "aggregation.name=dgpo_token_mean"],
    "iters2_kl": ["train.num_iterations=2", "kl.name=k3", "kl.coef=0.05"],
    "r3": ["replay.name=r3", "shaping.name=entropy_rank"],
    # FSDP2 (train/fsdp.py): the 2-process run shards the model; the 1-process run is the plain one
    "fsdp_grpo": ["train.parallel=fsdp"],
    "fsdp_dapo_refill": ["train.parallel=fsdp", "aggregation.name=token_mean", "filter.name=zero_variance",
                         "filter.refill=true", "filter.max_rounds=2", "objective.eps_high=0.28"],
    "fsdp_iters2_kl": ["train.parallel=fsdp", "train.num_iterations=2", "kl.name=k3", "kl.coef=0.05"],
    # LoRA adapters sharded with the frozen base; the KL reference is the base with adapters off
    "fsdp_lora_kl": ["train.parallel=fsdp", "model.lora_r=4", "model.lora_alpha=8", "kl.name=k3", "kl.coef=0.05"],
    # one prompt: one rank has no row at all (zero-weight passes keep the collectives in step); and a
    # step with no row to train anywhere leaves AdamW's state alone, as one process does
    "rank_without_rows": ["generation.prompts_per_step=1"],
    "fsdp_rank_without_rows": ["train.parallel=fsdp", "generation.prompts_per_step=1"],
    # PPO's critic: V_old gathered from the ranks, GAE (whitened) on the global batch, the value model's
    # gradients summed as the policy's (its weights are compared too); ReMax: each rank's greedy rows
    "ppo_critic": ["advantage.name=gae", "critic.name=value", "critic.lr=1e-3", "aggregation.name=token_mean"],
    "remax": ["advantage.name=remax", "objective.name=reinforce"],
    "ppo_rank_without_rows": ["advantage.name=gae", "critic.name=value", "critic.lr=1e-3", "generation.prompts_per_step=1"],
    # generation in a separate process (groupo serve-rollouts, started here; both sides use it): the
    # 2-process run has rank 0 push the weights for both ranks, each rank sends its share of prompts
    "server": ["rollout.name=server", "rollout.tis_cap=0"],
    # OTB: the old log-probs and sum pi^2 of every row gathered from the ranks (the per-token baseline
    # needs the whole group's realized energy)
    "otb": ["advantage.name=otb", "aggregation.name=token_mean"],
    "fsdp_otb": ["train.parallel=fsdp", "advantage.name=otb", "aggregation.name=token_mean"],
    # the sharded trainer pushes its gathered weights to the server (every rank gathers, rank 0 writes)
    "fsdp_server": ["train.parallel=fsdp", "rollout.name=server", "rollout.tis_cap=0"],
    # the same with the weights over a gloo group of two (a second server, --weights group)
    "fsdp_server_group": ["train.parallel=fsdp", "rollout.name=server", "rollout.tis_cap=0"],
    # two servers (data-parallel rollouts): rank 0 draws from the files server, rank 1 from the group
    # server, each rank pushes to its own; the 1-process run uses the files server alone
    "fsdp_servers2": ["train.parallel=fsdp", "rollout.name=server", "rollout.tis_cap=0"],
    # colocated vLLM, on CPU through the fake engine of tests/fake_vllm.py (tests/fake_vllm_launch.py):
    # every rank its own engine, created before step 1; sharded, each engine loads the gathered weights
    "vllm": ["rollout.name=vllm"],
    "fsdp_vllm": ["train.parallel=fsdp", "rollout.name=vllm"],
}


def overrides(model_dir: Path, reward: Path, case: str, device: str = "cpu") -> list[str]:
    return [f"model.path={model_dir}", f"model.device={device}", "model.tiny=false", "model.threads=1", "generation.group_size=4",
            "generation.prompts_per_step=6", "generation.max_new_tokens=5", "generation.temperature=1.5",
            "generation.seed_per_prompt=true", "train.steps=2", "train.lr=2e-4", "train.micro_batches=2",
            "warmstart.steps=0", "eval.before=false", "eval.after=false", "log.tensorboard=false",
            "checkpoint.every=0", "sampler.name=prompt_gdro", "sampler.pool_size=4",
            f"rewards=[{{name: correct, weight: 1.0}}, {{name: python, path: {reward}, weight: 0.5}}]",
            *CASES[case]]


def max_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    name = "model.safetensors" if (a / "checkpoints/step_2/model.safetensors").exists() else "adapter_model.safetensors"
    diffs = []
    for f in (name, "critic.safetensors"):     # LoRA runs save their adapters; a critic's weights are compared too
        if (a / "checkpoints/step_2" / f).exists():
            wa = load_file(a / "checkpoints/step_2" / f)
            wb = load_file(b / "checkpoints/step_2" / f)
            diffs += [float((wa[k] - wb[k]).abs().max()) for k in wa]
    return max(diffs)


GROUP_CASES = {"fsdp_server_group"}      # served by the --weights group server
TWO_SERVER_CASES = {"fsdp_servers2"}     # the torchrun side uses both servers


def start_server(model: Path, tmp: Path, device: str, env: dict, weights: str = "files"):
    """``groupo serve-rollouts`` on a free port; returns the process and its URL."""
    import time

    log = tmp / f"server_{weights}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "groupo", "serve-rollouts", "--model", str(model), "--port", "0",
                                 "--threads", "1", "--device", device, "--weights-dir", str(tmp / "server_weights"),
                                 "--weights", weights], stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while "serving rollouts" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"dist-check: the rollout server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return proc, log.read_text().split(" on ", 1)[1].split()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="cuda: nccl, one GPU per process (bench/gpu_session.sh)")
    ap.add_argument("--nproc", type=int, default=2, help="processes of the torchrun side (default 2)")
    args = ap.parse_args()
    from groupo.model.tiny import build_tiny

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny(tmp / "model", seed=0, hidden=64, layers=2, heads=2)
        reward = tmp / "varied.py"
        reward.write_text("def reward(completions, **kw):\n    return [float(len(c) % 3) for c in completions]\n")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cases = args.cases.split(",")
        unknown = [c for c in cases if c not in CASES]
        if unknown:
            raise SystemExit(f"dist-check: unknown case {unknown[0]!r}; the cases: {', '.join(CASES)}")
        servers, urls = [], {}
        try:
            for kind in ("files", "group"):
                if any("rollout.name=server" in CASES[c] and ((c in GROUP_CASES) == (kind == "group")
                                                               or c in TWO_SERVER_CASES) for c in cases):
                    proc, urls[kind] = start_server(model, tmp, args.device, env, kind)
                    servers.append(proc)
            worst, failed = _run_cases(args, cases, model, reward, tmp, env, urls)
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait(timeout=30)
    print(f"dist-check: largest weight difference over {len(cases)} cases = {worst:.3e} "
          f"(tolerance {args.tol:g}); {'all passed' if not failed else 'failed: ' + ', '.join(failed)}")
    return 1 if failed else 0


def _run_cases(args, cases, model, reward, tmp, env, urls) -> tuple[float, list]:
    worst, failed = 0.0, []
    for case in cases:
        over = overrides(model, reward, case, args.device)
        if "rollout.name=server" in over:
            over.append(f"rollout.url={urls['group' if case in GROUP_CASES else 'files']}")
        # the 2-process side of a two-server case names both (the later override wins)
        both = [f"rollout.url={urls['files']},{urls['group']}"] if case in TWO_SERVER_CASES else []
        # the vllm cases on CPU: groupo with the fake vllm installed (on cuda: the real one)
        prog = [FAKE_VLLM] if "rollout.name=vllm" in over and args.device == "cpu" else ["-m", "groupo"]
        subprocess.run([sys.executable, *prog, "train", "demo", *over, "--out", str(tmp / case / "one")], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        before = _loaded(urls["group"]) if case in TWO_SERVER_CASES else None
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc)]
        out = subprocess.run([*torchrun, *prog, "train", "demo", *over, *both, "--out", str(tmp / case / "two")],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stdout[-3000:], out.stderr[-3000:], sep="\n")
            print(f"dist-check {case}: torchrun failed (exit {out.returncode})")
            failed.append(case)
            continue
        # rank 1 drew from the second server: it holds the new session's version that sampled step 2
        after = _loaded(urls["group"]) if case in TWO_SERVER_CASES else None
        if after is not None and (after[0] == before[0] or after[1] != 1):
            print(f"dist-check {case}: the second server did not serve rank 1")
            failed.append(case)
            continue
        d = max_diff(tmp / case / "one", tmp / case / "two")
        worst = max(worst, d)
        ok = d <= args.tol
        print(f"dist-check {case}: max |w_1proc - w_{args.nproc}proc| = {d:.3e} ({'ok' if ok else 'FAIL'})", flush=True)
        if not ok:
            failed.append(case)
    return worst, failed


def _loaded(url: str) -> list:
    """[session, version] of the weights the server at ``url`` holds."""
    from groupo.rollout.remote import Client

    return Client(url, 10).call("/health")["loaded"]


if __name__ == "__main__":
    sys.exit(main())
