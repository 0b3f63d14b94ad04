"""Every configuration key with its type, default and one line of help, for ``groupo list config``.

The help is the comment on the field's line in the dataclass that validates the key
(``config/sections.py`` for the plain sections, each component's own class for the component
sections), so the documentation cannot drift from what is checked.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import typing

from ..registry import get, params_of, type_name

_FIELD = re.compile(r"^\s+(\w+)\s*:[^=#]*(?:=[^#]*)?#\s*(.+)$")


def field_help(cls: type) -> dict[str, str]:
    """{field: the comment on its line} for a dataclass and its dataclass bases."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        for line in lines:
            m = _FIELD.match(line)
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


def section_rows(section: str, cls: type) -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for each field of a plain section's dataclass."""
    hints, helps = typing.get_type_hints(cls), field_help(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        rows.append((f"{section}.{f.name}", type_name(hints.get(f.name, typing.Any)), repr(default), helps.get(f.name, "")))
    return rows


def component_rows(section: str, axis: str, name: str) -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for each parameter of the component ``name`` of ``axis``."""
    cls = get(axis, name)
    helps = field_help(cls)
    doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
    rows = [(f"{section}.name", "str", repr(name), doc[:160])]
    for key, (typ, default) in params_of(cls).items():
        shown = "(required)" if default is dataclasses.MISSING else repr(default)
        rows.append((f"{section}.{key}", type_name(typ), shown, helps.get(key, "")))
    return rows


def print_config(console, sections) -> int:
    """The ``groupo list config`` table (``sections``: the plain sections to show; all: also the rest)."""
    from rich.markup import escape
    from rich.table import Table

    from . import COMPONENT_SECTIONS, PLAIN_SECTIONS, SCALARS

    table = Table(title="groupo configuration keys (key=value on the command line; sections in a recipe)")
    for col in ("key", "type", "default", "meaning"):
        table.add_column(col)
    add = table.add_row
    table.add_row = lambda *cells: add(*(escape(str(c)) for c in cells))     # "list[int]" is not markup
    if len(sections) > 1:
        for key, (typ, default) in SCALARS.items():
            table.add_row(key, typ.__name__, repr(default), {"name": "run name (default run directory runs/<name>)",
                          "seed": "seed of every random draw", "out": "run directory", "description": "free text"}[key])
    for section in sections:
        for row in section_rows(section, PLAIN_SECTIONS[section]):
            table.add_row(*row)
    if len(sections) > 1:
        for section, (axis, default) in COMPONENT_SECTIONS.items():
            for row in component_rows(section, axis, default):
                table.add_row(*row)
        table.add_row("rewards", "list", "[{name: correct, weight: 1.0}]",
                      "reward functions: {name, weight, label, parameters}; groupo list reward")
        table.add_row("plugins", "list[str]", "[]", "Python files registering your own components")
    console.print(table)
    if len(sections) > 1:
        console.print("component sections show their default component; other components: groupo list AXIS")
    return 0
