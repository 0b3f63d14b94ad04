"""One registry per axis: register / build / names.

Every component is a small frozen dataclass whose fields are its hyperparameters, subclassing
its axis's protocol (``groupo.protocols``). ``build(axis, name, params)`` validates parameter
names and types against the dataclass fields (``Literal[...]`` fields against their values), so
an unknown or mistyped parameter is an error naming it.

Built-in components are discovered: every module under the component packages is imported
the first time a registry is read, so a new file registers itself. A user's own components
come from Python files named in the recipe (``plugins: [my_components.py]``) or on the command
line (``--plugin FILE``), loaded by ``groupo.plugins``.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from typing import Any, Callable

from .protocols import AXES as PROTOCOLS
from .protocols import members

AXES = tuple(PROTOCOLS)
# packages whose modules are imported to find the built-in components (every module, recursively)
COMPONENT_PACKAGES = ("algo", "data", "prompts", "tasks", "rewards", "rollout", "model")

_REGISTRY: dict[str, dict[str, type]] = {axis: {} for axis in AXES}


class RegistryError(ValueError):
    """A user-facing error about a component name or parameter (one line)."""


def closest(word: str, choices) -> str:
    """Return ' (did you mean X?)' for the closest choice, or ''."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def register(axis: str, name: str) -> Callable[[type], type]:
    """Class decorator: register a frozen dataclass as component ``name`` on ``axis``. The class
    must have every member of the axis's protocol (subclass it to inherit the defaults)."""
    if axis not in _REGISTRY:
        raise RegistryError(f"unknown axis '{axis}'{closest(axis, AXES)}; axes: {', '.join(AXES)}")

    def deco(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise RegistryError(f"{axis} component '{name}' ({cls.__qualname__}) must be a dataclass")
        proto = PROTOCOLS[axis]
        have = {f.name for f in dataclasses.fields(cls)} | {k for c in cls.__mro__[:-1] for k in vars(c)}
        missing = [m for m in members(proto) if m not in have]
        if missing:
            raise RegistryError(f"{axis} component '{name}' ({cls.__qualname__}) lacks {', '.join(missing)}: "
                                f"subclass groupo.protocols.{proto.__name__}")
        old = _REGISTRY[axis].get(name)
        if old is not None and old is not cls and _origin(old) != _origin(cls):
            raise RegistryError(f"{axis} component '{name}' is registered twice ({_origin(old)} and {_origin(cls)})")
        _check_literals_on_init(cls)
        _REGISTRY[axis][name] = cls
        cls.component_name = name  # type: ignore[attr-defined]
        cls.component_axis = axis  # type: ignore[attr-defined]
        return cls

    return deco


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _literals(cls: type) -> dict[str, tuple]:
    """{field: allowed values} for the ``Literal[...]`` fields of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: typing.get_args(hints[f.name]) for f in dataclasses.fields(cls)
            if f.name in hints and typing.get_origin(hints[f.name]) is typing.Literal}


def _check_literals_on_init(cls: type) -> None:
    """Make ``cls(...)`` refuse a value outside a ``Literal`` field's choices (as ``build`` does),
    so components constructed directly in Python are checked too."""
    allowed = _literals(cls)
    if not allowed or getattr(cls.__init__, "__literals_checked__", False):
        return
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        for key, choices in allowed.items():
            value = getattr(self, key)
            if value not in choices:
                raise ValueError(f"{key} must be one of {list(choices)}, got {value!r}{closest(value, choices)}")

    __init__.__literals_checked__ = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


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


def type_name(annotation) -> str:
    """A short readable name of a field's type: ``int``, ``list[int]``, ``group|batch|none``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin is typing.Union or str(origin) == "types.UnionType":
        return " or ".join(type_name(a) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else "")
    if origin in (list, tuple, dict):
        inner = ", ".join(type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert ``value`` to ``annotation``; raise RegistryError naming ``where``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is typing.Union or str(origin) == "types.UnionType" or (origin is not None and type(None) in args):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, where)
            except RegistryError:
                pass
        raise RegistryError(f"{where}: value {value!r} does not fit {type_name(annotation)}")
    if origin is typing.Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(args):
            value = "on" if value else "off"      # YAML 1.1 reads on/off as booleans
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
    """Import every module of the component packages, so that built-in components register
    themselves (a new file needs no entry anywhere)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib
    import pkgutil

    for pkg in COMPONENT_PACKAGES:
        package = importlib.import_module(f"{__package__}.{pkg}")
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
