"""groupo command line: demo | train | eval | compare | list | export, and cli_tools.py's commands.

User mistakes (bad keys, values, files, models) print one line and exit with code 2;
Ctrl-C exits with 130 after saving what can be saved.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .cli_tools import _console, add_tool_parsers

EXIT_USER = 2


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetics only
        pass
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)


def _user_errors() -> tuple:
    from .config import ConfigError
    from .model.load import ModelError
    from .registry import RegistryError
    from .tasks import TaskError
    from .train.checkpoint import CheckpointError
    from .data.mqr import MQRError
    from .plugins import PluginError
    from .rewards.user import RewardError
    from .train.setup import TrainingError

    return (ConfigError, RegistryError, ModelError, TaskError, CheckpointError, TrainingError, RewardError, MQRError,
            PluginError)


def cmd_train(args, recipe: str | None, base: dict | None = None) -> int:
    from .api import prepare, run
    from .train.log import RichProgress

    cfg, run_dir = prepare(recipe, _with_plugins(args), args.out, args.resume, args.force, base=base)
    console = _console()
    progress = RichProgress(console, cfg.warmstart.steps) if cfg.log.progress and sys.stdout.isatty() else None
    if progress is None:
        cfg.log.line_every = cfg.log.line_every or 10
    results = run(cfg, run_dir, resume=args.resume, console=console, progress=progress)
    before, after = results.get("before", {}).get("accuracy"), results.get("after", {}).get("accuracy")
    if before is not None and after is not None and os.environ.get("RANK", "0") == "0":    # rank 0 speaks
        console.print(f"[bold]held-out accuracy: {before:.3f} -> {after:.3f} ({100 * (after - before):+.1f} points)[/]")
    return 0


def _with_plugins(args) -> list[str]:
    """The overrides, with ``--plugin FILE`` options added to the recipe's ``plugins`` list."""
    over = list(args.overrides)
    if getattr(args, "plugin", None):
        import yaml

        over.append("plugins+=" + yaml.safe_dump(list(args.plugin), default_flow_style=True).strip())
    return over


def _train_cmd(args) -> int:
    if args.recipe and "=" in args.recipe and not Path(args.recipe).exists():   # `train --resume k=v`: no recipe
        args.overrides, args.recipe = [args.recipe, *args.overrides], None
    return cmd_train(args, args.recipe)


def cmd_demo(args) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")     # the demo builds its own model: it never needs the network
    return cmd_train(args, "demo")


def cmd_eval(args) -> int:
    from .api import evaluate_target

    res = evaluate_target(args.target, _with_plugins(args), args.n)
    model_dir = res["checkpoint"]
    if args.json:
        print(json.dumps(res, default=str))
        return 0
    from rich.table import Table

    console = _console()
    table = Table(title=f"eval of {model_dir} on {res['task']} (n={res['n']})")
    table.add_column("group")
    table.add_column("n", justify="right")
    table.add_column("accuracy", justify="right")
    for gname, g in res["per_group"].items():
        table.add_row(gname, str(g["n"]), f"{g['accuracy']:.3f}")
    table.add_row("[bold]all", str(res["n"]), f"[bold]{res['accuracy']:.3f}")
    console.print(table)
    for key in ("pass@k", "maj@k"):
        for k, v in (res.get(key) or {}).items():
            console.print(f"{key.replace('k', str(k))}: {v:.3f}")
    return 0


