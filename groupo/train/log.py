"""Step logging: ``metrics.jsonl`` (one JSON object per step, with ``step``), TensorBoard event
files and the ``log.report_to`` services (train/tracking.py), a sample of completions in
``completions.jsonl`` (train/completions.py), a rich progress bar, a short per-step line and a
warning for steps that train no row (train/no_signal.py). Components never print; they return
metrics that are named here."""
from __future__ import annotations

import json
import math
from pathlib import Path

from . import tracking
from .completions import completion_rows, due
from .no_signal import NoSignalWarning


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class JsonlFile:
    """An append-only JSON-lines file of rows with a ``step``: a new run starts it empty, a
    resumed run keeps its rows up to the resumed step (a line cut by a crash is dropped). The
    file is created at the first write."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path, self._fh = Path(path), None
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()

    def _truncate(self, step: int) -> None:
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if row.get("step", 0) <= step:
                keep.append(line)
        self.path.write_text("".join(l + "\n" for l in keep), encoding="utf-8")

    def write(self, rows: list[dict]) -> None:
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write("".join(json.dumps(r) + "\n" for r in rows))
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class MetricsLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_step: int | None = None, console=None):
        self.file = JsonlFile(Path(run_dir) / "metrics.jsonl", resume_step)
        self.console = console
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)
            except ImportError:  # tensorboard is a dependency, but keep training without it
                self._tb = None

    def log(self, step: int, metrics: dict) -> None:
        self.file.write([{"step": step, **{k: _clean(v) for k, v in metrics.items()}}])
        if self._tb is not None:
            for k, v in tracking.numbers(metrics).items():
                self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        self.file.close()
        if self._tb is not None:
            self._tb.close()


def step_line(step: int, total: int, m: dict) -> str:
    parts = [f"step {step}/{total}"]
    for key, label, fmt in (("reward/mean", "reward", ".3f"), ("acc/mean", "acc", ".3f"),
                            ("eval/accuracy", "eval", ".3f"), ("kl/mean", "kl", ".4f"),
                            ("entropy/mean", "ent", ".3f"), ("len/mean", "len", ".1f"),
                            ("zero_var/frac", "zero-var", ".2f"), ("time/step", "s", ".2f")):
        v = m.get(key)
        if isinstance(v, (int, float)):
            parts.append(f"{label} {v:{fmt}}")
    return " | ".join(parts)


class RichProgress:
    """A rich progress bar for the warm start and the RL steps, with the latest metrics."""

    def __init__(self, console, warm_steps: int = 0):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                           console=console, transient=False)
        self._warm = self._p.add_task("warm start", total=warm_steps, info="", visible=warm_steps > 0)
        self._train = None
        self._p.start()

    def warm(self, step: int, info: dict) -> None:
        self._p.update(self._warm, completed=step, info=f"loss {info.get('loss', 0):.3f}")

    def start_train(self, total: int, start: int) -> None:
        self._train = self._p.add_task("GRPO", total=total, completed=start, info="")

    def step(self, step: int, m: dict) -> None:
        info = " ".join(f"{k.split('/')[0]} {m[k]:.3f}" for k in ("reward/mean", "acc/mean") if isinstance(m.get(k), float))
        self._p.update(self._train, completed=step, info=info)

    def stop(self) -> None:
        self._p.stop()


class StepLog:
    """Where each step goes: metrics.jsonl, TensorBoard and the report_to services, the sample of
    completions (files and services: rank 0 only), the progress bar, a short console line every
    ``log.line_every`` steps and the no-row-trained warning."""

    def __init__(self, run, progress=None):
        cfg, lc = run.cfg, run.cfg.log
        resume = run.start if run.resumed else None
        self.lc, self.names = lc, list(cfg.rewards.names)
        self.trackers = tracking.start(lc.report_to, lc.project, cfg.name, cfg.raw, run.run_dir) if run.main else []
        self.metrics = MetricsLogger(run.run_dir, lc.tensorboard or "tensorboard" in lc.report_to,
                                     resume_step=resume) if run.main else None
        self.completions = JsonlFile(run.run_dir / "completions.jsonl", resume) if run.main else None
        self.progress = progress if run.main else None
        self.say, self.every, self.total = run.say, lc.line_every, cfg.train.steps
        self.warn = NoSignalWarning(run.say, lc.warn_every, cfg.raw["filter"]["name"])
        if self.progress:
            self.progress.start_train(self.total, run.start)

    def log(self, step: int, m: dict, rows=None) -> None:
        """Step ``step``'s metrics ``m`` and its rows (``completions.StepRows``, or None)."""
        if self.metrics:
            self.metrics.log(step, m)
        for t in self.trackers:
            t.log(step, tracking.numbers(m))
        if self.completions and rows is not None and due(step, self.lc.completions_every):
            self.completions.write(completion_rows(step, rows, self.names, self.lc.completions_per_step,
                                                   self.lc.completions_max_chars))
        if self.progress:
            self.progress.step(step, m)
        self.warn(step, m)
        if self.every and step % self.every == 0:
            self.say(step_line(step, self.total, m))

    def close(self, interrupted: bool = False) -> None:
        """Close the files and finish the services' runs (``interrupted``: Ctrl-C); idempotent."""
        tracking.close(self.trackers, interrupted)
        self.trackers = []
        if self.metrics:
            self.metrics.close()
            self.completions.close()
            self.metrics = self.completions = None
        if self.progress:
            self.progress.stop()
            self.progress = None
