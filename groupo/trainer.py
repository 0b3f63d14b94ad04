"""``groupo.Trainer``: training from Python, on the CLI's code path (groupo/api.py), shaped so that
a TRL ``GRPOTrainer`` script ports by renaming the class.

    trainer = groupo.Trainer(recipe="grpo", model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=dataset,
                             reward_funcs=[accuracy], out="runs/mine", generation__group_size=8)
    result = trainer.train()          # result.run_dir, result.metrics (last step), result.eval
    trainer.evaluate(n=200)

What each argument becomes (everything ends up in the run's config.yaml, so a run started here
can be inspected, evaluated and compared like any other):
* ``model``: a local directory or Hub id (``model.path``); a transformers model object is saved to
  ``RUN/model_input`` first (with ``tokenizer``, or its own tokenizer from ``name_or_path``).
* ``train_dataset`` / ``eval_dataset``: a path or Hub id (task ``dataset``), or in-memory data (a
  ``datasets.Dataset``, a list of dicts), written to ``RUN/data/*.jsonl``.
* ``reward_funcs``: one or a list of reward names (``"correct"``), reward specs (dicts), or Python
  functions with TRL's signature (rewards/user.py); ``reward_weights`` as TRL's.
* ``args``: a dict, or an object with TRL ``GRPOConfig`` attribute names (``TRL_KEYS``).
* ``overrides`` (a dict of dotted keys) and keyword arguments with ``__`` for the dots
  (``train__lr=1e-6``): any configuration key, as on the command line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError

# TRL GRPOConfig attribute -> groupo key (with a value map where the vocabularies differ)
LOSS_TYPES = {"grpo": "seq_mean_token_mean", "bnpo": "token_mean", "dapo": "token_mean", "dr_grpo": "seq_sum_const"}
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant", "constant_with_warmup": "constant"}
TRL_KEYS = {
    "learning_rate": "train.lr", "max_steps": "train.steps", "num_iterations": "train.num_iterations",
    "weight_decay": "train.weight_decay", "adam_epsilon": "train.adam_eps", "max_grad_norm": "train.grad_clip",
    "warmup_steps": "train.warmup_steps", "lr_scheduler_type": "train.schedule", "num_generations": "generation.group_size",
    "max_completion_length": "generation.max_new_tokens", "temperature": "generation.temperature",
    "top_p": "generation.top_p", "top_k": "generation.top_k", "epsilon": "objective.eps_low",
    "epsilon_high": "objective.eps_high", "loss_type": "aggregation.name", "scale_rewards": "advantage.scale",
    "seed": "seed", "output_dir": "out", "logging_steps": "log.line_every", "save_steps": "checkpoint.every",
    "gradient_checkpointing": "model.gradient_checkpointing", "beta": "kl",
}


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict = field(default_factory=dict)   # the last step's metrics (metrics.jsonl)
    eval: dict = field(default_factory=dict)      # eval.json: held-out results before / after


class Trainer:
    def __init__(self, recipe: str = "grpo", model=None, train_dataset=None, eval_dataset=None, reward_funcs=None,
                 tokenizer=None, out: str | None = None, args=None, reward_weights=None, overrides: dict | None = None,
                 resume: bool = False, force: bool = False, plugins=None, **kwargs):
        from .runtime import prepare_process

        prepare_process()        # OpenMP's wait policy, if torch is not loaded yet
        self.recipe, self.model, self.tokenizer = recipe, model, tokenizer
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.reward_funcs = [] if reward_funcs is None else (
            list(reward_funcs) if isinstance(reward_funcs, (list, tuple)) else [reward_funcs])
        self.reward_weights, self.resume, self.force = reward_weights, resume, force
        self.settings = dict(trl_settings(args))
        self.settings.update(overrides or {})
        self.settings.update({k.replace("__", "."): v for k, v in kwargs.items()})
        if plugins:
            self.settings["plugins"] = [str(p) for p in ([plugins] if isinstance(plugins, (str, Path)) else plugins)]
        self.out = out or self.settings.pop("out", None)
        self.run_dir: Path | None = None

    # -- what the arguments become ---------------------------------------------------------
    def _overrides(self, run_dir: Path) -> list:
        over: list = []
        if self.model is not None:
            over.append(("model.path", self._model_path(run_dir)))
            over.append(("model.tiny", False))
        if self.tokenizer is not None and isinstance(self.tokenizer, (str, Path)):
            over.append(("model.tokenizer", str(self.tokenizer)))
        if self.train_dataset is not None:
            over += [("task.name", "dataset"), ("task.path", data_path(self.train_dataset, run_dir, "train"))]
        if self.eval_dataset is not None:
            over.append(("task.eval_path", data_path(self.eval_dataset, run_dir, "eval")))
        if self.reward_funcs:
            over.append(("rewards", reward_specs(self.reward_funcs, self.reward_weights)))
        return over + list(self.settings.items())

    def _model_path(self, run_dir: Path) -> str:
        if isinstance(self.model, (str, Path)):
            return str(self.model)
        if not hasattr(self.model, "save_pretrained"):
            raise ConfigError(f"model must be a path, a Hub id or a transformers model, got {type(self.model).__name__}")
        tok = self.tokenizer
        if tok is None or isinstance(tok, (str, Path)):
            from .model.load import load_tokenizer

            tok = load_tokenizer(tok or self.model.name_or_path)
        dest = (run_dir / "model_input").resolve()
        if not (dest / "config.json").exists() or self.force:
            self.model.save_pretrained(dest)
            tok.save_pretrained(dest)
        return str(dest)

    def _prepare(self):
        from .api import prepare
        from .config.recipes import load_recipe

        name = load_recipe(self.recipe).get("name", "run") if self.recipe else "run"
        run_dir = Path(self.out or Path("runs") / str(self.settings.get("name", name)))
        if self.resume and self.recipe is None:
            return prepare(None, self._overrides(run_dir), str(run_dir), resume=True)
        return prepare(self.recipe, self._overrides(run_dir), str(run_dir), self.resume, self.force)

    # -- the API ---------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Train (as ``groupo train``); returns the run directory, the last step's metrics and
        eval.json's content."""
        from rich.console import Console

        from .api import run

        cfg, self.run_dir = self._prepare()
        results = run(cfg, self.run_dir, resume=self.resume, console=Console(highlight=False, soft_wrap=True))
        rows = (self.run_dir / "metrics.jsonl").read_text().splitlines() if (self.run_dir / "metrics.jsonl").exists() else []
        return TrainResult(self.run_dir, json.loads(rows[-1]) if rows else {}, results)

    def evaluate(self, n: int | None = None, **overrides) -> dict:
        """The run's last checkpoint on the task's eval set (as ``groupo eval RUN``)."""
        from .api import evaluate_target

        if self.run_dir is None:
            raise ConfigError("Trainer.evaluate: train first (or give the run directory to groupo eval)")
        return evaluate_target(self.run_dir, [(k.replace("__", "."), v) for k, v in overrides.items()], n)


