"""Run configuration: YAML recipes with ``extends:``, dotted overrides, validation.

A recipe is a YAML mapping. ``extends: NAME_OR_PATH`` merges a parent recipe first
(a built-in name like ``grpo`` or a path relative to the file). ``key.sub=value``
overrides come from the command line; values are parsed as YAML scalars. Component
sections (``advantage: {name: grpo, eps: 1e-4}``) are validated against the
registry; plain sections against the dataclasses in ``config_sections``. Changing a component's
``name`` (in a child recipe or an override) starts that section afresh, so the old
component's parameters do not leak into the new one. Every error is one line naming
the key, file or value (``ConfigError``), raised before any model loads.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config_sections import (CheckpointCfg, EvalCfg, GenerationCfg, LogCfg, ModelCfg,  # noqa: F401
                             TrainCfg, WarmstartCfg)
from .registry import RegistryError, build, closest, coerce, get, params_of

RECIPES_DIR = Path(__file__).parent / "recipes"


class ConfigError(ValueError):
    """A user mistake in a recipe or override: one line, exit code 2."""


PLAIN_SECTIONS = {
    "model": ModelCfg, "generation": GenerationCfg, "train": TrainCfg, "eval": EvalCfg,
    "checkpoint": CheckpointCfg, "log": LogCfg, "warmstart": WarmstartCfg,
}
COMPONENT_SECTIONS = {  # section -> (axis, default component)
    "task": ("task", "arithmetic"), "template": ("template", "chat"), "sampler": ("sampler", "uniform"),
    "advantage": ("advantage", "grpo"), "objective": ("objective", "ppo_clip"), "kl": ("kl", "none"),
    "aggregation": ("aggregation", "seq_mean_token_mean"), "filter": ("filter", "none"),
    "shaping": ("shaping", "none"), "weighting": ("weighting", "uniform"), "allocation": ("allocation", "fixed"),
    "replay": ("replay", "none"),
}
SCALARS = {"name": (str, "run"), "seed": (int, 0), "out": (str, ""), "description": (str, "")}
TOP_KEYS = list(SCALARS) + list(PLAIN_SECTIONS) + list(COMPONENT_SECTIONS) + ["rewards", "extends"]


# ------------------------------------------------------------------ loading
def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def _resolve_path(ref: str, base: Path | None) -> Path:
    p = Path(ref)
    candidates = [p] if p.is_absolute() else ([base / p] if base else []) + [p]
    for c in candidates:
        if c.is_file():
            return c
    builtin = RECIPES_DIR / f"{ref}.yaml"
    if builtin.is_file() and not p.suffix:
        return builtin
    hint = closest(ref, recipe_names())
    raise ConfigError(f"recipe '{ref}' not found (not a file, not a built-in recipe){hint}; "
                      f"built-in: {', '.join(recipe_names())}")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping, got {type(data).__name__}")
    return data


def _merge(base: dict, child: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in child.items():
        if (key in COMPONENT_SECTIONS and isinstance(value, dict) and isinstance(out.get(key), dict)
                and "name" in value and value["name"] != out[key].get("name")):
            out[key] = copy.deepcopy(value)  # another component: start the section afresh
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_recipe(ref: str, _seen: tuple = ()) -> dict:
    """Read a recipe (file or built-in name) with its ``extends:`` chain merged."""
    path = _resolve_path(ref, None) if not _seen else ref  # type: ignore[assignment]
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'extends' cycle")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'extends' must be a recipe name or path, got {parent!r}")
    parent_path = _resolve_path(parent, path.parent)
    return _merge(load_recipe(parent_path, _seen + (path,)), data)  # type: ignore[arg-type]


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, p in enumerate(parts[:-1]):
            if p == "rewards" and i == 0:
                node = node.setdefault("rewards", [])
                continue
            if isinstance(node, list):
                if not p.isdigit() or int(p) >= len(node):
                    raise ConfigError(f"override '{text}': no list entry '{p}' (have {len(node)})")
                node = node[int(p)]
                continue
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, (dict, list)):
                raise ConfigError(f"override '{text}': '{'.'.join(parts[:i + 1])}' is not a section")
            node = nxt
        last = parts[-1]
        if isinstance(node, list):
            raise ConfigError(f"override '{text}': name a list entry by index, e.g. rewards.0.weight=1")
        if parts[0] in COMPONENT_SECTIONS and len(parts) == 2 and last == "name" and node.get("name") != value:
            node.clear()
        node[last] = value
    return data


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
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"unknown key '{key}'{closest(key, TOP_KEYS)}")
    cfg = Config(raw={})
    resolved: dict = {}
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


def _rewards(value):
    if value is None:
        value = [{"name": "correct", "weight": 1.0}]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"'rewards' must be a non-empty list of {{name: ..., weight: ...}}, got {value!r}")
    from .rewards.combine import RewardSet

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

    g, t, e = cfg.generation, cfg.train, cfg.eval
    need(g.group_size >= 1, f"generation.group_size must be >= 1, got {g.group_size}")
    need(g.prompts_per_step >= 1, f"generation.prompts_per_step must be >= 1, got {g.prompts_per_step}")
    need(g.max_new_tokens >= 1, f"generation.max_new_tokens must be >= 1, got {g.max_new_tokens}")
    need(g.temperature >= 0, f"generation.temperature must be >= 0, got {g.temperature}")
    need(0 < g.top_p <= 1, f"generation.top_p must be in (0, 1], got {g.top_p}")
    need(g.top_k >= 0, f"generation.top_k must be >= 0, got {g.top_k}")
    need(g.tis_cap >= 0, f"generation.tis_cap must be >= 0 (0 = no importance correction), got {g.tis_cap}")
    need(g.backend in ("hf", "reference", "vllm"),
         f"generation.backend must be 'hf', 'reference' or 'vllm', got {g.backend!r}")
    need(t.steps >= 0, f"train.steps must be >= 0, got {t.steps}")
    need(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
    need(t.micro_batches >= 1, f"train.micro_batches must be >= 1, got {t.micro_batches}")
    need(t.num_iterations >= 1, f"train.num_iterations must be >= 1, got {t.num_iterations}")
    need(t.schedule in ("constant", "linear", "cosine"),
         f"train.schedule must be constant, linear or cosine, got {t.schedule!r}{closest(t.schedule, ['constant', 'linear', 'cosine'])}")
    need(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), f"train.betas must be two numbers in [0, 1), got {t.betas}")
    need(t.adam_eps > 0, f"train.adam_eps must be > 0, got {t.adam_eps}")
    need(e.samples >= 1, f"eval.samples must be >= 1, got {e.samples}")
    need(all(1 <= k <= e.samples for k in e.ks), f"eval.ks must be between 1 and eval.samples={e.samples}, got {e.ks}")
    need(cfg.model.dtype in ("float32", "bfloat16", "float16"), f"model.dtype must be float32, bfloat16 or float16, got {cfg.model.dtype!r}")
    need(cfg.model.device in ("auto", "cpu", "cuda"), f"model.device must be auto, cpu or cuda, got {cfg.model.device!r}")
    m = cfg.model
    need(m.lora_r >= 0 and m.lora_alpha > 0 and 0 <= m.lora_dropout < 1,
         f"model.lora_r must be >= 0, lora_alpha > 0, lora_dropout in [0, 1); got {m.lora_r}, {m.lora_alpha}, {m.lora_dropout}")
    need(m.autocast in ("none", "bfloat16"), f"model.autocast must be none or bfloat16, got {m.autocast!r}")
    need(m.logprob_chunk >= 0, f"model.logprob_chunk must be >= 0, got {m.logprob_chunk}")
    if isinstance(m.prefix_sharing, bool):       # `model.prefix_sharing=on` arrives as True from YAML
        m.prefix_sharing = "on" if m.prefix_sharing else "off"
    need(m.prefix_sharing in ("auto", "on", "off", "dense"),
         f"model.prefix_sharing must be auto, on, off or dense, got {m.prefix_sharing!r}")
    need(m.cpu_gemm in ("auto", "onednn", "torch"), f"model.cpu_gemm must be auto, onednn or torch, got {m.cpu_gemm!r}")
    need(cfg.model.path or cfg.model.tiny, "model.path is required (a local Hugging Face model directory), e.g. model.path=./my-model")
    need(cfg.checkpoint.every >= 0 and cfg.checkpoint.keep >= 1, "checkpoint.every must be >= 0 and checkpoint.keep >= 1")
    for section, comp in cfg.components.items():   # components that depend on other sections
        if hasattr(comp, "check_config"):
            try:
                comp.check_config(cfg)
            except ValueError as e:
                raise ConfigError(str(e)) from None


def load_config(recipe: str | None, overrides: list[str] | None = None, base: dict | None = None) -> Config:
    """Recipe (file or built-in name) + overrides -> validated Config."""
    data = load_recipe(recipe) if recipe else copy.deepcopy(base or {})
    data = apply_overrides(data, list(overrides or []))
    return validate(data)


def describe_component(axis: str, name: str) -> str:
    cls = get(axis, name)
    parts = []
    for k, (typ, default) in params_of(cls).items():
        t = getattr(typ, "__name__", str(typ)).replace("typing.", "")
        parts.append(f"{k}: {t} (required)" if default is dataclasses.MISSING else f"{k}: {t} = {default!r}")
    return ", ".join(parts)
