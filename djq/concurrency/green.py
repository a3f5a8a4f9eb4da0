"""``gevent`` and ``eventlet``: many greenlets in one process, for I/O-bound tasks.

Monkey patching must happen before Django, the database driver or kombu are imported,
and a management command only runs after Django is set up. So ``djq_worker -P gevent``
re-executes itself through a tiny launcher that patches first and then runs the same
command line (``ensure_patched``).

N long-lived greenlets take tasks from a queue, so each keeps its own Django database
connections. The soft time limit raises SoftTimeLimitExceeded at the task's next
cooperative point (I/O, sleep). A greenlet cannot be stopped while it holds the CPU, so
there is no hard limit. psycopg 3 cooperates with gevent. With eventlet, database calls
block the process briefly. With PostgreSQL and a large -c, use Django's connection
pooling, or keep -c below max_connections.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ..exceptions import ConfigurationError, SoftTimeLimitExceeded
from ..worker import dbhygiene
from .base import BasePool, Callback, Job

logger = logging.getLogger(__name__)
PATCHED_ENV = "DJQ_GREEN_PATCHED"
_STOP = object()

#: Run as ``python -c LAUNCHER POOL SYS_PATH0 ARGV...``: patch, then run the original command.
LAUNCHER = """
import os, runpy, sys
pool, path0, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
if pool == "gevent":
    from gevent import monkey
    monkey.patch_all()
else:
    import eventlet
    eventlet.monkey_patch()
os.environ["DJQ_GREEN_PATCHED"] = pool
sys.argv = argv
sys.path[0] = path0
if argv[0].endswith(os.path.join("django", "__main__.py")):
    runpy.run_module("django", run_name="__main__", alter_sys=True)
else:
    runpy.run_path(argv[0], run_name="__main__")
"""


def ensure_patched(pool: str) -> None:
    """Re-execute this worker under the launcher unless ``pool``'s patching is in place."""
    if os.environ.get(PATCHED_ENV) == pool:
        return
    try:
        __import__(pool)
    except ImportError as exc:
        raise ConfigurationError(f"the {pool} pool needs {pool}: pip install djq[{pool}]") from exc
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-c", LAUNCHER, pool, sys.path[0], *sys.argv])


class _GreenPool(BasePool):
    supports_soft_time_limit = True
    platforms = "Unix"

    def __init__(self, concurrency: int, **options: Any) -> None:
        if os.environ.get(PATCHED_ENV) != self.name:
            raise ConfigurationError(f"the {self.name} pool needs monkey patching: start it with djq_worker -P {self.name}")
        super().__init__(concurrency, **options)
        self._queue: Any = None
        self._greenlets: list[Any] = []

    def _spawn(self, fn: Any) -> Any:
        raise NotImplementedError

    def _make_queue(self) -> Any:
        raise NotImplementedError

    def _timeout(self, seconds: float) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def limits(self, soft: float | None, hard: float | None) -> AbstractContextManager[Any]:
        return self._timeout(soft) if soft else nullcontext()

    def start(self) -> None:
        self._queue = self._make_queue()
        self._greenlets = [self._spawn(self._run) for _ in range(self.concurrency)]

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                job, arg, callback = item
                try:
                    callback(arg, job(arg, self.limits))
                except BaseException:  # a job must never kill its greenlet
                    logger.exception("djq %s pool: job failed outside the task boundary", self.name)
                finally:
                    self._finished()
        finally:
            dbhygiene.close_all()

    def apply_async(self, job: Job, arg: Any, callback: Callback, *,
                    soft_time_limit: float | None = None, time_limit: float | None = None) -> None:
        self._started()
        self._queue.put((job, arg, callback))

    def stop(self, timeout: float | None = None) -> bool:
        finished = self._wait_idle(timeout)
        for _ in self._greenlets:
            self._queue.put(_STOP)
        return finished


class GeventPool(_GreenPool):
    name = "gevent"

    def _spawn(self, fn: Any) -> Any:
        import gevent

        return gevent.spawn(fn)

    def _make_queue(self) -> Any:
        from gevent.queue import Queue

        return Queue()

    def _timeout(self, seconds: float) -> AbstractContextManager[Any]:
        import gevent

        return gevent.Timeout(seconds, SoftTimeLimitExceeded(f"soft time limit ({seconds}s) exceeded"))


class EventletPool(_GreenPool):
    name = "eventlet"

    def _spawn(self, fn: Any) -> Any:
        import eventlet

        return eventlet.spawn(fn)

    def _make_queue(self) -> Any:
        from eventlet.queue import LightQueue

        return LightQueue()

    def _timeout(self, seconds: float) -> AbstractContextManager[Any]:
        import eventlet

        return eventlet.Timeout(seconds, SoftTimeLimitExceeded(f"soft time limit ({seconds}s) exceeded"))
