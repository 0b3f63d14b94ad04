"""Tracking services named in ``log.report_to``: wandb, trackio and mlflow.

TensorBoard stays ``log.tensorboard``'s (event files in RUN/tb); ``tensorboard`` in report_to
turns it on too, so ``report_to`` only ever adds. Each service's package is imported only when
report_to names it (extras ``groupo[wandb]``, ``groupo[trackio]``, ``groupo[mlflow]``); ``check``
stops the run with one line before the model loads when one is not installed. Rank 0 starts one
run per service, named after the run (``name``) in project ``log.project``, with the resolved
configuration (config.yaml's content) as its config; each step logs the numeric metrics at that
step, and the run is finished at the end of training or on Ctrl-C (wandb exit code 1, mlflow
status KILLED). Where the service keeps its data is its own setting (``WANDB_MODE``,
``WANDB_DIR``, default the run directory; ``TRACKIO_DIR``; ``MLFLOW_TRACKING_URI``).
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re

from ..config.recipes import ConfigError
from ..config.resume import flatten

SERVICES = ("wandb", "trackio", "mlflow")      # tensorboard is log.tensorboard's


def check(report_to) -> None:
    """A one-line ``ConfigError`` when a service named in ``report_to`` is not installed."""
    missing = [s for s in dict.fromkeys(report_to) if s in SERVICES and importlib.util.find_spec(s) is None]
    if missing:
        raise ConfigError(_missing(missing))


def _missing(names) -> str:
    extras = ",".join(names)
    return f"log.report_to: {', '.join(names)} not installed; pip install 'groupo[{extras}]' (or drop it from log.report_to)"


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(_missing([name])) from None


def start(report_to, project: str, name: str, config: dict, run_dir) -> list:
    """One started tracker per service in ``report_to`` (duplicates and tensorboard skipped)."""
    trackers: list = []
    try:
        for service in [s for s in dict.fromkeys(report_to) if s in SERVICES]:
            trackers.append(_start(service, project, name, config, run_dir))
    except BaseException:
        close(trackers, interrupted=True)        # the ones already started
        raise
    return trackers


def _start(service: str, *args):
    """Start one tracker; its service's error (no server, bad credentials, ...) as one line."""
    try:
        return _TRACKERS[service](*args)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the service's own start-up
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"log.report_to: {service} could not start its run: {first}") from None


def close(trackers, interrupted: bool = False) -> None:
    for t in trackers:
        t.close(interrupted)


def numbers(metrics: dict) -> dict:
    """The finite numbers of a metrics dict (no strings, booleans, None, NaN)."""
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Wandb:
    def __init__(self, project: str, name: str, config: dict, run_dir):
        wandb = _import("wandb")
        self.run = wandb.init(project=project, name=name, config=config,
                              dir=os.environ.get("WANDB_DIR") or str(run_dir))

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(metrics, step=step, commit=True)     # one call per step: written now

    def close(self, interrupted: bool = False) -> None:
        self.run.finish(exit_code=1 if interrupted else 0)


class Trackio:
    def __init__(self, project: str, name: str, config: dict, run_dir):
        self.trackio = _import("trackio")
        self.trackio.init(project=project, name=name, config=config)

    def log(self, step: int, metrics: dict) -> None:
        self.trackio.log(metrics, step=step)

    def close(self, interrupted: bool = False) -> None:
        self.trackio.finish()


class MLflow:
    """MLflow takes flat parameters (``section.key``: text) and metric names of letters, digits
    and ``_-. :/``; other characters become ``_``."""

    def __init__(self, project: str, name: str, config: dict, run_dir):
        self.mlflow = _import("mlflow")
        self.mlflow.set_experiment(project)
        self.mlflow.start_run(run_name=name)
        self.mlflow.log_params({_mlflow_name(k): str(v)[:500] for k, v in flatten(config).items()})

    def log(self, step: int, metrics: dict) -> None:
        self.mlflow.log_metrics({_mlflow_name(k): v for k, v in metrics.items()}, step=step)

    def close(self, interrupted: bool = False) -> None:
        self.mlflow.end_run(status="KILLED" if interrupted else "FINISHED")


def _mlflow_name(key: str) -> str:
    return re.sub(r"[^\w\-. :/]", "_", key)


_TRACKERS = {"wandb": Wandb, "trackio": Trackio, "mlflow": MLflow}
