"""``groupo claims CLAIMS.yaml``: the seed papers' claims tested on one base model, with seeds,
intervals and verdicts.

A claims file::

    name: claims
    base: proving                  # recipe of the shared setup (model, task, budget, evaluation)
    seeds: [0, 1, 2]
    overrides: [train.steps=150]   # every cell
    claims:
      - id: clip_higher_entropy
        claim: clip-higher keeps policy entropy higher than symmetric clipping
        paper: "2503.14476"
        metric: entropy/mean@last20         # see ``value``
        arms:                               # a > b is the claim ("expect": a>b or a<b)
          a: {recipe: grpo, overrides: [objective.eps_high=0.28]}
          b: {recipe: grpo}
        expect: a>b

Arms are study cells (``eval/study.py``: the base setup, then what the recipe sets that differs
from ``grpo``, then the overrides), keyed by their settings, so an arm shared by several claims
(a plain GRPO run, say) is trained once per seed. Per claim: each arm's mean over seeds with a 95%
t-interval, and the per-seed paired difference a - b (same seed: same base model, same prompt
draws) with its 95% t-interval. Verdict: ``holds`` when the difference's interval excludes 0 in
the claimed direction, ``does not hold`` when it excludes 0 the other way, else ``inconclusive``
(with the seed-to-seed spread, so the reader sees why). Each cell's compute (wall time, tokens
generated and trained) is recorded next to its value.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import ConfigError

# two-sided 95% t quantiles for 1..10 degrees of freedom (a normal 1.96 beyond)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


@dataclass
class Arm:
    recipe: str
    overrides: list = field(default_factory=list)

    @property
    def key(self) -> str:
        text = json.dumps({"recipe": self.recipe, "overrides": self.overrides}, sort_keys=True)
        return f"{self.recipe}-{hashlib.blake2b(text.encode(), digest_size=4).hexdigest()}"


@dataclass
class Claim:
    id: str
    claim: str
    paper: str
    metric: str
    arms: dict
    expect: str = "a>b"
    note: str = ""


def load_claims(path: str | Path) -> tuple[dict, list[Claim]]:
    """(the file's setup keys, the claims); one-line ConfigError for a malformed file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the claims file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'claims' list")
    claims = []
    for i, c in enumerate(data["claims"]):
        where = f"{path}: claims[{i}]"
        if not isinstance(c, dict) or not {"id", "claim", "metric", "arms"} <= set(c):
            raise ConfigError(f"{where}: needs id, claim, metric and arms")
        arms = c["arms"]
        if not isinstance(arms, dict) or set(arms) != {"a", "b"}:
            raise ConfigError(f"{where}: arms must be {{a: ..., b: ...}}")
        if c.get("expect", "a>b") not in ("a>b", "a<b"):
            raise ConfigError(f"{where}: expect must be a>b or a<b")
        built = {k: Arm(str(v.get("recipe", "grpo")), [str(x) for x in v.get("overrides", [])])
                 for k, v in arms.items()}
        claims.append(Claim(str(c["id"]), str(c["claim"]), str(c.get("paper", "")), str(c["metric"]), built,
                            c.get("expect", "a>b"), str(c.get("note", ""))))
    return data, claims


def value(run_dir: Path, metric: str) -> float | None:
    """A cell's number: ``eval.after.accuracy``, ``eval.after.per_group.L=6.accuracy``,
    ``eval.after.pass@k.64`` (a path into eval.json), or ``NAME@lastK`` (the mean of training
    metric NAME over the last K logged steps), or ``NAME@all`` (over every step)."""
    if metric.startswith("eval."):
        node = json.loads((run_dir / "eval.json").read_text())
        for part in metric[len("eval."):].split("."):   # group labels hold no dots (L=6, n=4)
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return float(node) if isinstance(node, (int, float)) else None
    name, _, window = metric.partition("@")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    vals = [r[name] for r in rows if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
    if window.startswith("last"):
        vals = vals[-int(window[4:]):]
    return sum(vals) / len(vals) if vals else None


def interval(xs: list[float]) -> tuple | None:
    """(mean, low, high) with a 95% t-interval; None without values; low = high = None for one."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    m = sum(xs) / len(xs)
    if len(xs) == 1:
        return m, None, None              # one seed: no interval, so no verdict
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    half = T95.get(len(xs) - 1, 1.96) * sd / math.sqrt(len(xs))
    return m, m - half, m + half


def verdict(diff: tuple | None, expect: str) -> tuple[str, str]:
    """(verdict, why) from the interval of the paired difference a - b."""
    if diff is None:
        return "inconclusive", "no values"
    m, lo, hi = diff
    if lo is None:
        return "inconclusive", "one seed: no interval"
    sign = 1 if expect == "a>b" else -1
    if sign * lo > 0 and sign * hi > 0:
        return "holds", f"the 95% interval of a - b [{lo:+.4g}, {hi:+.4g}] excludes 0"
    if sign * lo < 0 and sign * hi < 0:
        return "does not hold", f"the 95% interval of a - b [{lo:+.4g}, {hi:+.4g}] is on the other side of 0"
    return "inconclusive", f"the 95% interval of a - b [{lo:+.4g}, {hi:+.4g}] contains 0"


def cells(setup: dict, claims: list[Claim]):
    """The study (eval/study.py) that trains every arm once per seed."""
    from .study import Cell, Study

    seeds = [int(s) for s in setup.get("seeds", [0, 1, 2])]
    arms = {arm.key: arm for c in claims for arm in c.arms.values()}
    study_cells = [Cell(key, arm.recipe, s, None, list(arm.overrides)) for key, arm in arms.items() for s in seeds]
    return Study(str(setup.get("name", "claims")), str(setup.get("base", "grpo")), study_cells,
                 [str(x) for x in setup.get("overrides", [])], False, str(setup.get("description", "")),
                 raw=setup), seeds


def run_claims(path: str | Path, out: Path, console=None, only: list | None = None, report: bool = True) -> dict:
    """Train every arm x seed not finished yet (resumable), then summarise (``summarize``) unless
    ``report`` is false (a ``--jobs`` worker)."""
    from .study import cell_config, run_study

    setup, claims = load_claims(path)
    if only:
        claims = [c for c in claims if c.id in only]
    study, seeds = cells(setup, claims)
    for cell in study.cells:                         # every cell's config valid before anything trains
        cell_config(study, cell, init_dir=None)
    run_study(study, out, console)
    if not report:
        return {}
    return summarize(claims, seeds, out, title=f"Claims: {setup.get('name', 'claims')}")


def _compute(run_dir: Path) -> dict:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()] \
        if (run_dir / "metrics.jsonl").exists() else []
    ev = json.loads((run_dir / "eval.json").read_text()) if (run_dir / "eval.json").exists() else {}
    return {"train_s": round(sum(r.get("time/step", 0.0) for r in rows), 1), "steps": len(rows),
            "tokens_generated": int(sum(r.get("tokens/generated", 0) for r in rows)),
            "warmstart_steps": (ev.get("warmstart") or {}).get("steps", 0),
            "warmstart_s": (ev.get("warmstart") or {}).get("seconds")}


def summarize(claims: list[Claim], seeds: list[int], out: Path, title: str = "Claims") -> dict:
    """summary.json, claims.md, the plots and report.html under ``out`` from the finished cells."""
    from .study import _done

    result = []
    for c in claims:
        per_arm, compute = {}, {}
        for name, arm in c.arms.items():
            runs = [out / "runs" / arm.key / f"seed_{s}" for s in seeds]
            per_arm[name] = [value(r, c.metric) if _done(r) else None for r in runs]
            compute[name] = [_compute(r) for r in runs if _done(r)]
        pairs = [a - b for a, b in zip(per_arm["a"], per_arm["b"]) if a is not None and b is not None]
        diff = interval(pairs)
        v, why = verdict(diff, c.expect) if len(pairs) >= 2 else ("inconclusive", f"{len(pairs)} paired seeds")
        result.append({"id": c.id, "claim": c.claim, "paper": c.paper, "metric": c.metric, "expect": c.expect,
                       "arms": {k: {"recipe": a.recipe, "overrides": a.overrides, "key": a.key,
                                    "values": per_arm[k], "interval": interval(per_arm[k]), "compute": compute[k]}
                                for k, a in c.arms.items()},
                       "difference": {"values": pairs, "interval": diff}, "verdict": v, "why": why, "note": c.note})
    summary = {"seeds": seeds, "claims": result}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    from .claims_report import write_report

    (out / "claims.md").write_text(write_report(summary, markdown(summary), out, title=title))
    return summary


def _fmt(iv) -> str:
    if iv is None:
        return "-"
    m, lo, hi = iv
    return f"{m:.3f} (1 seed)" if lo is None else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(summary: dict) -> str:
    """The claims table: claim | paper | metric | a, b and a - b (mean [95% interval]) | verdict."""
    lines = ["| claim | paper (arXiv) | metric | a | b | a - b | verdict |", "|---|---|---|---|---|---|---|"]
    for c in summary["claims"]:
        a, b = c["arms"]["a"], c["arms"]["b"]
        lines.append(f"| {c['claim']} ({c['id']}) | {c['paper']} | {c['metric']} | {_fmt(a['interval'])} | "
                     f"{_fmt(b['interval'])} | {_fmt(c['difference']['interval'])} | **{c['verdict']}**: "
                     f"{c['why']} |")
    lines += ["", f"Seeds: {', '.join(map(str, summary['seeds']))}; intervals are 95% t-intervals over seeds "
                  f"(a - b paired by seed). Arms' settings, per-seed values and compute: summary.json."]
    return "\n".join(lines) + "\n"
