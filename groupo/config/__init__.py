"""Run configuration: recipes + overrides -> a validated ``Config``, before any model loads.

Recipes and overrides are read by ``config.recipes``. Component sections
(``advantage: {name: grpo, eps: 1e-4}``) are validated against the registry; plain sections
against the dataclasses in ``config.sections``; ``plugins`` (Python files registering a user's own
components) are imported first. Every error is one line naming the key, file or value
(``ConfigError``).
"""
from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..registry import RegistryError, build, closest, coerce, get, params_of, type_name
from .recipes import (COMPONENT_SECTIONS, RECIPES_DIR, ConfigError, _merge, apply_overrides, load_recipe,
                      parse_override, recipe_names)
from .sections import CheckpointCfg, EvalCfg, GenerationCfg, LogCfg, ModelCfg, TrainCfg, WarmstartCfg

__all__ = ["Config", "ConfigError", "load_config", "validate", "load_recipe", "apply_overrides", "parse_override",
           "recipe_names", "describe_component", "RECIPES_DIR", "COMPONENT_SECTIONS", "PLAIN_SECTIONS", "_merge"]

PLAIN_SECTIONS = {
    "model": ModelCfg, "generation": GenerationCfg, "train": TrainCfg, "eval": EvalCfg,
    "checkpoint": CheckpointCfg, "log": LogCfg, "warmstart": WarmstartCfg,
}
SCALARS = {"name": (str, "run"), "seed": (int, 0), "out": (str, ""), "description": (str, "")}
TOP_KEYS = list(SCALARS) + list(PLAIN_SECTIONS) + list(COMPONENT_SECTIONS) + ["rewards", "plugins", "extends"]
# keys that moved to a component section (old recipes and run directories still load):
# old key -> (section, key there, value map)
MOVED = {
    ("model", "prefix_sharing"): ("forward", "name", {"auto": "auto", "on": "shared", True: "shared", "off": "naive",
                                                      False: "naive", "dense": "dense"}),
    ("model", "logprob_chunk"): ("forward", "logprob_chunk", None),
    ("generation", "backend"): ("rollout", "name", {"hf": "lean", "reference": "reference", "vllm": "vllm"}),
    ("generation", "tis_cap"): ("rollout", "tis_cap", None),
}


# ------------------------------------------------------------------ validation
@dataclass
class Config:
    """The validated run configuration. ``raw`` is the resolved mapping (saved as config.yaml);
    component sections are also kept as built component instances in ``components``."""

    raw: dict
    name: str = "run"
    seed: int = 0
    out: str = ""
    description: str = ""
    model: ModelCfg = field(default_factory=ModelCfg)
    generation: GenerationCfg = field(default_factory=GenerationCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    checkpoint: CheckpointCfg = field(default_factory=CheckpointCfg)
    log: LogCfg = field(default_factory=LogCfg)
    warmstart: WarmstartCfg = field(default_factory=WarmstartCfg)
    rewards: list = field(default_factory=list)
    components: dict = field(default_factory=dict)

    def __getattr__(self, item):  # cfg.task, cfg.advantage, ... -> built components
        comps = self.__dict__.get("components", {})
        if item in comps:
            return comps[item]
        raise AttributeError(item)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.raw, sort_keys=False)


def _plain(section: str, cls, value) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"'{section}' must be a mapping, got {value!r}")
    spec = params_of(cls)
    kwargs = {}
    for key, v in value.items():
        if key not in spec:
            raise ConfigError(f"unknown key '{section}.{key}'{_did_you_mean(section, key, spec)}")
        try:
            kwargs[key] = coerce(v, spec[key][0], f"{section}.{key}")
        except RegistryError as e:
            raise ConfigError(str(e)) from None
    return cls(**kwargs)


def _did_you_mean(section: str, key: str, valid) -> str:
    hint = closest(key, valid)
    return hint.replace("'", f"'{section}.", 1) if hint else f"; valid: {', '.join(valid)}"


def _component(section: str, value) -> tuple[dict, Any]:
    axis, default = COMPONENT_SECTIONS[section]
    if value is None:
        value = {}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"'{section}' must be a mapping with 'name', got {value!r}")
    value = dict(value)
    name = value.pop("name", default)
    try:
        comp = build(axis, str(name), value, where=section)
    except RegistryError as e:
        raise ConfigError(str(e)) from None
    resolved = {"name": name, **{k: _plain_value(getattr(comp, k)) for k in params_of(type(comp))}}
    return resolved, comp


def _plain_value(v):
    if isinstance(v, tuple):
        return [_plain_value(x) for x in v]
    return v


