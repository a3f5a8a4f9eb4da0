"""The pool contract: run a callable with its argument somewhere, and report back.

A pool knows nothing of kombu or of Django models. It declares what it can do with
class-level flags; the worker checks them once at start-up.
"""
from __future__ import annotations

from typing import Any, Callable

Job = Callable[[Any], Any]
Callback = Callable[[Any, Any], None]


class BasePool:
    #: name used with -P
    name = "base"
    #: tasks really overlap in time (threads/processes/greenlets)
    parallel = True
    #: SoftTimeLimitExceeded is raised inside a task that runs too long
    supports_soft_time_limit = False
    #: a task that runs past its hard limit is stopped
    supports_hard_time_limit = False
    #: the pool can grow and shrink while running
    supports_autoscale = False

    def __init__(self, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency

    def start(self) -> None:
        """Create threads/processes. Called once by the worker."""

    def apply_async(self, job: Job, arg: Any, callback: Callback) -> None:
        """Run ``job(arg)``; then call ``callback(arg, job's return value)`` from the pool."""
        raise NotImplementedError

    def free_slots(self) -> int:
        """How many more jobs would start at once right now."""
        raise NotImplementedError

    def active(self) -> int:
        raise NotImplementedError

    def stop(self, timeout: float | None = None) -> bool:
        """Warm stop: let running jobs finish; True if all did within ``timeout``."""
        raise NotImplementedError

    def terminate(self) -> None:
        """Cold stop: do not wait for running jobs."""
        self.stop(timeout=0)

    def info(self) -> dict[str, Any]:
        return {"pool": self.name, "concurrency": self.concurrency, "active": self.active()}
