"""Preemption: SIGTERM (a preempted pod, `kill`, Prefect cancelling a run) stops pretraining cleanly.

The loop asks `TermSignal.received` after every update; when set, it saves a checkpoint and raises
`Preempted`, so `--resume` continues from the last finished update instead of the last periodic
checkpoint.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from d2v.errors import D2VError


class Preempted(D2VError):
    """SIGTERM stopped pretraining; the checkpoint of the last finished step is saved."""


class TermSignal:
    """While active, SIGTERM (a preempted pod, `kill`, Prefect cancelling) only sets `received`: the
    loop finishes its step, saves and stops. Outside the main thread signals cannot be caught, and
    the default (die at once; resume from the last periodic checkpoint) stays."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def __enter__(self) -> "TermSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
