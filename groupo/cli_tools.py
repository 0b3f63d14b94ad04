"""groupo's research and data commands: mqr | study | claims | base | serve-rollouts (cli.py runs them)."""
from __future__ import annotations

import argparse
from pathlib import Path


def _console():
    from rich.console import Console

    return Console(stderr=False, highlight=False, soft_wrap=True)


def cmd_mqr(args) -> int:
    from .data.mqr import reformulate

    names = [x.strip() for x in args.instructions.split(",") if x.strip()]
    console = _console()

    def progress(done: int, total: int) -> None:
        if done == total or done * 10 // total != (done - args.batch_size) * 10 // total:
            console.print(f"mqr: {done}/{total} rewrites generated")

    counts = reformulate(args.model, args.input, args.output, names, args.max_new_tokens, args.temperature,
                         args.seed, args.batch_size, args.limit, not args.rewrites_only, progress,
                         question_key=args.question_key, answer_key=args.answer_key, device=args.device,
                         dtype=args.dtype)
    rejected = {k: v for k, v in counts["rejected"].items() if v}
    console.print(f"mqr: {counts['rows_in']} questions -> {counts['rewrites_written']} rewrites, "
                  f"{counts['rows_out']} rows written to {args.output}; rejected: {rejected or 'none'}")
    return 0


def cmd_study(args) -> int:
    from .eval.study_report import write_study
    from .eval.study import load_study, run_study

    study = load_study(args.study)
    out = Path(args.out or Path("study") / study.name)
    console = _console()
    only = [x for x in (args.only or "").split(",") if x]
    if not args.report_only:
        console.print(f"study: {study.name}: {len(study.cells)} cells -> {out}")
        if args.jobs > 1:
            rc = _jobs(args, "study", args.study, out, console)
            if rc:
                return rc
        else:
            run_study(study, out, console, only=only)
    if args.no_report:
        return 0
    from .eval.study import _done

    cells = [(c.label + (f" G={c.group_size}" if c.group_size else ""), c.seed, out / "runs" / c.key)
             for c in study.cells if _done(out / "runs" / c.key)]            # finished cells only
    note = (study.description + " " if study.description else "") + f"base recipe: {study.base}; " \
        f"overrides: {' '.join(study.overrides) or '(none)'}; command: groupo study {args.study}"
    write_study(out, cells, f"Study: {study.name}", note)
    console.print(f"summary: {out / 'summary.md'}  report: {out / 'report.html'}")
    return 0


def _jobs(args, name: str, path: str, out: Path, console) -> int:
    """``--jobs N``: N processes of this command share the cells (eval/workers.py); the caller
    writes the summary once they end. One line when any of them failed."""
    from .eval.workers import run_jobs

    argv = [name, str(path), "--out", str(out), "--no-report", *(["--only", args.only] if args.only else [])]
    rc = run_jobs(argv, args.jobs, say=lambda s: console.print(f"{name}: {s}"))
    if rc:
        console.print(f"{name}: a process stopped with exit code {rc}; run the same command again to finish "
                      f"the remaining cells (finished ones are kept)")
    return rc


def cmd_serve_rollouts(args) -> int:
    """``groupo serve-rollouts [options]``: its options and logic are in groupo/rollout/server.py."""
    from .rollout.server import main as serve_main

    return serve_main(args.argv)


def cmd_base(args) -> int:
    """``groupo base build NAME`` / ``base list`` / ``base path NAME`` (model/pretrain.py)."""
    from .model import pretrain

    if args.action == "list":
        for name in pretrain.names():
            out = pretrain.path(name)
            _console().print(f"{name}: {out} ({'built' if (out / 'info.json').exists() else 'not built'})")
        return 0
    if not args.name:
        from .config import ConfigError

        raise ConfigError(f"groupo base {args.action} needs a name: {', '.join(pretrain.names())}")
    if args.action == "path":
        print(pretrain.path(args.name))
        return 0
    pretrain.build(args.name, say=_console().print)
    return 0


def cmd_claims(args) -> int:
    """``groupo claims FILE``: train every arm x seed, then the verdicts (eval/claims.py)."""
    from .eval import claims

    out = Path(args.out or Path("study") / Path(args.claims).stem)
    only = [x for x in (args.only or "").split(",") if x]
    if not args.report_only:
        if args.jobs > 1:
            rc = _jobs(args, "claims", args.claims, out, _console())
            if rc:
                return rc
        else:
            claims.run_claims(args.claims, out, _console(), only=only, report=False)
    if args.no_report:
        return 0
    setup, cl = claims.load_claims(args.claims)
    summary = claims.summarize([c for c in cl if not only or c.id in only], claims.cells(setup, cl)[1], out,
                               title=f"Claims: {setup.get('name', 'claims')}")
    for c in summary["claims"]:
        _console().print(f"{c['id']}: {c['verdict']} ({c['why']})")
    _console().print(f"table: {out / 'claims.md'}  data: {out / 'summary.json'}")
    return 0


def add_tool_parsers(sub) -> None:
    """The sub-commands above, on cli.py's parser."""
    sp = sub.add_parser("mqr", help="offline MQR question reformulation (MathForge) with a local model")
    sp.add_argument("--model", required=True, help="local Hugging Face model directory that writes the rewrites")
    sp.add_argument("--input", required=True, help="JSONL with one question per line")
    sp.add_argument("--output", required=True, help="JSONL to write (originals + rewrites, with provenance)")
    sp.add_argument("--instructions", default="background,term,subproblem", help="comma-separated subset")
    sp.add_argument("--question-key", default="question")
    sp.add_argument("--answer-key", default="answer", help="gold answer column, copied unchanged to every rewrite")
    sp.add_argument("--max-new-tokens", type=int, default=256)
    sp.add_argument("--temperature", type=float, default=0.0)
    sp.add_argument("--batch-size", type=int, default=8)
    sp.add_argument("--limit", type=int, help="only the first N questions")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--rewrites-only", action="store_true", help="do not copy the original rows")
    sp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    sp.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    sp.set_defaults(func=cmd_mqr)
    for name, what, func in (("study", "grid of recipes x seeds on one setup: summary table, plots, report", cmd_study),
                             ("claims", "test the papers' claims: arms x seeds, intervals, verdicts", cmd_claims)):
        sp = sub.add_parser(name, help=what)
        sp.add_argument(name, help=f"{name} YAML file (see docs/study/)")
        sp.add_argument("--out", help="output directory (default study/<name>)")
        sp.add_argument("--only", help="comma-separated labels (study) or claim ids (claims) to run")
        sp.add_argument("--report-only", action="store_true", help="do not train; summarise the finished cells")
        sp.add_argument("--jobs", type=int, default=1, help="train N cells at once in N processes (the cores, or "
                        "one GPU each when there are N, divided between them); more processes may also run the "
                        "same command on the same --out: each cell is trained by one of them")
        sp.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)   # --jobs' workers
        sp.set_defaults(func=func)
    sp = sub.add_parser("serve-rollouts", add_help=False, prefix_chars="\0",     # options parsed by rollout/server.py
                        help="serve generation to trainers with rollout.name=server (serve-rollouts --help)")
    sp.add_argument("argv", nargs="*")
    sp.set_defaults(func=cmd_serve_rollouts)
    sp = sub.add_parser("base", help="base models for RL built offline (groupo/recipes/base/*.yaml)")
    sp.add_argument("action", choices=("build", "list", "path"))
    sp.add_argument("name", nargs="?", help="base model name (groupo base list)")
    sp.set_defaults(func=cmd_base)
