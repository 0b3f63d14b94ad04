"""Running a training or an evaluation: the one code path of ``groupo train`` / ``groupo eval`` and
of the Python ``groupo.Trainer`` (groupo/trainer.py).

* ``prepare``: the validated configuration and the run directory. A new run comes from a recipe
  (or a base mapping) and overrides; ``resume`` continues the run's own ``config.yaml``, and
  settings given on resume may only change the keys of ``config.resume.SAFE`` (one-line error
  otherwise; accepted changes go to ``history.jsonl``).
* ``run``: train, then the plots and the HTML report.
* ``evaluate_target``: a run directory's last checkpoint (or one checkpoint) on the task's eval set.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .config import ConfigError, load_config
from .config import resume as resume_cfg


def prepare(recipe: str | None, overrides: list, out: str | None = None, resume: bool = False,
            force: bool = False, base: dict | None = None):
    """(Config, run directory) for ``groupo train``; see the module docstring."""
    if resume and recipe is None and base is None:
        if not out:
            raise ConfigError("--resume needs the run directory: groupo train --out RUN --resume")
        run_dir = Path(out)
        cfg = load_config(None, overrides, base=resume_cfg.saved_config(run_dir))
    else:
        if recipe is None and base is None:
            raise ConfigError("give a recipe (a built-in name or a YAML file; `groupo list` shows them), "
                              "or continue a run with --out RUN --resume")
        cfg = load_config(recipe, overrides, base=base)
        run_dir = Path(out or cfg.out or Path("runs") / cfg.name)
    if cfg.model.tiny and not cfg.model.path:          # the offline tiny model lives in the run directory
        cfg.model.path = str((run_dir / "model").resolve())
        cfg.raw["model"]["path"] = cfg.model.path
    changed = {}
    if resume and (run_dir / "config.yaml").exists():
        saved = load_config(None, [], base=resume_cfg.saved_config(run_dir))   # normalised like the new one
        changed = resume_cfg.check(saved.raw, cfg.raw, run_dir)
    if (run_dir / "checkpoints").exists() and not resume and not force:
        raise ConfigError(f"run directory {run_dir} already has checkpoints; add --resume to continue it, "
                          f"--force to start over, or --out for a new one")
    if force and not resume:
        stale = ["checkpoints", "init", "tb", "plots", "history.jsonl", "completions.jsonl"]
        if cfg.model.tiny and Path(cfg.model.path) == (run_dir / "model").resolve():
            stale.append("model")      # the tiny model is rebuilt from the seed
        for name in stale:
            p = run_dir / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    resume_cfg.record(run_dir, "resume" if resume else "start", changed=changed)
    return cfg, run_dir


def run(cfg, run_dir: Path, resume: bool = False, console=None, progress=None) -> dict:
    """Train (``train.loop.train``), then write the plots and the report; eval.json's content."""
    from .train.loop import train

    results = train(cfg, run_dir, resume=resume, console=console, progress=progress)
    write_reports(run_dir, console)
    return results


def write_reports(run_dir: Path, console=None) -> None:
    from .eval.report import write_report
    from .train import dist

    if not dist.is_main():
        return
    say = console.print if console is not None else print
    try:
        path = write_report(run_dir)
        say(f"report: {path}  plots: {run_dir / 'plots'}")
    except Exception as e:  # noqa: BLE001 - a plotting failure must not hide a finished run
        say(f"could not write the report ({e})")


def evaluate_target(target, overrides: list, n: int | None = None) -> dict:
    """Evaluate a run directory (its last checkpoint) or a checkpoint directory with the run's
    configuration (``overrides`` on top); returns accuracy, n, per-group results, pass@k, ..."""
    import yaml

    from .eval.evaluate import evaluate
    from .model.load import eos_ids, load_model, load_tokenizer, pick_device
    from .runtime import set_threads
    from .train import checkpoint as ckpt

    target = Path(target)
    if not target.exists():
        raise ConfigError(f"'{target}' does not exist (give a run directory or a checkpoint)")
    run_dir, model_dir = target, target
    if (target / "checkpoints").is_dir() or (target / "config.yaml").exists() and not (target / "state.pt").exists():
        last = ckpt.latest(target)
        if last is None:
            raise ConfigError(f"run directory '{target}' has no complete checkpoint")
        model_dir = last[1]
    elif (target / "state.pt").exists():
        run_dir = target.parent.parent
    cfg_file = run_dir / "config.yaml"
    base = yaml.safe_load(cfg_file.read_text()) if cfg_file.exists() else {"model": {"path": str(model_dir)}}
    cfg = load_config(None, list(overrides) + ([f"eval.n={n}"] if n is not None else []), base=base)
    set_threads(cfg.model.threads)
    items = cfg.task.eval_items()[: cfg.eval.n or None]
    if not items:
        raise ConfigError(f"the task's eval split is empty ({cfg.task.describe()}); nothing to evaluate")
    tok = load_tokenizer(model_dir)
    device = pick_device(cfg.model.device)
    if device.type == "cpu" and cfg.model.dtype == "float32":
        from .model import gemm

        gemm.select(cfg.model.cpu_gemm)      # as training does (model/gemm.py)
    model = load_model(model_dir, cfg.model.dtype, device)
    res = evaluate(model, tok, items, cfg.template, eos_ids(tok, model), cfg.generation.max_new_tokens,
                   cfg.eval.samples, cfg.eval.temperature, cfg.eval.ks, cfg.eval.batch_size, seed=cfg.seed + 1)
    return {"accuracy": res["accuracy"], "n": res["n"], **{k: v for k, v in res.items() if k not in ("accuracy", "n")},
            "checkpoint": str(model_dir), "task": cfg.raw["task"]["name"]}
