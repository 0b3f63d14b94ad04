"""One registry per axis: register / build / names.

Every component is a small frozen dataclass whose fields are its hyperparameters.
``build(axis, name, params)`` validates the parameter names and types against the
dataclass fields, so an unknown or mistyped parameter is an error naming it.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Callable

AXES = (
    "task", "reward", "shaping", "advantage", "weighting", "filter", "objective",
    "aggregation", "kl", "sampler", "allocation", "replay", "template", "forward", "generator",
)

_REGISTRY: dict[str, dict[str, type]] = {axis: {} for axis in AXES}


class RegistryError(ValueError):
    """A user-facing error about a component name or parameter (one line)."""


def closest(word: str, choices) -> str:
    """Return ' (did you mean X?)' for the closest choice, or ''."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def register(axis: str, name: str) -> Callable[[type], type]:
    """Class decorator: register a frozen dataclass as component ``name`` on ``axis``."""
    if axis not in _REGISTRY:
        raise KeyError(f"unknown axis {axis!r}")

    def deco(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass to be registered")
        if name in _REGISTRY[axis] and _REGISTRY[axis][name] is not cls:
            raise KeyError(f"{axis} component {name!r} registered twice")
        _REGISTRY[axis][name] = cls
        cls.component_name = name  # type: ignore[attr-defined]
        cls.component_axis = axis  # type: ignore[attr-defined]
        return cls

    return deco


def names(axis: str) -> list[str]:
    _ensure_loaded()
    if axis not in _REGISTRY:
        raise RegistryError(f"unknown axis '{axis}'{closest(axis, AXES)}; axes: {', '.join(AXES)}")
    return sorted(_REGISTRY[axis])


def get(axis: str, name: str) -> type:
    _ensure_loaded()
    if axis not in _REGISTRY:
        raise RegistryError(f"unknown axis '{axis}'{closest(axis, AXES)}")
    if name not in _REGISTRY[axis]:
        known = sorted(_REGISTRY[axis])
        raise RegistryError(
            f"unknown {axis} '{name}'{closest(name, known)}; known: {', '.join(known) or '(none)'}"
        )
    return _REGISTRY[axis][name]


def params_of(cls: type) -> dict[str, tuple[Any, Any]]:
    """{field name: (type annotation, default)} for a component class."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = dataclasses.MISSING
        out[f.name] = (hints.get(f.name, Any), default)
    return out


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert ``value`` to ``annotation``; raise RegistryError naming ``where``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is typing.Union or str(origin) == "types.UnionType" or (origin is not None and type(None) in args):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, where)
            except RegistryError as e:
                errors.append(str(e))
        raise RegistryError(f"{where}: value {value!r} does not fit {annotation}")
    if origin is typing.Literal:
        if value not in args:
            raise RegistryError(f"{where}: value {value!r} is not one of {list(args)}{closest(value, args)}")
        return value
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise RegistryError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise RegistryError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise RegistryError(f"{where}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise RegistryError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise RegistryError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RegistryError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise RegistryError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def build(axis: str, name: str, params: dict | None = None, where: str | None = None):
    """Instantiate component ``name`` of ``axis`` with validated ``params``."""
    cls = get(axis, name)
    params = dict(params or {})
    spec = params_of(cls)
    where = where or axis
    kwargs = {}
    for key, value in params.items():
        if key not in spec:
            raise RegistryError(
                f"unknown parameter '{where}.{key}' for {axis} '{name}'{closest(key, spec)}; "
                f"valid: {', '.join(spec) or '(none)'}"
            )
        kwargs[key] = coerce(value, spec[key][0], f"{where}.{key}")
    missing = [k for k, (_, d) in spec.items() if d is dataclasses.MISSING and k not in kwargs]
    if missing:
        raise RegistryError(f"{where}: {axis} '{name}' needs parameter(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise RegistryError(f"{where}: {e}") from None


_LOADED = False


def _ensure_loaded() -> None:
    """Import the built-in component modules so that they register themselves."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for mod in (
        "groupo.algo.advantage", "groupo.algo.objective", "groupo.algo.kl", "groupo.algo.aggregation",
        "groupo.algo.filter", "groupo.algo.advantage_zoo", "groupo.algo.advantage_zoo2", "groupo.algo.weighting",
        "groupo.algo.aggregation_zoo", "groupo.algo.objective_zoo", "groupo.algo.shaping", "groupo.algo.maxmin",
        "groupo.prompt_aug",
        "groupo.tasks", "groupo.rewards", "groupo.sampler", "groupo.samplers", "groupo.allocation",
        "groupo.template", "groupo.replay", "groupo.algo.shaping_r3",
    ):
        importlib.import_module(mod)
