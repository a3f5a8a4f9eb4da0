"""``threads``: N worker threads in the worker process.

Good for I/O-bound tasks; CPU-bound tasks share one GIL. Each thread has its own Django
database connections, closed when the thread ends. The soft time limit raises
SoftTimeLimitExceeded inside the task's thread at its next Python instruction (a
blocking call such as a long ``time.sleep`` delays it until the call returns). A thread
cannot be killed, so there is no hard time limit.
"""
from __future__ import annotations

import ctypes
import logging
import threading
import time
from contextlib import contextmanager
from queue import SimpleQueue
from typing import Any, Iterator

from ..exceptions import SoftTimeLimitExceeded
from ..worker import dbhygiene
from .base import BasePool, Callback, Job

logger = logging.getLogger(__name__)
_STOP = object()


def _raise_in_thread(ident: int, exc_type: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type) if exc_type else None)


class SoftLimitWatch(threading.Thread):
    """Raises SoftTimeLimitExceeded in threads whose task ran past its soft limit."""

    def __init__(self) -> None:
        super().__init__(name="djq-soft-limits", daemon=True)
        self._deadlines: dict[int, float] = {}
        self._fired: set[int] = set()
        self._cond = threading.Condition()

    @contextmanager
    def limits(self, soft: float | None, hard: float | None) -> Iterator[None]:
        if not soft:
            yield
            return
        ident = threading.get_ident()
        with self._cond:
            self._deadlines[ident] = time.monotonic() + soft
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._deadlines.pop(ident, None)
                if ident in self._fired:
                    self._fired.discard(ident)
                    _raise_in_thread(ident, None)  # drop an exception not yet delivered

    def run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for ident, deadline in list(self._deadlines.items()):
                    if deadline <= now:
                        del self._deadlines[ident]
                        self._fired.add(ident)
                        _raise_in_thread(ident, SoftTimeLimitExceeded)
                soonest = min(self._deadlines.values(), default=None)
                self._cond.wait(None if soonest is None else max(soonest - time.monotonic(), 0.001))


class ThreadPool(BasePool):
    name = "threads"
    supports_soft_time_limit = True
    supports_autoscale = True

    def __init__(self, concurrency: int, **options: Any) -> None:
        super().__init__(concurrency, **options)
        self._jobs: SimpleQueue[Any] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._watch = SoftLimitWatch()
        self._index = 0

    def start(self) -> None:
        self._watch.start()
        self._add_threads(self.concurrency)

    def _add_threads(self, n: int) -> None:
        for _ in range(n):
            thread = threading.Thread(target=self._run, name=f"djq-thread-{self._index}", daemon=True)
            self._index += 1
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
                    callback(arg, job(arg, self._watch.limits))
                except BaseException:  # a job must never kill its thread
                    logger.exception("djq thread pool: job failed outside the task boundary")
                finally:
                    self._finished()
        finally:
            dbhygiene.close_all()

    def apply_async(self, job: Job, arg: Any, callback: Callback, *,
                    soft_time_limit: float | None = None, time_limit: float | None = None) -> None:
        self._started()
        self._jobs.put((job, arg, callback))

    def stop(self, timeout: float | None = None) -> bool:
        finished = self._wait_idle(timeout)
        for _ in self._threads:
            self._jobs.put(_STOP)
        if finished:
            for thread in self._threads:
                thread.join(timeout=5)
        return finished

    def grow(self, n: int = 1) -> None:
        with self._lock:
            self.concurrency += n
        self._threads = [t for t in self._threads if t.is_alive()]
        self._add_threads(n)

    def shrink(self, n: int = 1) -> None:
        with self._lock:
            n = min(n, self.concurrency - 1)
            self.concurrency -= n
        for _ in range(n):
            self._jobs.put(_STOP)  # taken by an idle thread: the worker only queues for free slots

    def info(self) -> dict[str, Any]:
        return {**super().info(), "threads": [t.name for t in self._threads if t.is_alive()]}
