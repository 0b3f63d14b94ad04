"""A user's own Python files: component plug-ins and reward functions.

``plugins: [my_components.py]`` in a recipe (or ``--plugin my_components.py``) imports the file
before the configuration is validated, so the components it registers with
``groupo.registry.register`` can be named in the same recipe. The file is the user's own code,
trusted like the recipe itself (model output never reaches it). A file is imported once per
process; every mistake is one line naming the file (and the line, for an error inside it).
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

_LOADED: dict[str, ModuleType] = {}


class PluginError(ValueError):
    """A user's Python file cannot be imported (one line, exit code 2)."""


def import_file(path: str | Path, what: str = "plugin") -> ModuleType:
    """Import the Python file ``path`` (once per process; later calls return the same module)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise PluginError(f"{path}: {what} file not found")
    key = str(p.resolve())
    if key in _LOADED:
        return _LOADED[key]
    name = f"groupo_user_{p.stem}_{hashlib.blake2b(key.encode(), digest_size=6).hexdigest()}"
    spec = importlib.util.spec_from_file_location(name, key)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: cannot import this file as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module          # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any error in the user's file becomes one line
        del sys.modules[name]
        if isinstance(e, SyntaxError) and e.filename == key:
            line, text = e.lineno, e.msg
        else:
            line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__)) if f.filename == key), None)
            text = str(e).splitlines()[0] if str(e) else ""
        where = f"{path}:{line}" if line else str(path)
        raise PluginError(f"{where}: {type(e).__name__}: {text}".rstrip(": ")) from None
    _LOADED[key] = module
    return module


def load_plugins(paths) -> list[str]:
    """Import each plugin file; returns their absolute paths (what the run's config.yaml keeps)."""
    if isinstance(paths, (str, Path)) or not isinstance(paths, (list, tuple)):
        raise PluginError(f"'plugins' must be a list of Python files, got {paths!r}")
    out = []
    for i, p in enumerate(paths):
        if not isinstance(p, (str, Path)) or not str(p).endswith(".py"):
            raise PluginError(f"plugins[{i}]: expected a .py file, got {p!r}")
        import_file(p)
        out.append(str(Path(p).expanduser().resolve()))
    return out
