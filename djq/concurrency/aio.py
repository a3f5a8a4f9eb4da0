"""``asyncio``: up to N tasks at once as coroutines on one event loop in the worker process.

For ``async def`` tasks that wait on I/O: thousands can be in flight in one process, with
no threads or monkey patching. The loop runs in a thread of its own (uvloop when it is
installed: ``pip install djq[uvloop]``); the consumer hands it calls across threads.

- ``async def`` tasks run on the loop. Everything that may touch the database for them
  (STARTED, the end, retries, callbacks) runs in a few threads beside it, as Django asks;
  inside a task use Django's async ORM (``aget``, ``acreate``, ``async for``) and
  ``sync_to_async`` for the rest. Connections are cleaned after every task.
- Plain functions sent to an asyncio worker run in a bounded thread executor
  (``DJQ_WORKER_ASYNCIO_SYNC_THREADS``), never on the loop; they have the threads pool's
  soft limit and no hard limit.
- Soft time limit: ``SoftTimeLimitExceeded`` raised in the coroutine at the await it waits
  in. Hard time limit: the coroutine is stopped at its await and ends FAILURE
  (TimeLimitExceeded). ``revoke(terminate=True)`` stops a running coroutine (REVOKED).
  A coroutine that never awaits (CPU work, a blocking call) cannot be stopped meanwhile.
- A blocked loop (``time.sleep`` inside ``async def``) is noticed by a watch thread when
  the loop lags by more than ``DJQ_WORKER_ASYNCIO_LAG_THRESHOLD`` seconds, and logged
  once per task name.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async

from ..conf import djq_settings
from ..exceptions import SoftTimeLimitExceeded
from ..worker import dbhygiene
from ..worker.atrace import Steerable, Terminated
from ..worker.request import coroutine_call
from ..worker.trace import HardTimeLimit
from .base import BasePool, Callback, Job
from .threads import SoftLimitWatch

logger = logging.getLogger(__name__)
#: threads that store STARTED and ends for the coroutines (short calls, mostly to the writer)
IO_THREADS = 4
#: seconds between cleanings of the async ORM thread's connections, at most
CLEAN_EVERY = 0.05


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class Running:
    """A call handed to the pool: a coroutine (``body`` once it runs) or a thread's job.

    Time limits count from the body's start (after STARTED is stored), as on the other pools.
    """

    __slots__ = ("in_thread", "body", "terminated", "limits", "timers")

    def __init__(self, soft: float | None = None, hard: float | None = None) -> None:
        self.in_thread = False
        self.body: Steerable | None = None
        self.terminated = False
        self.limits = (soft, hard)
        self.timers: list[asyncio.TimerHandle] = []

    def steer(self, body: Steerable) -> None:
        """In the loop, as the body starts: its limit timers; a terminate that came first."""
        self.body = body
        if self.terminated:
            body.interrupt(Terminated())
            return
        soft, hard = self.limits
        loop = asyncio.get_running_loop()
        if soft:
            error = SoftTimeLimitExceeded(f"soft time limit ({soft}s) exceeded")
            self.timers.append(loop.call_later(soft, body.interrupt, error))
        if hard:
            self.timers.append(loop.call_later(hard, body.interrupt, HardTimeLimit()))

    def terminate(self) -> None:
        self.terminated = True
        if self.body is not None:
            self.body.interrupt(Terminated())

    def done(self) -> None:
        for timer in self.timers:
            timer.cancel()


class LagWatch(threading.Thread):
    """Notices a blocked loop: the loop stamps ``beat`` every ``threshold / 4``; a stamp
    older than ``threshold`` names the task whose code was running (once per task)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stepping: list[str | None], threshold: float) -> None:
        super().__init__(name="djq-asyncio-lag", daemon=True)
        self.loop, self.stepping, self.threshold = loop, stepping, threshold
        self.beat = time.monotonic()
        self.warned: set[str | None] = set()
        self.stopped = threading.Event()

    def stamp(self) -> None:
        self.beat = time.monotonic()
        if not self.stopped.is_set():
            self.loop.call_later(self.threshold / 4, self.stamp)

    def run(self) -> None:
        reported = False
        while not self.stopped.wait(self.threshold / 4):
            lag = time.monotonic() - self.beat
            if lag <= self.threshold:
                reported = False
                continue
            name = self.stepping[0]
            if reported or name in self.warned:
                continue
            reported = True
            self.warned.add(name)
            logger.warning("task %s blocked the asyncio pool's event loop for over %.2fs: a blocking call "
                           "inside async def stalls every task (await it, or use sync_to_async)",
                           name or "(none: djq's own code)", self.threshold)


