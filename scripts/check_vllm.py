"""Check groupo's vLLM calls against vLLM's real signatures, read from the pinned wheel (issue 20).

vLLM cannot be imported without a GPU, so nothing here imports it: the wheel (``pip download
--no-deps``; ``make check-vllm``) is read as a zip and its source parsed with ``ast``. ``extract``
records what groupo relies on in tests/vllm_api.json (``LLM.__init__`` and the ``EngineArgs`` fields
its ``**kwargs`` go to, ``generate``/``sleep``/``wake_up``/``reset_prefix_cache``, ``SamplingParams``
fields, the values of ``logprobs_mode``/``dtype``/``distributed_executor_backend``, the attribute path
to the in-process model and its ``load_weights``, output fields); tests/fake_vllm.py is built from
it. ``compare`` checks every call groupo/rollout/vllm.py makes (found with ``ast``) and every
``engine_args`` key the docs show against it, one line per unknown keyword or attribute (exit 1).

    python scripts/check_vllm.py                         # groupo vs tests/vllm_api.json (offline)
    python scripts/check_vllm.py --wheel W.whl           # W's API vs the JSON, then groupo vs W
    python scripts/check_vllm.py --wheel W.whl --write   # (re)record the JSON from W
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_JSON = ROOT / "tests" / "vllm_api.json"
GLUE = ROOT / "groupo" / "rollout" / "vllm.py"
LLM_METHODS = ("__init__", "generate", "sleep", "wake_up", "reset_prefix_cache", "collective_rpc", "apply_model")
LITERALS = {"LogprobsMode": "vllm.config.model", "ModelDType": "vllm.config.model",
            "DistributedExecutorBackend": "vllm.config.parallel"}
VALUE_OF = {"logprobs_mode": "LogprobsMode", "dtype": "ModelDType", "distributed_executor_backend":
            "DistributedExecutorBackend"}     # LLM(...) keyword -> the Literal its value must be in
# llm.llm_engine.model_executor.driver_worker[.worker].model_runner.model: the in-process engine's
# model (VLLM_ENABLE_V1_MULTIPROCESSING=0), as TRL's colocate mode reaches it
ENGINE_PATH = [("vllm.entrypoints.llm", "LLM", "llm_engine"),
               ("vllm.v1.engine.llm_engine", "LLMEngine", "model_executor"),
               ("vllm.v1.executor.uniproc_executor", "ExecutorWithExternalLauncher", "driver_worker"),
               ("vllm.v1.worker.worker_base", "WorkerWrapperBase", "worker"),
               ("vllm.v1.worker.worker_base", "WorkerWrapperBase", "__getattr__"),
               ("vllm.v1.worker.gpu_worker", "Worker", "model_runner"),
               ("vllm.v1.worker.gpu_model_runner", "GPUModelRunner", "model"),
               ("vllm.v1.worker.gpu.model_runner", "GPUModelRunner", "model")]
MODELS = [("vllm.model_executor.models.llama", "LlamaForCausalLM"), ("vllm.model_executor.models.qwen2",
          "Qwen2ForCausalLM"), ("vllm.model_executor.models.qwen3", "Qwen3ForCausalLM"),
          ("vllm.model_executor.models.mistral", "MistralForCausalLM")]
OUTPUTS = {"RequestOutput": "vllm.outputs", "CompletionOutput": "vllm.outputs", "Logprob": "vllm.logprobs",
           "TokensPrompt": "vllm.inputs"}
# variables of groupo/rollout/vllm.py that hold vLLM objects: function -> {name: class}
HOLDERS = {"VLLMEngine.generate": {"res": "RequestOutput", "o": "CompletionOutput"},
           "_sampled_logprobs": {"lp": "Logprob"}}
PINS = ("torch", "transformers", "torchvision", "torchaudio", "tokenizers")


# ----------------------------------------------------------------------------- the wheel's source
class Wheel:
    """The wheel's Python files, parsed on demand (never imported)."""

    def __init__(self, path: Path):
        self.path, self.zip = Path(path), zipfile.ZipFile(path)
        self.names = set(self.zip.namelist())
        self._trees: dict = {}

    def tree(self, module: str):
        base = module.replace(".", "/")
        for name in (base + ".py", base + "/__init__.py"):
            if name in self.names:
                if name not in self._trees:
                    self._trees[name] = ast.parse(self.zip.read(name).decode("utf-8"))
                return self._trees[name]
        return None

    def is_package(self, module: str) -> bool:
        return module.replace(".", "/") + "/__init__.py" in self.names

    def metadata(self) -> str:
        name = next(n for n in self.names if n.endswith(".dist-info/METADATA"))
        return self.zip.read(name).decode("utf-8")

    def find_class(self, module: str, name: str, depth: int = 0):
        """(module, ClassDef) of ``name`` as seen from ``module``: defined there or imported into it."""
        tree = self.tree(module)
        if tree is None or depth > 4:
            return None
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return module, node
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
                real = next(a.name for a in node.names if (a.asname or a.name) == name)
                parts = module.split(".") if self.is_package(module) else module.split(".")[:-1]
                pkg = parts[: len(parts) - node.level + 1] if node.level else []
                src = ".".join(pkg + ([node.module] if node.module else []))
                return self.find_class(src, real, depth + 1)
        return None

    def members(self, module: str, name: str) -> dict:
        """Methods (with parameters), instance attributes and annotated fields of a class and of
        its bases that resolve inside the wheel."""
        found = self.find_class(module, name)
        if found is None:
            return {}
        mod, cls = found
        out = {"methods": {}, "attrs": set(), "fields": {}}
        for base in cls.bases:
            bname = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
            inherited = self.members(mod, bname) if bname else {}
            for k in out:
                out[k].update(inherited.get(k, {}))
        for node in cls.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out["methods"][node.name] = params(node)
                for sub in ast.walk(node):
                    for t in (sub.targets if isinstance(sub, ast.Assign) else
                              [sub.target] if isinstance(sub, ast.AnnAssign) else []):
                        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                            out["attrs"].add(t.attr)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if "ClassVar" not in ast.unparse(node.annotation):
                    out["fields"][node.target.id] = ast.unparse(node.value) if node.value is not None else None
        return out

    def literal(self, module: str, name: str) -> list:
        for node in self.tree(module).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
                return [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)]
        raise KeyError(f"{module}.{name}")


