"""Fault injection for the reliability tests (docs/reliability.md): ``GROUPO_FAULT=PHASE@STEP``
makes the training process hurt itself at one point, so tests can show that a run
survives it. Phases:

* ``gen``   kill -9 while generating step STEP's rollouts
* ``opt``   kill -9 right after step STEP's optimizer update (weights mid-step)
* ``int_opt``  SIGINT (Ctrl-C) to itself right after step STEP's optimizer update
* ``ckpt``  kill -9 while checkpoint STEP is being written (model files written, not renamed)
* ``nan_grad`` / ``nan_loss``  NaN gradients / loss at step STEP (``@*`` = every step)

Unset (the normal case) it costs one dictionary lookup per call.
"""
from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("GROUPO_FAULT", "")


def active(phase: str, step: int) -> bool:
    if not _SPEC:
        return False
    for part in _SPEC.split(","):
        name, _, at = part.partition("@")
        if name == phase and (at == "*" or at == str(step)):
            return True
    return False


def kill_if(phase: str, step: int) -> None:
    """SIGKILL this process when the fault ``phase@step`` is requested (no cleanup runs)."""
    if active(phase, step):
        os.kill(os.getpid(), signal.SIGKILL)


def interrupt_if(phase: str, step: int) -> None:
    """Send this process SIGINT (a Ctrl-C) when the fault ``phase@step`` is requested."""
    if active(phase, step):
        os.kill(os.getpid(), signal.SIGINT)