def validate(data: dict) -> Config:
    """Check every key and value; return a Config with components built."""
    data = _absolute_paths(_move_old_keys(data))
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"unknown key '{key}'{closest(key, TOP_KEYS)}")
    cfg = Config(raw={})
    resolved: dict = {"plugins": _plugins(data.get("plugins"))}      # before components: they may name its own
    for key, (typ, default) in SCALARS.items():
        v = data.get(key, default)
        try:
            v = coerce(v, typ, key)
        except RegistryError as e:
            raise ConfigError(str(e)) from None
        setattr(cfg, key, v)
        resolved[key] = v
    for section, cls in PLAIN_SECTIONS.items():
        obj = _plain(section, cls, data.get(section))
        setattr(cfg, section, obj)
        resolved[section] = dataclasses.asdict(obj)
    for section in COMPONENT_SECTIONS:
        resolved[section], cfg.components[section] = _component(section, data.get(section))
    cfg.rewards, resolved["rewards"] = _rewards(data.get("rewards"))
    _check_values(cfg)
    cfg.raw = resolved
    return cfg


def _check_target(cfg: Config) -> None:
    """warmstart.target may only name the task's columns (and {answer})."""
    import random

    from ..tasks.base import target_text

    item = cfg.components["task"].sample_train(random.Random(0))
    try:
        target_text(cfg.warmstart.target, item)
    except (KeyError, IndexError, ValueError) as e:
        cols = ", ".join(["answer", *sorted(k for k, v in item.meta.items() if isinstance(v, (str, int, float)))])
        raise ConfigError(f"warmstart.target {cfg.warmstart.target!r}: {e!s} is not a field of the task's items "
                          f"(fields: {cols})") from None


def _absolute_paths(data: dict) -> dict:
    """Relative paths that exist (model.path / tokenizer, task.path / task.*_path, rewards[i].path /
    tokenizer) made
    absolute, so a run directory's config.yaml works from any directory (Hub ids stay as given)."""
    data = copy.deepcopy(data)

    def fix(section: dict, key: str) -> None:
        v = section.get(key)
        if isinstance(v, str) and v and not os.path.isabs(v) and os.path.exists(v):
            section[key] = os.path.abspath(v)

    if isinstance(data.get("model"), dict):
        fix(data["model"], "path")
    if isinstance(data.get("task"), dict):
        for key in [k for k in data["task"] if k == "path" or k.endswith("_path")]:
            fix(data["task"], key)
    for spec in data.get("rewards") or []:
        if isinstance(spec, dict):
            fix(spec, "path")
            fix(spec, "tokenizer")
    if isinstance(data.get("model"), dict):
        fix(data["model"], "tokenizer")
    return data


def _plugins(value) -> list[str]:
    """Import the plugin files (absolute paths are what config.yaml keeps)."""
    from ..plugins import PluginError, load_plugins

    if value is None:
        return []
    try:
        return load_plugins(value)
    except (PluginError, RegistryError) as e:
        raise ConfigError(str(e)) from None


def _move_old_keys(data: dict) -> dict:
    """Keys of earlier releases that moved to a component section (``MOVED``) -> their new place."""
    if not any(isinstance(data.get(sec), dict) and key in data[sec] for sec, key in MOVED):
        return data
    data = copy.deepcopy(data)
    for (sec, key), (new_sec, new_key, values) in MOVED.items():
        if not isinstance(data.get(sec), dict) or key not in data[sec]:
            continue
        value = data[sec].pop(key)
        ro = data.get("rollout")
        if new_key == "tis_cap" and (ro if isinstance(ro, str) else (ro or {}).get("name")) != "vllm":
            continue                # only the vllm backend corrects its samples
        if values is not None:
            if value not in values:
                raise ConfigError(f"{sec}.{key}: value {value!r} is not one of "
                                  f"{[v for v in values if isinstance(v, str)]} (now {new_sec}.{new_key})")
            value = values[value]
        target = data.get(new_sec)
        target = {"name": target} if isinstance(target, str) else dict(target or {})
        if new_key == "name" and target.get("name", value) != value:
            target = {}
        target[new_key] = value
        data[new_sec] = target
    return data


def _rewards(value):
    if value is None:
        value = [{"name": "correct", "weight": 1.0}]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"'rewards' must be a non-empty list of {{name: ..., weight: ...}}, got {value!r}")
    from ..rewards.combine import RewardSet

    specs = []
    for i, spec in enumerate(value):
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"rewards[{i}] must be a mapping with 'name', got {spec!r}")
        specs.append(dict(spec))
    try:
        rs = RewardSet(specs)
    except (RegistryError, ValueError, TypeError) as e:
        raise ConfigError(f"rewards: {e}") from None
    return rs, specs