def params(fn) -> list:
    """[[name, kind, default source or None], ...] of a function, without ``self``."""
    a = fn.args
    pos = a.posonlyargs + a.args
    defaults = [None] * (len(pos) - len(a.defaults)) + [ast.unparse(d) for d in a.defaults]
    out = [[p.arg, "positional", d] for p, d in zip(pos, defaults)]
    if a.vararg:
        out.append([a.vararg.arg, "var_positional", None])
    out += [[p.arg, "keyword", ast.unparse(d) if d is not None else None] for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg:
        out.append([a.kwarg.arg, "var_keyword", None])
    return [p for p in out if p[0] != "self"]


def sha256(path: Path) -> str:
    h = hashlib.sha256()      # in blocks: the wheel is ~300 MB
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def docstring(w: Wheel, module: str, cls: str, method: str) -> str:
    _, node = w.find_class(module, cls)
    fn = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == method)
    return ast.get_docstring(fn) or ""


def extract(wheel_path: Path) -> dict:
    """The API groupo relies on, from the wheel's source (see the module docstring)."""
    w = Wheel(wheel_path)
    meta = w.metadata()
    version = re.search(r"^Version: (.+)$", meta, re.M).group(1).strip()
    requires = sorted(r for r in re.findall(r"^Requires-Dist: (.+)$", meta, re.M)
                      if re.match(r"(%s)\b" % "|".join(PINS), r) and "extra ==" not in r)
    llm = w.members("vllm.entrypoints.llm", "LLM")
    sleep_doc, wake_doc = (docstring(w, "vllm.entrypoints.llm", "LLM", m) for m in ("sleep", "wake_up"))
    tags = sorted({c.value for n in ast.walk(w.tree("vllm.v1.worker.gpu_worker")) if isinstance(n, ast.Call)
                   for k in n.keywords if k.arg == "tag" and isinstance(c := k.value, ast.Constant)})
    path = [{"class": f"{module}.{cls}", "attr": attr, "present": attr in m.get("attrs", ()) or attr in
             m.get("methods", {})} for module, cls, attr in ENGINE_PATH if (m := w.members(module, cls)) is not None]
    models = {f"{module}.{cls}": w.members(module, cls).get("methods", {}).get("load_weights") for module, cls in MODELS}
    outputs = {cls: sorted(set((m := w.members(module, cls)).get("attrs", ())) | set(m.get("fields", {})))
               for cls, module in OUTPUTS.items()}
    sp = w.members("vllm.sampling_params", "SamplingParams")
    return {
        "vllm": version,
        "wheel": w.path.name,
        "sha256": sha256(w.path),
        "requires": requires,
        "requires_python": (re.search(r"^Requires-Python: (.+)$", meta, re.M) or [None, None])[1],
        "LLM": {m: llm["methods"].get(m) for m in LLM_METHODS},
        "LLM_attrs": sorted(llm["attrs"]),
        "EngineArgs": sorted(w.members("vllm.engine.arg_utils", "EngineArgs")["fields"]),
        "SamplingParams": sp["fields"],
        "literals": {name: w.literal(module, name) for name, module in LITERALS.items()},
        "sleep_levels": sorted(int(x) for x in re.findall(r"Level (\d+):", sleep_doc)),
        "wake_up_tags": tags,
        "docs": {"LLM.sleep": sleep_doc, "LLM.wake_up": wake_doc},
        "engine_path": path,
        "load_weights": models,
        "outputs": outputs,
    }


