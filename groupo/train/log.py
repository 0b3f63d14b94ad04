"""Metrics logging: ``metrics.jsonl`` (one JSON object per step, with ``step``),
TensorBoard event files, a rich progress bar and a short per-step line.
Components never print; they return metrics that are named here."""
from __future__ import annotations

import json
import math
from pathlib import Path


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_step: int | None = None, console=None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.console = console
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._fh = self.path.open("a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)
            except ImportError:  # tensorboard is a dependency, but keep training without it
                self._tb = None

    def _truncate(self, step: int) -> None:
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if row.get("step", 0) <= step:
                keep.append(line)
        self.path.write_text("".join(l + "\n" for l in keep))

    def log(self, step: int, metrics: dict) -> None:
        row = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        self._fh.close()
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
    """Where each step's metrics go: metrics.jsonl and TensorBoard (rank 0 only), the progress bar
    and a short console line every ``log.line_every`` steps."""

    def __init__(self, run, progress=None):
        cfg = run.cfg
        self.metrics = MetricsLogger(run.run_dir, cfg.log.tensorboard,
                                     resume_step=run.start if run.resumed else None) if run.main else None
        self.progress = progress if run.main else None
        self.say, self.every, self.total = run.say, cfg.log.line_every, cfg.train.steps
        if self.progress:
            self.progress.start_train(self.total, run.start)

    def log(self, step: int, m: dict) -> None:
        if self.metrics:
            self.metrics.log(step, m)
        if self.progress:
            self.progress.step(step, m)
        if self.every and step % self.every == 0:
            self.say(step_line(step, self.total, m))

    def close(self) -> None:
        if self.metrics:
            self.metrics.close()
            self.metrics = None
        if self.progress:
            self.progress.stop()
            self.progress = None
