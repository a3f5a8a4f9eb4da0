"""The pool contract: run a job with its argument somewhere, and report back.

A pool knows nothing of kombu or of Django models. It declares what it can do with
class-level flags; the worker checks them once at start-up (see ``unsupported``), and
docs/pools.md shows the same table.
"""
from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable

Job = Callable[..., Any]
Callback = Callable[[Any, Any], None]
#: ``limiter(soft, hard)`` -> a context manager enforcing time limits around a task body
Limiter = Callable[[float | None, float | None], AbstractContextManager[Any]]


def no_limits(soft: float | None, hard: float | None) -> AbstractContextManager[Any]:
    return nullcontext()


class BasePool:
    #: name used with -P
    name = "base"
    #: tasks really overlap in time (threads/processes/greenlets)
    parallel = True
    #: SoftTimeLimitExceeded is raised inside a task that runs too long
    supports_soft_time_limit = False
    #: a task that runs past its hard limit is stopped
    supports_hard_time_limit = False
    #: the pool can grow and shrink while running (--autoscale, pool_grow/pool_shrink)
    supports_autoscale = False
    #: --max-tasks-per-child / --max-memory-per-child replace worn child processes
    supports_recycling = False
    #: where it runs
    platforms = "all"

    def __init__(self, concurrency: int, *, max_tasks_per_child: int | None = None,
                 max_memory_per_child: int | None = None) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child
        self._active = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    @classmethod
    def unsupported(cls, *, soft: bool = False, hard: bool = False, autoscale: bool = False,
                    recycling: bool = False) -> list[str]:
        """The requested features this pool cannot provide (for start-up warnings)."""
        wanted = {
            "soft time limits": (soft, cls.supports_soft_time_limit),
            "hard time limits": (hard, cls.supports_hard_time_limit),
            "autoscale": (autoscale, cls.supports_autoscale),
            "child recycling (--max-tasks-per-child/--max-memory-per-child)": (recycling, cls.supports_recycling),
        }
        return [name for name, (asked, can) in wanted.items() if asked and not can]

    def start(self) -> None:
        """Create threads/processes. Called once by the worker."""

    #: a running job can be stopped from outside (revoke with terminate=True)
    supports_terminate_job = False

    def apply_async(self, job: Job, arg: Any, callback: Callback, *,
                    soft_time_limit: float | None = None, time_limit: float | None = None) -> Any:
        """Run ``job(arg, limiter)``; then call ``callback(arg, outcome)`` from the pool.

        May return a handle for ``terminate_job``."""
        raise NotImplementedError

    def terminate_job(self, handle: Any, signum: int) -> bool:
        """Stop the running job ``handle`` with ``signum``; False when this pool cannot."""
        return False

    # -- accounting shared by the pools ---------------------------------------------
    def _started(self) -> None:
        with self._lock:
            self._active += 1

    def _finished(self) -> None:
        with self._lock:
            self._active -= 1
            if not self._active:
                self._idle.notify_all()

    def _wait_idle(self, timeout: float | None) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: not self._active, timeout)

    def free_slots(self) -> int:
        """How many more jobs would start at once right now."""
        return self.concurrency - self._active

    def ahead_slots(self) -> int:
        """How many more jobs the pool would take beyond ``free_slots``, to start each as
        soon as a running one ends (prefork: the supervisor gives a child that reports an
        end its next job at once, with no turn of the consumer in between)."""
        return 0

    def active(self) -> int:
        return self._active

    def stop(self, timeout: float | None = None) -> bool:
        """Warm stop: let running jobs finish; True if all did within ``timeout``."""
        return self._wait_idle(timeout)

    def terminate(self) -> None:
        """Cold stop: do not wait for running jobs."""
        self.stop(timeout=0)

    # -- control hooks (remote control, autoscale) ------------------------------------
    def grow(self, n: int = 1) -> None:
        raise NotImplementedError(f"the {self.name} pool cannot grow")

    def shrink(self, n: int = 1) -> None:
        raise NotImplementedError(f"the {self.name} pool cannot shrink")

    def restart(self) -> None:
        raise NotImplementedError(f"the {self.name} pool cannot restart")

    def info(self) -> dict[str, Any]:
        return {"pool": self.name, "concurrency": self.concurrency, "active": self.active()}
