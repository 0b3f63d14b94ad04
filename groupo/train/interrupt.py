"""Ctrl-C held during the critical part of a training step.

From the optimizer update of step k until step k is logged, the weights are mid-step: a
checkpoint written then would not match any step, so an interrupt there used to end the run
without saving (losing up to ``checkpoint.every`` steps). ``InterruptHold`` keeps SIGINT
pending over that window and raises it once the step is logged, so Ctrl-C always saves the
last finished step. A second Ctrl-C while one is pending interrupts at once (no save), for a
user who does not want to wait. Only the main thread can install signal handlers; elsewhere,
or when SIGINT is ignored (a background job), nothing is held.

With several processes (torchrun) the hold covers the whole step and the ranks agree at the end
of it whether anyone was interrupted (train/loop.py), so all stop at the same point and save
together: an interrupt never lands inside a collective. A terminal's Ctrl-C reaches every process
of the job and torchrun forwards it once more, so a second SIGINT within ``DUPLICATE_S`` seconds
is the same press, not a second one.
"""
from __future__ import annotations

import signal
import sys
import threading
import time

DUPLICATE_S = 2.0


class InterruptHold:
    def __init__(self):
        self._old = None
        self._pending = False
        self._at = 0.0

    def start(self) -> None:
        if self._old is not None or threading.current_thread() is not threading.main_thread():
            return
        old = signal.getsignal(signal.SIGINT)
        if old in (signal.SIG_IGN, None):
            return
        self._pending = False
        self._old = old
        signal.signal(signal.SIGINT, self._hold)

    def _hold(self, signum, frame):
        if self._pending and time.monotonic() - self._at < DUPLICATE_S:
            return                              # the same Ctrl-C, delivered again (torchrun forwards it)
        if self._pending:                       # pressed twice: stop now
            self.release(raise_pending=False)
            raise KeyboardInterrupt
        self._pending, self._at = True, time.monotonic()
        print("interrupt received: stopping once this step is saved (Ctrl-C again to stop now)",
              file=sys.stderr, flush=True)

    def release(self, raise_pending: bool = True) -> bool:
        """Put the previous SIGINT handler back; raise KeyboardInterrupt if one came meanwhile (or,
        with ``raise_pending=False``, return whether one came)."""
        if self._old is None:
            return False
        signal.signal(signal.SIGINT, self._old)
        self._old = None
        pending, self._pending = self._pending, False
        if pending and raise_pending:
            raise KeyboardInterrupt
        return pending