class AsyncioPool(BasePool):
    name = "asyncio"
    supports_soft_time_limit = True
    supports_hard_time_limit = True
    supports_terminate_job = True

    def __init__(self, concurrency: int, **options: Any) -> None:
        super().__init__(concurrency, **options)
        self.loop = new_event_loop()
        threads = djq_settings.WORKER_ASYNCIO_SYNC_THREADS or min(concurrency, 32)
        self._sync = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="djq-asyncio-sync")
        self._io = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="djq-asyncio-io")
        self._soft = SoftLimitWatch()
        self._stepping: list[str | None] = [None]
        self._cleaning = False
        self._warned: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._lag = LagWatch(self.loop, self._stepping, float(djq_settings.WORKER_ASYNCIO_LAG_THRESHOLD))
        self._thread = threading.Thread(target=self._run_loop, name="djq-asyncio-loop", daemon=True)

    def start(self) -> None:
        self._soft.start()
        self._thread.start()
        self._lag.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._lag.stamp)
        self.loop.run_forever()

    def apply_async(self, job: Job, arg: Any, callback: Callback, *,
                    soft_time_limit: float | None = None, time_limit: float | None = None) -> Running:
        self._started()
        running = Running(soft_time_limit, time_limit)
        coro = None
        try:
            coro = coroutine_call(arg, run_sync=self._run_sync, steer=running.steer, stepping=self._stepping)
        except Exception:
            logger.exception("djq asyncio pool: job failed outside the task boundary")
            self._finished()
            return running
        if coro is None:
            running.in_thread = True
            if time_limit and arg.task_name not in self._warned:
                self._warned.add(arg.task_name)
                logger.warning("task %s has a hard time limit, which the asyncio pool cannot enforce on a "
                               "plain function (it runs in a thread; see docs/pools.md)", arg.task_name)
            self._sync.submit(self._thread_job, job, arg, callback)
        else:
            self.loop.call_soon_threadsafe(self._spawn, coro, arg, callback, running)
        return running

    def _thread_job(self, job: Job, arg: Any, callback: Callback) -> None:
        try:
            callback(arg, job(arg, self._soft.limits))
        except BaseException:  # a job must never kill its thread
            logger.exception("djq asyncio pool: job failed outside the task boundary")
        finally:
            self._finished()

    def _spawn(self, coro: Any, arg: Any, callback: Callback, running: Running) -> None:
        job = self.loop.create_task(self._coroutine_job(coro, arg, callback, running))
        self._background.add(job)  # the loop keeps only weak references to tasks
        job.add_done_callback(self._background.discard)

    async def _coroutine_job(self, coro: Any, arg: Any, callback: Callback, running: Running) -> None:
        try:
            callback(arg, await coro)
        except BaseException:  # a job must never stop the loop
            logger.exception("djq asyncio pool: job failed outside the task boundary")
        finally:
            running.done()
            self._clean_soon()
            self._finished()

    def _clean_soon(self) -> None:
        """Clean the connections of Django's async ORM thread (asgiref's thread-sensitive
        one, which the ``aget``/``acreate`` of every task share) after tasks end: at most
        every CLEAN_EVERY seconds, one call shared by the tasks that end meanwhile (a call
        per task costs a thread hop each)."""
        if self._cleaning:
            return
        self._cleaning = True

        def clean() -> None:
            self._cleaning = False  # a task ending from now on asks for another
            try:
                dbhygiene.clean_connections()
            except Exception:  # a broken connection that cannot even close: the next task reconnects
                logger.exception("djq asyncio pool: could not clean the async ORM's connections")

        def start() -> None:
            cleaning = self.loop.create_task(sync_to_async(clean)())
            self._background.add(cleaning)
            cleaning.add_done_callback(self._background.discard)

        self.loop.call_later(CLEAN_EVERY, start)

    async def _run_sync(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await self.loop.run_in_executor(self._io, functools.partial(fn, *args, **kwargs))

    def terminate_job(self, handle: Any, signum: int) -> bool:
        if not isinstance(handle, Running) or handle.in_thread:
            return False  # a thread cannot be stopped

        self.loop.call_soon_threadsafe(handle.terminate)
        return True

    def stop(self, timeout: float | None = None) -> bool:
        finished = self._wait_idle(timeout)
        self._lag.stopped.set()
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._sync.shutdown(wait=finished, cancel_futures=not finished)
        self._io.shutdown(wait=finished, cancel_futures=not finished)
        if finished:
            self._thread.join(timeout=5)
        return finished

    def info(self) -> dict[str, Any]:
        return {**super().info(), "loop": type(self.loop).__module__.split(".")[0]}