# ----------------------------------------------------------------------------- groupo's calls
def _kwnames(call: ast.Call, fn) -> list:
    """Keyword names of a call, with ``**name`` resolved through ``name = dict(...)`` in ``fn``."""
    out = []
    for k in call.keywords:
        if k.arg is not None:
            out.append((k.arg, k.value))
        elif isinstance(k.value, ast.Name):
            for n in ast.walk(fn):
                if (isinstance(n, ast.Assign) and any(getattr(t, "id", None) == k.value.id for t in n.targets)
                        and isinstance(n.value, ast.Call) and getattr(n.value.func, "id", None) == "dict"):
                    out += [(kk.arg, kk.value) for kk in n.value.keywords]
    return out


def _target(func) -> str | None:
    """What a call calls, in the API's terms: LLM, SamplingParams, LLM.<method>, model.load_weights."""
    recv = ast.unparse(func.value) if isinstance(func, ast.Attribute) else None
    if recv is None:
        return None
    if func.attr in ("LLM", "SamplingParams") and recv in ("vllm", "self.vllm"):
        return func.attr
    if recv == "self.llm":
        return f"LLM.{func.attr}"
    if func.attr == "load_weights":
        return "model.load_weights"
    return None


def _functions(tree) -> list:
    """[(qualified name, function node)] for module-level functions and methods."""
    scopes = [("", tree.body)] + [(c.name + ".", c.body) for c in tree.body if isinstance(c, ast.ClassDef)]
    return [(prefix + n.name, n) for prefix, body in scopes for n in body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _strings(node) -> list:
    return [e.value for n in ast.walk(node) if isinstance(n, (ast.List, ast.Tuple)) for e in n.elts
            if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def groupo_uses(path: Path = GLUE) -> list:
    """[(line, what, name, value)]: every call, keyword, attribute and literal value the glue uses
    on vLLM objects. ``what``: call, kw, npos, attr, value, tag, level, output, prompt_key, and
    missing (a function or variable this checker looks for is gone: update HOLDERS)."""
    tree = ast.parse(path.read_text())
    funcs = dict(_functions(tree))
    uses = [(1, "missing", q, None) for q in (*HOLDERS, "VLLMEngine._driver_model") if q not in funcs]
    for qual, fn in funcs.items():
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and (t := _target(node.func)):
                uses += [(node.lineno, "call", t, None), (node.lineno, "npos", t, len(node.args))]
                for name, value in _kwnames(node, fn):
                    uses.append((node.lineno, "kw", t, name))
                    if t == "LLM" and name in VALUE_OF and isinstance(value, ast.Constant):
                        uses.append((node.lineno, "value", name, value.value))
                    if t == "LLM.sleep" and name == "level" and isinstance(value, ast.Constant):
                        uses.append((node.lineno, "level", "level", value.value))
                if t == "LLM.generate" and node.args:
                    uses += [(node.lineno, "prompt_key", "TokensPrompt", k.value) for d in ast.walk(node.args[0])
                             if isinstance(d, ast.Dict) for k in d.keys if isinstance(k, ast.Constant)]
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "wake_up":
                uses += [(node.lineno, "tag", "wake_up", v) for a in node.args + [k.value for k in node.keywords]
                         for v in _strings(a)]
            if qual == "VLLMEngine._driver_model":    # the attribute path to the engine's model
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" \
                        and isinstance(node.args[1], ast.Constant):
                    uses.append((node.lineno, "attr", "engine_path", node.args[1].value))
                if isinstance(node, ast.Attribute) and ast.unparse(node.value) != "self":
                    uses.append((node.lineno, "attr", "engine_path", node.attr))
        if qual == "VLLMEngine.wake_up":              # the tags it wakes by default, and their order
            uses += [(fn.lineno, "tag", "wake_up", v) for v in _strings(fn)]
        for var, cls in HOLDERS.get(qual, {}).items():
            seen = [(n.lineno, n.attr) for n in ast.walk(fn) if isinstance(n, ast.Attribute)
                    and isinstance(n.value, ast.Name) and n.value.id == var]
            seen += [(n.lineno, n.args[1].value) for n in ast.walk(fn) if isinstance(n, ast.Call)
                     and getattr(n.func, "id", None) == "getattr" and getattr(n.args[0], "id", None) == var
                     and isinstance(n.args[1], ast.Constant)]
            uses += [(line, "output", cls, attr) for line, attr in seen] or [(fn.lineno, "missing", f"{var} in {qual}",
                                                                                None)]
    for node in ast.walk(tree):                   # value lists: the component's dtype / sleep_level choices
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                node.target.id in ("dtype", "sleep_level") and "Literal" in ast.unparse(node.annotation):
            vals = [c.value for c in ast.walk(node.annotation) if isinstance(c, ast.Constant)]
            kind = "value" if node.target.id == "dtype" else "level"
            uses += [(node.lineno, kind, node.target.id, v) for v in vals]
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_DTYPES" for t in node.targets):
            uses += [(node.lineno, "value", "dtype", v.value) for v in node.value.values]
    return uses


def documented_engine_args(root: Path = ROOT) -> list:
    """[(file:line, key)] for every ``engine_args={...}`` / ``engine_args: {...}`` example."""
    files = [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted((root / "groupo").rglob("*.py")),
             *sorted((root / "groupo" / "recipes").glob("*.yaml")), *sorted((root / "tests").glob("test_*.py"))]
    out = []
    for f in files:
        for i, line in enumerate(f.read_text().splitlines(), 1):
            for m in re.finditer(r"engine_args[=:]\s*\{([^}]*)\}", line):
                out += [(f"{f.relative_to(root)}:{i}", k) for k in re.findall(r"(\w+)\s*:", m.group(1))]
    return out


def compare(api: dict, uses: list, doc_keys: list = (), glue: str = "groupo/rollout/vllm.py") -> list:
    """One line per use that the recorded API does not have (empty: all match)."""
    llm = api["LLM"]
    engine_kw = {p[0] for p in llm["__init__"] if p[1] != "var_keyword"} | set(api["EngineArgs"])
    path = {p["attr"] for p in api["engine_path"] if p["present"]}
    bad = []

    def names(t):
        if t == "LLM":
            return engine_kw
        if t == "SamplingParams":
            return set(api["SamplingParams"])
        if t == "model.load_weights":
            return {p[0] for fn in api["load_weights"].values() if fn for p in fn}
        return {p[0] for p in llm.get(t.split(".", 1)[1]) or [] if p[1] != "var_keyword"}

    for line, what, t, v in uses:
        where = f"{glue}:{line}"
        if what == "missing":
            bad.append(f"{where}: no {t} in the glue: update HOLDERS in scripts/check_vllm.py")
        elif what == "call" and t.startswith("LLM.") and not llm.get(t[4:]):
            bad.append(f"{where}: vllm.LLM has no method {t[4:]!r}")
        elif what == "call" and t == "model.load_weights" and not all(api["load_weights"].values()):
            bad.append(f"{where}: load_weights missing on {[k for k, f in api['load_weights'].items() if not f]}")
        elif what == "kw" and v not in names(t):
            bad.append(f"{where}: {t}() has no keyword {v!r}")
        elif what == "npos":
            fn = llm.get(t[4:]) if t.startswith("LLM.") else None
            npos = sum(p[1] == "positional" for p in fn) if fn else None
            if npos is not None and v > npos:
                bad.append(f"{where}: {t}() takes {npos} positional arguments, groupo passes {v}")
        elif what == "value" and v not in api["literals"][VALUE_OF[t]]:
            bad.append(f"{where}: {t}={v!r} is not one of {api['literals'][VALUE_OF[t]]}")
        elif what == "level" and v not in api["sleep_levels"]:
            bad.append(f"{where}: sleep level {v!r} is not one of {api['sleep_levels']}")
        elif what == "tag" and v not in api["wake_up_tags"]:
            bad.append(f"{where}: wake_up tag {v!r} is not one of {api['wake_up_tags']}")
        elif what == "attr" and v not in path and v not in api["LLM_attrs"]:
            bad.append(f"{where}: the engine path has no attribute {v!r} (recorded: {sorted(path)})")
        elif what in ("output", "prompt_key") and v not in api["outputs"][t]:
            bad.append(f"{where}: {t} has no field {v!r}")
    for where, key in doc_keys:
        if key not in engine_kw:
            bad.append(f"{where}: engine_args key {key!r} is not a vllm.LLM / EngineArgs argument")
    return bad


def diff(old: dict, new: dict) -> list:
    """What changed between two recorded APIs, one line per key (the wheel's name and hash aside)."""
    def items(x):
        if isinstance(x, dict):           # one item per list element: a changed parameter shows alone
            return {f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, vs in x.items()
                    for v in (vs if isinstance(vs, list) else [vs])}
        return {v if isinstance(v, str) else json.dumps(v) for v in x} if isinstance(x, list) else {repr(x)}
    return [f"{k}: removed {sorted(items(old.get(k)) - items(new.get(k)))[:8]}, "
            f"added {sorted(items(new.get(k)) - items(old.get(k)))[:8]}"
            for k in sorted(set(old) | set(new)) if k not in ("sha256", "wheel") and old.get(k) != new.get(k)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheel", type=Path, help="a vllm wheel (pip download vllm==X --no-deps)")
    p.add_argument("--api", type=Path, default=API_JSON, help="the recorded API (default tests/vllm_api.json)")
    p.add_argument("--write", action="store_true", help="record the wheel's API into --api")
    p.add_argument("--pinned", action="store_true", help="print the recorded vLLM version and exit")
    p.add_argument("--glue", type=Path, default=GLUE, help="the module to check (default groupo/rollout/vllm.py)")
    a = p.parse_args(argv)
    recorded = json.loads(a.api.read_text()) if a.api.exists() else None
    if a.pinned:
        print(recorded["vllm"])
        return 0
    rc = 0
    if a.wheel:
        api = extract(a.wheel)
        print(f"check_vllm: {api['wheel']} sha256 {api['sha256']}; requires {'; '.join(api['requires'])}")
        if a.write:
            a.api.write_text(json.dumps(api, indent=1, sort_keys=False) + "\n")
            print(f"check_vllm: recorded the API of vllm {api['vllm']} in {a.api}")
        elif recorded is None or diff(recorded, api):
            print(f"check_vllm: FAIL: vllm {api['vllm']}'s API differs from {a.api} (vllm "
                  f"{(recorded or {}).get('vllm')}); rerun with --write to record it:", *diff(recorded or {}, api),
                  sep="\n  ")
            rc = 1
        else:
            print(f"check_vllm: the wheel's API equals {a.api}")
    elif recorded is None:
        p.error(f"no {a.api}: pass --wheel")
    else:
        api = recorded
    uses, keys = groupo_uses(a.glue), documented_engine_args()
    bad = compare(api, uses, keys, str(a.glue.relative_to(ROOT)) if a.glue.is_relative_to(ROOT) else str(a.glue))
    if bad:
        print(f"check_vllm: FAIL: {len(bad)} of groupo's vLLM uses are not in vllm {api['vllm']}:", *bad, sep="\n  ")
        return 1
    print(f"check_vllm: OK: {len(uses)} uses in {a.glue.name} and {len(keys)} documented engine_args keys match "
          f"vllm {api['vllm']}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