def _check_values(cfg: Config) -> None:
    def need(cond, msg):
        if not cond:
            raise ConfigError(msg)

    g, t, e, m = cfg.generation, cfg.train, cfg.eval, cfg.model
    need(g.group_size >= 1, f"generation.group_size must be >= 1, got {g.group_size}")
    need(g.prompts_per_step >= 1, f"generation.prompts_per_step must be >= 1, got {g.prompts_per_step}")
    need(g.max_new_tokens >= 1, f"generation.max_new_tokens must be >= 1, got {g.max_new_tokens}")
    need(g.temperature >= 0, f"generation.temperature must be >= 0, got {g.temperature}")
    need(0 < g.top_p <= 1, f"generation.top_p must be in (0, 1], got {g.top_p}")
    need(g.top_k >= 0, f"generation.top_k must be >= 0, got {g.top_k}")
    need(t.steps >= 0, f"train.steps must be >= 0, got {t.steps}")
    need(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
    need(t.micro_batches >= 1, f"train.micro_batches must be >= 1, got {t.micro_batches}")
    need(t.num_iterations >= 1, f"train.num_iterations must be >= 1, got {t.num_iterations}")
    need(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), f"train.betas must be two numbers in [0, 1), got {t.betas}")
    need(t.adam_eps > 0, f"train.adam_eps must be > 0, got {t.adam_eps}")
    need(0 < t.top_entropy_quantile <= 1, f"train.top_entropy_quantile must be in (0, 1], got {t.top_entropy_quantile}")
    need(t.top_entropy_quantile == 1 or not cfg.objective.full_batch,
         f"train.top_entropy_quantile < 1 selects tokens of a per-token loss; objective "
         f"'{cfg.objective.component_name}' is a full-batch loss")
    need(e.samples >= 1, f"eval.samples must be >= 1, got {e.samples}")
    need(all(1 <= k <= e.samples for k in e.ks), f"eval.ks must be between 1 and eval.samples={e.samples}, got {e.ks}")
    need(m.lora_r >= 0 and m.lora_alpha > 0 and 0 <= m.lora_dropout < 1,
         f"model.lora_r must be >= 0, lora_alpha > 0, lora_dropout in [0, 1); got {m.lora_r}, {m.lora_alpha}, {m.lora_dropout}")
    need(t.pg_timeout > 0, f"train.pg_timeout must be > 0 seconds, got {t.pg_timeout}")
    if t.parallel == "fsdp":
        fwd = cfg.components["forward"]
        need(fwd.component_name in ("auto", "naive") and fwd.logprob_chunk == 0,
             "train.parallel=fsdp trains through the model's own forward: forward.name must be auto or naive and "
             "forward.logprob_chunk 0 (Prefix Grouper and chunked log-probs call the decoder and head directly)")
    need(m.path or m.tiny, "model.path is required (a local Hugging Face model directory or a Hub id), "
                           "e.g. model.path=./my-model or model.path=Qwen/Qwen2.5-0.5B-Instruct")
    need(cfg.checkpoint.every >= 0 and cfg.checkpoint.keep >= 1, "checkpoint.every must be >= 0 and checkpoint.keep >= 1")
    lc = cfg.log
    need(lc.completions_every >= 0 and lc.completions_max_chars >= 0 and lc.completions_per_step >= 1 and lc.warn_every >= 1,
         f"log.completions_every and log.completions_max_chars must be >= 0, log.completions_per_step and "
         f"log.warn_every >= 1; got {lc.completions_every}, {lc.completions_max_chars}, {lc.completions_per_step}, "
         f"{lc.warn_every}")
    if cfg.warmstart.steps > 0:
        _check_target(cfg)
    for comp in cfg.components.values():   # components that depend on other sections
        try:
            comp.check_config(cfg)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def load_config(recipe: str | None, overrides: list[str] | None = None, base: dict | None = None) -> Config:
    """Recipe (file or built-in name) + overrides -> validated Config."""
    data = load_recipe(recipe) if recipe else copy.deepcopy(base or {})
    data = apply_overrides(data, list(overrides or []))
    return validate(data)


def describe_component(axis: str, name: str) -> str:
    cls = get(axis, name)
    parts = []
    for k, (typ, default) in params_of(cls).items():
        t = type_name(typ)
        parts.append(f"{k}: {t} (required)" if default is dataclasses.MISSING else f"{k}: {t} = {default!r}")
    return ", ".join(parts)