def trl_settings(args) -> dict:
    """TRL ``GRPOConfig`` fields (an object or a dict) -> groupo keys (``TRL_KEYS``)."""
    if args is None:
        return {}
    src = dict(args) if isinstance(args, dict) else {k: getattr(args, k) for k in TRL_KEYS if hasattr(args, k)}
    unknown = [k for k in src if k not in TRL_KEYS and "." not in k]
    if isinstance(args, dict) and unknown:
        raise ConfigError(f"args: unknown TRL setting '{unknown[0]}'; mapped: {', '.join(sorted(TRL_KEYS))} "
                          f"(other groupo keys: overrides={{'section.key': value}})")
    out = {}
    for k, v in src.items():
        key = TRL_KEYS.get(k, k)
        if v is None:
            continue
        if k == "beta":
            out["kl.name"], out["kl.coef"] = ("k3", float(v)) if v else ("none", 0.0)
            continue
        if k == "loss_type":
            v = LOSS_TYPES.get(v, v)
        elif k == "lr_scheduler_type":
            v = SCHEDULES.get(str(getattr(v, "value", v)), v)
        elif k == "scale_rewards" and isinstance(v, bool):
            v = "group" if v else "none"
        elif k == "epsilon":
            out.setdefault("objective.eps_high", v)
        elif k == "max_grad_norm" and v is None:
            v = 0.0
        out[key] = v
    return out


def data_path(data, run_dir: Path, split: str) -> str:
    """A path or Hub id as given; in-memory rows (a datasets.Dataset, a list of dicts) written to
    ``RUN/data/<split>.jsonl`` (their columns as they are)."""
    if isinstance(data, (str, Path)):
        return str(data)
    rows = data.to_list() if hasattr(data, "to_list") else list(data)
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"{split}_dataset: expected a path, a Hub id, a datasets.Dataset or a list of dicts")
    dest = (run_dir / "data" / f"{split}.jsonl").resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    try:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    except TypeError as e:
        raise ConfigError(f"{split}_dataset: a row is not JSON-serialisable ({e})") from None
    tmp.replace(dest)
    return str(dest)


def reward_specs(funcs, weights=None) -> list:
    """Reward names, specs and Python functions -> the ``rewards`` list (functions registered by
    name for this process, rewards/user.py)."""
    from .rewards.user import LIVE

    if weights is not None and len(weights) != len(funcs):
        raise ConfigError(f"reward_weights has {len(weights)} entries for {len(funcs)} reward functions")
    specs = []
    for i, f in enumerate(funcs):
        if isinstance(f, str):
            spec = {"name": f}
        elif isinstance(f, dict):
            spec = dict(f)
        elif callable(f):
            ref = getattr(f, "__name__", type(f).__name__)
            while ref in LIVE and LIVE[ref] is not f:
                ref += "_"
            LIVE[ref] = f
            spec = {"name": "callable", "ref": ref, "label": ref}
        else:
            raise ConfigError(f"reward_funcs[{i}]: expected a reward name, a spec or a function, got {f!r}")
        if weights is not None:
            spec["weight"] = float(weights[i])
        specs.append(spec)
    return specs
