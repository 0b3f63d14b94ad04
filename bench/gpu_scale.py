"""GPU checks of the scale-out paths (issue 20), run by bench/gpu_session.sh; also a report writer.

    python bench/gpu_scale.py server --model DIR --out OUT     # rollout server on the GPU: sync, overlap
    python bench/gpu_scale.py fsdp --out OUT                   # dist_check's cases on the GPUs (nccl)
    python bench/gpu_scale.py report OUT [--doc docs/gpu.md]   # OUT/*.json -> a results section

``server``: starts ``groupo serve-rollouts --device cuda`` on a free port, trains the demo recipe (30 supervised steps, then
GRPO) three times (colocated ``lean``; ``rollout.name=server``; server with ``rollout.overlap=true``) and records
each run's median step time, the overlap/synchronous ratio, the staleness logged by the overlapped
run and the largest weight difference between the colocated and the server run (0 on CPU; on a GPU
it depends on the kernels being the same in both processes, so it is recorded, not required).
With 2 GPUs it also runs the server on the second GPU with ``--weights group`` (weights over NCCL)
and the trainer on the first. ``fsdp``: ``scripts/dist_check.py --device cuda`` with one process per visible GPU (at most 2) on
the FSDP cases and the plain data-parallel one. Each check writes OUT/<check>.json as a list of
``{"check", "status", ...}`` rows, the format of gpu_smoke's summary.json.
``report``: every OUT/*.json as one markdown table, printed, and with ``--doc`` written into the
file between the markers ``<!-- gpu-results:begin -->`` and ``<!-- gpu-results:end -->``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- gpu-results:begin -->", "<!-- gpu-results:end -->"


def _row(rows: list, name: str, ok: bool | None, **info) -> None:
    rows.append({"check": name, "status": "SKIP" if ok is None else ("OK" if ok else "FAIL"), **info})
    print(f"gpu_scale: [{name}] {rows[-1]['status']}: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)


def _train(run: Path, over: list[str], timeout: int) -> tuple[int | str, list[dict]]:
    cmd = [sys.executable, "-m", "groupo", "train", "demo", "--force", "--out", str(run), *over]
    print("gpu_scale: $ " + " ".join(cmd), flush=True)
    try:
        rc = subprocess.run(cmd, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    m = run / "metrics.jsonl"
    return rc, [json.loads(x) for x in m.read_text().splitlines() if x.strip()] if m.exists() else []


def _median_step(rows: list[dict], skip: int = 2) -> float:
    vals = [r["time/step"] for r in rows[skip:] if "time/step" in r]
    return statistics.median(vals) if vals else float("nan")


def _weights_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    steps = sorted((a / "checkpoints").glob("step_*"), key=lambda p: int(p.name[5:]))
    wa, wb = load_file(steps[-1] / "model.safetensors"), load_file(b / "checkpoints" / steps[-1].name / "model.safetensors")
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def server_check(args) -> list:
    rows: list = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else None
    if model is None:
        from groupo.model.tiny import build_tiny

        model = out / "tiny_model"
        if not (model / "config.json").exists():
            build_tiny(model, seed=0, hidden=256, layers=4, heads=4)
    procs = []
    try:
        url = _start(out / "server.log", model, args.device, ["--weights-dir", str(out / "weights")], procs)
        if url is None:
            _row(rows, "server start", False, log=(out / "server.log").read_text()[-500:])
            return rows
        common = [f"model.path={model}", "model.tiny=false", f"model.device={args.device}", "warmstart.steps=30",
                  "generation.group_size=8", "generation.prompts_per_step=8", f"generation.max_new_tokens={args.max_new}",
                  "generation.seed_per_prompt=true", f"train.steps={args.steps}", "train.lr=1e-5",
                  "eval.before=false", "eval.after=false", "log.tensorboard=false", "log.progress=false",
                  f"checkpoint.every={args.steps}"]
        if args.device == "cpu":      # three processes compared bit for bit: "auto" times oneDNN against torch in
            common.append("model.cpu_gemm=torch")   # each, and near its threshold two runs can choose differently
        srv = ["rollout.name=server", f"rollout.url={url}", "rollout.tis_cap=0"]      # no correction: same samples
        runs = {"colocated": ["rollout.name=lean"], "server": srv, "server_overlap": srv + ["rollout.overlap=true"]}
        got = {}
        for name, extra in runs.items():
            rc, metrics = _train(out / name, common + extra, args.timeout)
            finite = bool(metrics) and all(math.isfinite(r.get("loss", 0.0)) for r in metrics)
            got[name] = _median_step(metrics)
            info = dict(rc=rc, steps=len(metrics), step_s=round(got[name], 4))
            if name == "server_overlap" and metrics:
                info["staleness_max"] = max(r.get("rollout/staleness_max", float("nan")) for r in metrics)
            _row(rows, f"train {name}", rc == 0 and finite, **info)
        if all(r["status"] == "OK" for r in rows):
            _row(rows, "server vs colocated weights", True, max_abs_diff=_weights_diff(out / "colocated", out / "server"))
            _row(rows, "overlap / synchronous step time", True, ratio=round(got["server_overlap"] / got["server"], 3))
        _nccl_group(args, out, model, common, procs, rows)
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return rows


def _start(log: Path, model: Path, device: str, extra: list, procs: list, env: dict | None = None) -> str | None:
    """``groupo serve-rollouts`` on a free port (appended to ``procs``); its url, or None."""
    proc = subprocess.Popen([sys.executable, "-m", "groupo", "serve-rollouts", "--model", str(model), "--port", "0",
                             "--device", device, *extra], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    procs.append(proc)
    url, t0 = None, time.time()
    while url is None and time.time() - t0 < 120 and proc.poll() is None:
        found = re.search(r"on (http://\S+) ", log.read_text())
        url = found.group(1) if found else None
        time.sleep(0.5)
    return url


def _nccl_group(args, out: Path, model: Path, common: list, procs: list, rows: list) -> None:
    """``--weights group`` on NCCL: the server on the second GPU, the trainer on the first (NCCL
    refuses two ranks on one GPU, so one GPU skips it)."""
    import torch

    if args.device != "cuda" or torch.cuda.device_count() < 2:
        _row(rows, "server --weights group (nccl)", None, why="needs 2 GPUs (NCCL: one rank per GPU)")
        return
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0,1").split(",")[1]}
    url = _start(out / "server_group.log", model, "cuda", ["--weights", "group"], procs, env)
    if url is None:
        _row(rows, "server --weights group (nccl) start", False, log=(out / "server_group.log").read_text()[-500:])
        return
    rc, metrics = _train(out / "server_group", common + ["rollout.name=server", f"rollout.url={url}", "rollout.tis_cap=0"],
                         args.timeout)
    ok = rc == 0 and bool(metrics) and all(math.isfinite(r.get("loss", 0.0)) for r in metrics)
    info = dict(rc=rc, steps=len(metrics), step_s=round(_median_step(metrics), 4) if metrics else None)
    if ok and (out / "colocated").exists():
        info["max_abs_diff_vs_colocated"] = _weights_diff(out / "colocated", out / "server_group")
    _row(rows, "train server_group (nccl weights)", ok, **info)


def fsdp_check(args) -> list:
    import torch

    rows: list = []
    n = min(2, torch.cuda.device_count())
    cmd = [sys.executable, str(ROOT / "scripts/dist_check.py"), "--device", "cuda", "--nproc", str(n),
           "--cases", args.cases, "--tol", str(args.tol)]
    print("gpu_scale: $ " + " ".join(cmd), flush=True)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        text, rc = r.stdout + r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        text, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
    print(text[-4000:], flush=True)
    for case, diff, verdict in re.findall(r"dist-check (\w+): max \|[^=]+= (\S+) \((ok|FAIL)\)", text):
        _row(rows, f"fsdp {case} ({n} GPU)", verdict == "ok", max_abs_diff=float(diff))
    if not rows:
        _row(rows, f"fsdp ({n} GPU)", False, rc=rc, tail=text[-300:])
    return rows


def report(out: Path) -> str:
    lines = ["| file | check | status | measured |", "|---|---|---|---|"]
    for f in sorted(out.glob("*.json")):
        try:
            data = json.loads(f.read_text())
        except ValueError:
            continue
        for r in data if isinstance(data, list) else []:
            info = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
                             if k not in ("check", "status"))
            lines.append(f"| {f.stem} | {r.get('check')} | {r.get('status')} | {info.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def write_doc(doc: Path, table: str, header: str) -> None:
    text = doc.read_text()
    block = f"{BEGIN}\n{header}\n\n{table}{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Results of the last GPU session (written by bench/gpu_scale.py)\n\n" + block + "\n"
    doc.write_text(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("server")
    s.add_argument("--model", help="local model directory (default: a tiny model built here)")
    s.add_argument("--out", default="runs/gpu_scale/server")
    s.add_argument("--steps", type=int, default=8)
    s.add_argument("--max-new", type=int, default=64)
    s.add_argument("--timeout", type=int, default=240, help="seconds per training run")
    s.add_argument("--device", default="cuda", help=argparse.SUPPRESS)     # cpu: a dry run of the check
    f = sub.add_parser("fsdp")
    f.add_argument("--out", default="runs/gpu_scale")
    f.add_argument("--cases", default="grpo,fsdp_grpo,fsdp_iters2_kl,fsdp_rank_without_rows")
    f.add_argument("--tol", type=float, default=1e-4, help="GPU kernels differ more than CPU ones (default 1e-4)")
    f.add_argument("--timeout", type=int, default=300)
    r = sub.add_parser("report")
    r.add_argument("out", help="a gpu_session output directory")
    r.add_argument("--doc", help="also write the table into this markdown file (docs/gpu.md)")
    r.add_argument("--header", default="", help="a line above the table (machine, date, software)")
    args = p.parse_args(argv)
    if args.what == "report":
        table = report(Path(args.out))
        print(table)
        if args.doc:
            write_doc(Path(args.doc), table, args.header or f"Results from {args.out}.")
        return 0
    import torch

    if not torch.cuda.is_available() and getattr(args, "device", "cuda") == "cuda":
        print("gpu_scale: no CUDA device visible to torch", file=sys.stderr)
        return 2
    rows = server_check(args) if args.what == "server" else fsdp_check(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.what}.json").write_text(json.dumps(rows, indent=2, default=str))
    return 1 if any(r["status"] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
