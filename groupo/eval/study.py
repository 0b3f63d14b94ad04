"""``groupo study STUDY.yaml``: a grid of recipes x seeds (x group sizes) on one setup.

A study file::

    name: zoo                      # output goes to study/<name> unless --out is given
    base: demo                     # recipe giving the shared setup: model, task, template,
                                   # rewards, generation, train, eval, warmstart, ...
    recipes: [grpo, dr_grpo, {recipe: dapo, label: dapo, overrides: [filter.max_rounds=1]}]
    seeds: [0, 1, 2]
    group_sizes: [8]               # optional grid over generation.group_size
    overrides: [train.steps=120]   # applied to every cell (after the recipe's own settings)
    shared_warmstart: true         # one warm start per seed, reused by every recipe

What each cell takes from where: everything from ``base``, then what the recipe sets that
differs from ``grpo`` (the recipe's algorithm: advantage, objective, filter, shaping,
sampler, replay, ..., and any template, rewards or ``train.num_iterations`` it sets), then
the study ``overrides``, then the cell's own ``overrides``. So every method sees the same
task, model, budget and evaluation, and keeps only what makes it that method. A cell
whose ``eval.json`` holds an "after" result is finished and never rerun; an interrupted
cell resumes from its last checkpoint. Summary, plots and report: ``groupo.eval.study_report``.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import ConfigError, _merge, apply_overrides, load_recipe, validate

STUDY_KEYS = ("name", "base", "recipes", "seeds", "group_sizes", "overrides", "shared_warmstart", "description")


@dataclass
class Cell:
    label: str
    recipe: str
    seed: int
    group_size: int | None
    overrides: list = field(default_factory=list)

    @property
    def key(self) -> str:
        g = f"_G{self.group_size}" if self.group_size else ""
        return f"{self.label}{g}/seed_{self.seed}"


@dataclass
class Study:
    name: str
    base: str
    cells: list
    overrides: list
    shared_warmstart: bool
    description: str = ""
    raw: dict = field(default_factory=dict)


def _list(data: dict, key: str, typ, default) -> list:
    v = data.get(key, default)
    if not isinstance(v, list) or not v:
        raise ConfigError(f"study '{key}' must be a non-empty list, got {v!r}")
    for x in v:
        if not isinstance(x, typ):
            raise ConfigError(f"study '{key}': {x!r} is not a {getattr(typ, '__name__', typ)}")
    return v


def load_study(path: str | Path) -> Study:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study file '{path}' not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"{path}:{mark.line + 1 if mark else '?'}: invalid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a study must be a YAML mapping")
    for k in data:
        if k not in STUDY_KEYS:
            from ..registry import closest

            raise ConfigError(f"{path}: unknown study key '{k}'{closest(k, STUDY_KEYS)}; valid: {', '.join(STUDY_KEYS)}")
    seeds = _list(data, "seeds", int, [0])
    sizes = data.get("group_sizes") or [None]
    if not isinstance(sizes, list) or any(s is not None and (not isinstance(s, int) or s < 2) for s in sizes):
        raise ConfigError(f"study 'group_sizes' must be a list of integers >= 2, got {sizes!r}")
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list):
        raise ConfigError("study 'overrides' must be a list of key.sub=value strings")
    cells, labels = [], set()
    for i, spec in enumerate(_list(data, "recipes", (str, dict), None)):
        if isinstance(spec, str):
            spec = {"recipe": spec}
        if "recipe" not in spec or set(spec) - {"recipe", "label", "overrides"}:
            raise ConfigError(f"study recipes[{i}] must be a name or {{recipe, label, overrides}}, got {spec!r}")
        label = str(spec.get("label") or Path(str(spec["recipe"])).stem)
        if label in labels:
            raise ConfigError(f"study recipes[{i}]: label '{label}' used twice (give each a distinct label)")
        labels.add(label)
        for g in sizes:
            for s in seeds:
                cells.append(Cell(label, str(spec["recipe"]), int(s), g, list(spec.get("overrides") or [])))
    study = Study(str(data.get("name") or path.stem), str(data.get("base") or "demo"), cells, list(overrides),
                  bool(data.get("shared_warmstart", True)), str(data.get("description") or ""), data)
    for c in {(c.label, c.group_size): c for c in cells}.values():   # validate every config up front
        cell_config(study, c, init_dir=None)
    return study


def _diff(method: dict, ref: dict) -> dict:
    """The parts of ``method`` that differ from ``ref`` (section by section, key by key for
    plain sections; component sections and lists whole)."""
    out = {}
    for k, v in method.items():
        if k in ("name", "description", "extends"):
            continue
        r = ref.get(k)
        if v == r:
            continue
        if isinstance(v, dict) and isinstance(r, dict) and "name" not in v:
            sub = {kk: vv for kk, vv in v.items() if r.get(kk) != vv}
            if sub:
                out[k] = sub
        else:
            out[k] = copy.deepcopy(v)
    return out


def cell_config(study: Study, cell: Cell, init_dir: Path | None):
    base = load_recipe(study.base)
    own = _diff(load_recipe(cell.recipe), load_recipe("grpo"))
    data = _merge(base, own)
    data["name"], data["seed"] = cell.label, cell.seed
    over = list(study.overrides) + list(cell.overrides)
    if cell.group_size:
        over.append(f"generation.group_size={cell.group_size}")
    if init_dir is not None:
        over += [f"model.path={init_dir}", "model.tiny=false", "warmstart.steps=0"]
    try:
        return validate(apply_overrides(data, over))
    except ConfigError as e:
        raise ConfigError(f"study cell {cell.key}: {e}") from None


def _done(run_dir: Path) -> bool:
    try:
        return "after" in json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError):
        return False


def prepare_init(study: Study, seed: int, out: Path, say) -> Path | None:
    """One warm-started model per seed (shared by all cells), or None when the base has no
    warm start. Written atomically: a directory is complete once ``done.json`` exists."""
    from ..config import load_config

    cfg = load_config(study.base, list(study.overrides) + [f"seed={seed}"])
    if cfg.warmstart.steps <= 0 or not study.shared_warmstart:
        return None
    init = out / "init" / f"seed_{seed}"
    if (init / "done.json").exists():
        return init
    from .workers import claim

    with claim(init, wait=True):              # another process may be building it: wait, then reuse
        if (init / "done.json").exists():
            return init
        return _build_init(cfg, seed, init, say)


def _build_init(cfg, seed: int, init: Path, say) -> Path:
    import shutil

    import torch

    from ..model.load import eos_ids, load_model, load_tokenizer, pick_device
    from ..runtime import set_threads
    from ..train.warmstart import warm_start

    set_threads(cfg.model.threads)
    shutil.rmtree(init, ignore_errors=True)
    src = Path(cfg.model.path) if cfg.model.path else init / "base"
    if cfg.model.tiny and not (src / "config.json").exists():
        from ..model.tiny import build_tiny

        build_tiny(src, seed=seed)
    tok = load_tokenizer(src)
    model = load_model(src, cfg.model.dtype, pick_device(cfg.model.device))
    torch.manual_seed(seed)
    say(f"study: warm start for seed {seed}: {cfg.warmstart.steps} steps")
    info = warm_start(model, tok, cfg.task, cfg.template, cfg.warmstart, eos_ids(tok, model),
                      cfg.generation.max_new_tokens, seed)
    tmp = init.with_name(init.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "done.json").write_text(json.dumps(info))
    if init.exists():
        shutil.rmtree(init)
    tmp.rename(init)
    return init


def run_study(study: Study, out: Path, console=None, only: list | None = None) -> list:
    """Run every unfinished cell not held by another process; returns [(cell, run_dir)] for all cells."""
    from .workers import claim, holder

    say = console.print if console is not None else print
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.yaml").write_text(yaml.safe_dump(study.raw, sort_keys=False))
    inits: dict[int, Path | None] = {}
    done = []
    for i, cell in enumerate(study.cells, 1):
        run_dir = out / "runs" / cell.key
        done.append((cell, run_dir))
        if only and cell.label not in only:
            continue
        with claim(run_dir) as mine:         # several processes may share the directory (workers.py)
            if not mine:
                say(f"study: {i}/{len(study.cells)} {cell.key}: {holder(run_dir)} is training it, skipped")
                continue
            _run_cell(study, cell, i, run_dir, out, inits, say, console)
    return done


def _run_cell(study: Study, cell: Cell, i: int, run_dir: Path, out: Path, inits: dict, say, console) -> None:
    """Train one cell (this process holds its lock) unless it finished earlier; resumes a started one."""
    from ..train.loop import train

    if _done(run_dir):
        say(f"study: {i}/{len(study.cells)} {cell.key}: finished earlier, kept")
        return
    if cell.seed not in inits:
        inits[cell.seed] = prepare_init(study, cell.seed, out, say)
    cfg = cell_config(study, cell, inits[cell.seed])
    cfg.log.progress = False
    cfg.log.line_every = cfg.log.line_every or 50
    resume = (run_dir / "checkpoints").exists()
    say(f"study: {i}/{len(study.cells)} {cell.key}{' (resuming)' if resume else ''}")
    res = train(cfg, run_dir, resume=resume, console=console)
    b, a = res.get("before", {}).get("accuracy"), res.get("after", {}).get("accuracy")
    if a is not None:
        say(f"study: {cell.key}: accuracy {b if b is None else round(b, 3)} -> {a:.3f}")
