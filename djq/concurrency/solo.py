"""``solo``: run each task in the worker's main thread, one at a time.

No parallelism; both time limits work (SIGALRM in the main thread): the soft limit raises
SoftTimeLimitExceeded in the task, the hard limit stops it and it ends FAILURE.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Any, Iterator

from ..exceptions import SoftTimeLimitExceeded
from ..worker.trace import HardTimeLimit
from .base import BasePool, Callback, Job


@contextmanager
def alarm_limits(soft: float | None, hard: float | None) -> Iterator[None]:
    """SIGALRM at the soft limit (SoftTimeLimitExceeded), then at the hard one (HardTimeLimit)."""
    if not soft and not hard:
        yield
        return
    soft_pending = bool(soft)

    def on_alarm(signum: int, frame: Any) -> None:
        nonlocal soft_pending
        if soft_pending:
            soft_pending = False
            if hard and soft:
                signal.setitimer(signal.ITIMER_REAL, hard - soft)
            raise SoftTimeLimitExceeded(f"soft time limit ({soft}s) exceeded")
        raise HardTimeLimit()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, soft or hard or 0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class SoloPool(BasePool):
    name = "solo"
    parallel = False
    supports_soft_time_limit = True
    supports_hard_time_limit = True
    platforms = "Unix (time limits use SIGALRM)"

    def __init__(self, concurrency: int = 1, **options: Any) -> None:
        super().__init__(1, **options)

    def apply_async(self, job: Job, arg: Any, callback: Callback, *,
                    soft_time_limit: float | None = None, time_limit: float | None = None) -> None:
        self._started()
        try:
            result = job(arg, alarm_limits)
        finally:
            self._finished()
        callback(arg, result)
