"""The architecture as a reviewer checks it: no import cycles between groupo's files, no file over
400 lines, the README's layout lists every package and module, components subclass their axis's
protocol and are found without a hand-kept list, and the loop is configured through components'
fields (no GROUPO_* environment variables, no private attributes set on the model)."""
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "groupo"


def _modules() -> dict:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def _import_graph() -> dict:
    """module -> modules it imports anywhere (top level or inside functions): ``from X import Y``
    counts as an edge to X.Y when that is a module, else to X."""
    mods = _modules()
    edges = {m: set() for m in mods}
    for m, (p, is_pkg) in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                edges[m] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".") if is_pkg else m.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                assert target in mods or not target.startswith("groupo"), f"{p}:{node.lineno}: no module {target}"
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    edges[m].add(sub if sub in mods else target)
            edges[m] &= set(mods)
    return edges


def _cycles(edges: dict) -> list:
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_file_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in list(PKG.rglob("*.py")) + list((ROOT / "tests").rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_readme_layout_lists_every_package_and_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[: layout.index("\n## ", 5)]
    missing = [d.name for d in PKG.iterdir() if d.is_dir() and d.name != "__pycache__"
               and not re.search(rf"^\s+{d.name}/", layout, re.M)]
    missing += [p.name for p in PKG.glob("*.py") if p.name not in ("__main__.py",) and p.name not in layout]
    for sub in ("advantage", "objective", "shaping"):
        missing += [f"{sub}/{p.stem}" for p in (PKG / "algo" / sub).glob("*.py")
                    if p.stem not in ("__init__", "common") and p.stem not in layout]
    assert missing == []


def test_components_subclass_their_protocol_and_are_discovered():
    from groupo import protocols
    from groupo.registry import AXES, COMPONENT_PACKAGES, _REGISTRY, names

    assert set(AXES) == set(protocols.AXES)
    for axis in AXES:
        assert names(axis), f"axis {axis} has no component"
        for name, cls in _REGISTRY[axis].items():
            assert protocols.AXES[axis] in cls.__mro__, f"{axis} {name} ({cls.__qualname__})"
    # every module that registers a component is imported by discovery (no hand-kept list)
    for pkg in COMPONENT_PACKAGES:
        for p in (PKG / pkg).rglob("*.py"):
            mod = ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            if "@register(" in p.read_text():
                assert mod in sys.modules, mod


def test_register_refuses_a_class_without_its_protocols_members():
    from dataclasses import dataclass

    import pytest

    from groupo.registry import RegistryError, register

    with pytest.raises(RegistryError, match="lacks check_config, init_state, update: subclass groupo.protocols.Sampler"):
        @register("sampler", "test_incomplete")
        @dataclass(frozen=True)
        class Incomplete:
            def __call__(self, task, rng, n, state):
                return []


def test_no_environment_variables_or_model_attributes_as_configuration():
    offenders = []
    for p in PKG.rglob("*.py"):
        text = p.read_text()
        for m in re.finditer(r"environ(?:\.get)?\(?\[?[\"'](GROUPO_\w+)", text):
            if m.group(1) != "GROUPO_FAULT":          # fault injection for the reliability tests only
                offenders.append(f"{p.name}: {m.group(1)}")
        offenders += [f"{p.name}: {a}" for a in re.findall(r"\b_groupo_\w+", text)]
        offenders += [f"{p.name}: getattr probe {c}" for c in re.findall(
            r"(?:getattr|hasattr)\([^)]*[\"'](full_batch|needs_logp|needs_entropy|replay_weight|choose|active|"
            r"zero_advantage_no_gradient|check_config|refill)[\"']", text)]
    assert offenders == []
