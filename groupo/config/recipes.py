"""Recipes: YAML files with ``extends:``, and ``key.sub=value`` overrides.

A recipe is a YAML mapping. ``extends: NAME_OR_PATH`` merges a parent recipe first (a built-in
name like ``grpo`` or a path relative to the file). Changing a component's ``name`` (in a child
recipe or an override) starts that section afresh, so the old component's parameters do not
leak into the new one. Override values are parsed as YAML scalars.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ..registry import closest

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
# sections that name a component: section -> (axis, default component)
COMPONENT_SECTIONS = {
    "task": ("task", "arithmetic"), "template": ("template", "chat"), "sampler": ("sampler", "uniform"),
    "advantage": ("advantage", "grpo"), "objective": ("objective", "ppo_clip"), "kl": ("kl", "none"),
    "aggregation": ("aggregation", "seq_mean_token_mean"), "critic": ("critic", "none"), "filter": ("filter", "none"),
    "shaping": ("shaping", "none"), "weighting": ("weighting", "uniform"), "allocation": ("allocation", "fixed"),
    "replay": ("replay", "none"), "rollout": ("rollout", "lean"), "forward": ("forward", "auto"),
}


class ConfigError(ValueError):
    """A user mistake in a recipe or override: one line, exit code 2."""


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
    """``key.sub=value`` -> (["key", "sub"], value); ``key+=value`` -> (["key+"], value): append."""
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


def apply_overrides(data: dict, overrides: list) -> dict:
    """``overrides``: ``"key.sub=value"`` strings (values parsed as YAML) or ``(dotted key, value)``
    pairs (values used as given, as the Python API passes them)."""
    data = copy.deepcopy(data)
    for text in overrides:
        if isinstance(text, str):
            parts, value = parse_override(text)
        else:
            parts, value = str(text[0]).split("."), text[1]
            text = f"{text[0]}={value!r}"
        node = data
        for i, p in enumerate(parts[:-1]):
            if p == "rewards" and i == 0:
                node = node.setdefault("rewards", [])
                continue
            if isinstance(node, list):
                if p.isdigit() and int(p) == len(node):      # one past the end: a new entry (rewards.1.name=format)
                    node.append({})
                if not p.isdigit() or int(p) >= len(node):
                    raise ConfigError(f"override '{text}': no list entry '{p}' (have {len(node)}; "
                                      f"{len(node)} adds one)")
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
        if last.endswith("+"):          # key+=[a, b] or key+=a: append to a list
            last = last[:-1].strip()
            have = node.get(last) or []
            if not isinstance(have, list):
                raise ConfigError(f"override '{text}': '{'.'.join(parts[:-1] + [last])}' is not a list")
            node[last] = have + (value if isinstance(value, list) else [value])
            continue
        if parts[0] in COMPONENT_SECTIONS and len(parts) == 2 and last == "name" and node.get("name") != value:
            node.clear()
        node[last] = value
    return data
