"""``threads``: N worker threads in the worker process.

Good for I/O-bound tasks; CPU-bound tasks share one GIL. Each thread has its own Django
database connections, closed when the thread ends.
"""
from __future__ import annotations

import logging
import threading
import time
from queue import SimpleQueue
from typing import Any

from ..worker import dbhygiene
from .base import BasePool, Callback, Job

logger = logging.getLogger(__name__)
_STOP = object()


class ThreadPool(BasePool):
    name = "threads"

    def __init__(self, concurrency: int) -> None:
        super().__init__(concurrency)
        self._jobs: SimpleQueue[Any] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._active = 0
        self._idle = threading.Condition(self._lock)

    def start(self) -> None:
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._run, name=f"djq-thread-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self) -> None:
        get = self._jobs.get
        try:
            while True:
                item = get()
                if item is _STOP:
                    return
                job, arg, callback = item
                try:
                    result = job(arg)
                    callback(arg, result)
                except BaseException:  # a job must never kill its thread
                    logger.exception("djq thread pool: job failed outside the task boundary")
                finally:
                    with self._lock:
                        self._active -= 1
                        if not self._active:
                            self._idle.notify_all()
        finally:
            dbhygiene.close_all()

    def apply_async(self, job: Job, arg: Any, callback: Callback) -> None:
        with self._lock:
            self._active += 1
        self._jobs.put((job, arg, callback))

    def free_slots(self) -> int:
        return self.concurrency - self._active

    def active(self) -> int:
        return self._active

    def stop(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._active:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._idle.wait(remaining)
            finished = not self._active
        for _ in self._threads:
            self._jobs.put(_STOP)
        if finished:
            for thread in self._threads:
                thread.join(timeout=5)
        return finished

    def info(self) -> dict[str, Any]:
        return {**super().info(), "threads": [t.name for t in self._threads if t.is_alive()]}