def cmd_list(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    from .config import COMPONENT_SECTIONS, PLAIN_SECTIONS, ConfigError, describe_component, recipe_names
    from .registry import AXES, closest, names

    if args.plugin:
        from .config import _plugins

        _plugins(list(args.plugin))
    console = _console()
    what = args.axis
    if what == "config" or what in PLAIN_SECTIONS:
        from .config.describe import print_config

        return print_config(console, [what] if what in PLAIN_SECTIONS else list(PLAIN_SECTIONS))
    if what is not None and what not in AXES:
        valid = ["config", *PLAIN_SECTIONS, *AXES]
        raise ConfigError(f"unknown axis or section '{what}'{closest(what, valid)}; valid: {', '.join(valid)}")
    table = Table(title="groupo components")
    for col in ("axis", "name", "parameters (defaults)"):
        table.add_column(col)
    for axis in [what] if what else list(AXES):
        for name in names(axis):
            table.add_row(axis, name, escape(describe_component(axis, name)))
    console.print(table)
    if not what:
        sections = ", ".join(f"{s} ({a})" if s != a else s for s, (a, _) in COMPONENT_SECTIONS.items())
        console.print("recipes: " + ", ".join(recipe_names()))
        console.print(f"recipe sections naming a component: {sections}; the other keys: groupo list config")
    return 0


def cmd_compare(args) -> int:
    from rich.table import Table

    from .config import ConfigError

    table = Table(title="runs")
    for col in ("run", "accuracy before", "accuracy after", "change (points)", "worst group after"):
        table.add_column(col)
    cells = []
    for run in args.runs:
        path = Path(run) / "eval.json"
        if not path.exists():
            raise ConfigError(f"'{path}' not found (is '{run}' a finished run directory?)")
        ev = json.loads(path.read_text())
        b, a = ev.get("before", {}).get("accuracy"), ev.get("after", {}).get("accuracy")
        w = ev.get("after", {}).get("worst_group") or {}
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        table.add_row(run, fmt(b), fmt(a), "-" if a is None or b is None else f"{100 * (a - b):+.1f}",
                      f"{w.get('group', '-')}: {fmt(w.get('accuracy'))}" if w else "-")
        cells.append(Path(run))
    _console().print(table)
    from .eval.study_report import group_seeds

    cells = group_seeds(cells)
    if args.out:
        from .eval.study_report import write_study

        write_study(Path(args.out), cells, "Comparison of runs", "runs: " + ", ".join(args.runs))
        _console().print(f"summary, plots and report: {args.out}/summary.md, {args.out}/report.html")
    return 0


def cmd_export(args) -> int:
    """A plain transformers model directory from a run or checkpoint (LoRA adapters merged)."""
    from .config import ConfigError
    from .model.load import export_merged, load_model, load_tokenizer
    from .train import checkpoint as ckpt

    src = Path(args.source)
    if (src / "checkpoints").is_dir():
        last = ckpt.latest(src)
        if last is None:
            raise ConfigError(f"run directory '{src}' has no complete checkpoint")
        src = last[1]
    if not src.exists():
        raise ConfigError(f"'{src}' does not exist (give a run directory or a checkpoint)")
    out = export_merged(load_model(src), load_tokenizer(src), args.out)
    _console().print(f"exported {src} -> {out} (loads with transformers' AutoModelForCausalLM)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="groupo", description="GRPO-family RL post-training with verifiable rewards.")
    sub = p.add_subparsers(dest="command", required=True)

    def run_opts(sp):
        sp.add_argument("overrides", nargs="*", metavar="key.sub=value", help="dotted config overrides")
        sp.add_argument("--out", help="run directory (default runs/<name>)")
        sp.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
        sp.add_argument("--force", action="store_true", help="start over: delete the run directory's checkpoints first")
        sp.add_argument("--plugin", action="append", metavar="FILE",
                        help="a Python file registering your own components (repeatable; same as plugins: [FILE])")

    sp = sub.add_parser("demo", help="offline tiny-model demo: warm start, GRPO, eval before/after, report")
    run_opts(sp)
    sp.set_defaults(func=cmd_demo)
    sp = sub.add_parser("train", help="train with a recipe (YAML file or built-in name)")
    sp.add_argument("recipe", nargs="?", help="recipe file or built-in name (groupo list shows them); "
                                             "not needed to continue a run: groupo train --out RUN --resume")
    run_opts(sp)
    sp.set_defaults(func=_train_cmd)
    sp = sub.add_parser("eval", help="evaluate a run directory or checkpoint on the task's held-out split")
    sp.add_argument("target", help="run directory or checkpoints/step_N")
    sp.add_argument("overrides", nargs="*", metavar="key.sub=value", help="dotted overrides, e.g. task.seed=999")
    sp.add_argument("--n", type=int, help="number of eval items")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--plugin", action="append", metavar="FILE", help="a Python file registering components")
    sp.set_defaults(func=cmd_eval)
    sp = sub.add_parser("compare", help="table of finished runs (accuracy before/after, worst group)")
    sp.add_argument("runs", nargs="+")
    sp.add_argument("--out", help="also write summary.md/json, plots and report.html here (runs whose "
                                  "configurations differ only in the seed are the seeds of one method)")
    sp.set_defaults(func=cmd_compare)
    sp = sub.add_parser("export", help="save a run's model as a plain transformers directory (LoRA merged)")
    sp.add_argument("source", help="run directory or checkpoints/step_N")
    sp.add_argument("--out", required=True, help="output directory")
    sp.set_defaults(func=cmd_export)
    add_tool_parsers(sub)
    sp = sub.add_parser("list", help="registered components with their parameters and defaults")
    sp.add_argument("axis", nargs="?", help="one axis (task, reward, advantage, ...), or config (every key with "
                                             "its type, default and meaning), or one section (model, train, ...)")
    sp.add_argument("--plugin", action="append", metavar="FILE", help="also list the components of this file")
    sp.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    from .runtime import prepare_process

    prepare_process()           # OpenMP's wait policy, before anything loads torch
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (``--out DIR k=v``), which argparse does
    # not join to the positional list by itself
    stray = [x for x in extra if x.startswith("-") or "=" not in x or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    _quiet_libraries()
    errors = _user_errors()
    try:
        return args.func(args)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:        # a collective that another process never joined (torchrun)
        from .train.dist import stalled

        line = stalled(e)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
