"""``prefork``: child processes from billiard; the default pool.

Real parallelism on every core. Both time limits: the soft limit raises
SoftTimeLimitExceeded in the child (SIGUSR1), the hard limit kills the child and a new
one replaces it; the task ends FAILURE with TimeLimitExceeded. Children are recycled
after ``--max-tasks-per-child`` tasks or ``--max-memory-per-child`` KiB. A child that
dies mid-task (OOM, kill -9) never takes the worker down: the task ends FAILURE with
WorkerLostError, or is requeued when it is acks_late with reject_on_worker_lost.
Database connections inherited across fork are dropped in the child, never closed
(closing would break the parent's). On Linux a child dies with its worker, so a worker
killed with -9 leaves no child running its tasks.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from typing import Any

from billiard.exceptions import TimeLimitExceeded as BilliardTimeLimit
from billiard.exceptions import WorkerLostError as BilliardWorkerLost
from billiard.pool import Pool

from .. import states
from ..exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from ..worker import trace
from ..worker.trace import Outcome
from .base import BasePool, Callback, Job

logger = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
_inherited: list[Any] = []
_soft_handler_installed = False


def _die_with_parent(parent: int) -> None:
    """A worker killed with -9 must not leave children running its tasks (Linux)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            logger.warning("prefork: cannot tie children's lives to the worker's (prctl unavailable)")
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def child_init(parent: int) -> None:
    """In a new child: die with the worker; forget its database connections without closing them."""
    from django.db import connections

    _die_with_parent(parent)
    trace.PROCESS_EXIT_ENDS_TASK = True
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _inherited.append(conn.connection)  # keep it referenced: its close would reach the server
            conn.connection = None


def _on_soft_limit(signum: int, frame: Any) -> None:
    raise SoftTimeLimitExceeded("soft time limit exceeded")


def run_in_child(job: Job, arg: Any) -> Any:
    global _soft_handler_installed
    if not _soft_handler_installed:  # billiard installs its own handler after child_init
        signal.signal(signal.SIGUSR1, _on_soft_limit)
        _soft_handler_installed = True
    return job(arg)


def _lost_outcome(error: Any, time_limit: float | None) -> Outcome:
    exc = error
    for _ in range(3):  # billiard wraps it: ExceptionInfo.exception -> ExceptionWithTraceback.exc
        inner = getattr(exc, "exception", None) or getattr(exc, "exc", None)
        if not isinstance(inner, BaseException):
            break
        exc = inner
    if isinstance(exc, BilliardTimeLimit):
        exc = TimeLimitExceeded(f"ran past its hard time limit ({time_limit}s); its process was killed")
    elif isinstance(exc, BilliardWorkerLost):
        exc = WorkerLostError(str(exc))
    return Outcome(states.FAILURE, exc, f"{type(exc).__name__}: {exc}", 0.0, recorded=False)


class PreforkPool(BasePool):
    name = "prefork"
    supports_soft_time_limit = True
    supports_hard_time_limit = True
    supports_autoscale = True
    supports_recycling = True
    supports_terminate_job = True
    platforms = "Unix"

    _pool: Pool

    def __init__(self, concurrency: int, **options: Any) -> None:
        super().__init__(concurrency, **options)

    def start(self) -> None:
        self._pool = Pool(
            processes=self.concurrency,
            initializer=child_init,
            initargs=(os.getpid(),),
            maxtasksperchild=self.max_tasks_per_child,
            max_memory_per_child=self.max_memory_per_child,
            enable_timeouts=True,
            lost_worker_timeout=10.0,
            allow_restart=True,
        )

    def apply_async(self, job: Job, arg: Any, callback: Callback, *,
                    soft_time_limit: float | None = None, time_limit: float | None = None) -> Any:
        def done(outcome: Any) -> None:
            self._finished()
            callback(arg, outcome)

        def failed(error: Any) -> None:
            self._finished()
            callback(arg, _lost_outcome(error, time_limit))

        self._started()
        return self._pool.apply_async(run_in_child, (job, arg), callback=done, error_callback=failed,
                                      soft_timeout=soft_time_limit, timeout=time_limit)

    def terminate_job(self, handle: Any, signum: int) -> bool:
        """Signal the child running ``handle``; the child dies and a new one replaces it."""
        handle.terminate(signum)  # a job not yet in a child is terminated as it starts
        for pid in handle.worker_pids():
            self._pool.terminate_job(pid, signum)
        return True

    def stop(self, timeout: float | None = None) -> bool:
        finished = self._wait_idle(timeout)
        if finished:
            self._pool.close()
            self._pool.join()
        else:
            self._pool.terminate()
        return finished

    def terminate(self) -> None:
        self._pool.terminate()

    def grow(self, n: int = 1) -> None:
        with self._lock:
            self.concurrency += n
            self._pool.grow(n)

    def shrink(self, n: int = 1) -> None:
        """Stop up to ``n`` idle children; a busy child is not stopped under its task."""
        with self._lock:  # held throughout: autoscale and remote control may resize at once
            n = min(n, self.concurrency - 1)
            if n < 1:
                return
            before = self._pool._processes
            try:
                self._pool.shrink(n)
            except ValueError:  # fewer idle children than asked: billiard stopped those it found
                pass
            stopped = before - self._pool._processes
            self.concurrency -= stopped
        if stopped < n:
            logger.info("prefork pool: stopped %d of %d child(ren); the others are busy", stopped, n)

    def restart(self) -> None:
        """Replace every child: each exits once it has run its next task (billiard's restart)."""
        self._pool.restart()

    def pids(self) -> list[int]:
        return [proc.pid for proc in list(self._pool._pool) if proc.pid]

    def info(self) -> dict[str, Any]:
        return {**super().info(), "pids": self.pids()}
