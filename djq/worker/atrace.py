"""Running one ``async def`` task as a coroutine on the asyncio pool's event loop.

The counterpart of trace.py for coroutines: the same states, records and outcomes, with
the task body awaited on the loop and everything that may touch the database (STARTED,
the end, callbacks, connection hygiene) run in threads, as Django requires.

Limits act at the coroutine's awaits: ``Steerable`` drives the coroutine itself, so at
the soft limit ``SoftTimeLimitExceeded`` is raised at the await it is suspended in; at
the hard limit (HardTimeLimit, ending FAILURE TimeLimitExceeded) and on
``revoke(terminate=True)`` (Terminated, ending REVOKED) the await raises a BaseException,
so ``except Exception`` in the task does not keep it running.
"""
from __future__ import annotations

import asyncio
import time
import traceback as tb
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Generator

from django.utils import timezone

from .. import states
from ..backends import current_writer, get_backend
from ..backends.base import TaskInfo
from ..conf import djq_settings
from ..context import RequestContext, current_request
from ..exceptions import Retry, TimeLimitExceeded
from . import dbhygiene
from .trace import HardTimeLimit, Outcome, PatientStore, _autoretry, logger, record, record_and_follow

if TYPE_CHECKING:
    from ..task import Task

#: ``run_sync(fn, *args)``: run a blocking call off the loop (the pool's bounded executor)
RunSync = Callable[..., Awaitable[Any]]


class Terminated(BaseException):
    """The coroutine was cancelled by ``revoke(terminate=True)``."""


class Steerable:
    """An awaitable that drives ``coro`` and can raise an exception at its current await.

    ``interrupt(exc)`` cancels the asyncio task awaiting this (so whatever future the
    coroutine waits on is cancelled, as ``Task.cancel`` does), and the cancellation is
    delivered into the coroutine as ``exc``. ``stepping`` names the task while its code
    runs (the loop-lag watch reads it to name a task that blocks the loop).
    """

    def __init__(self, coro: Any, name: str, stepping: list[str | None]) -> None:
        self.coro = coro
        self.name = name
        self.stepping = stepping
        self.pending: BaseException | None = None
        self.owner: asyncio.Task[Any] | None = None

    def interrupt(self, exc: BaseException) -> None:
        if self.owner is None:
            self.pending = exc  # not started yet: raised at its first step
        elif not self.owner.done():
            self.pending = exc
            self.owner.cancel()

    def __await__(self) -> Generator[Any, Any, Any]:
        self.owner = asyncio.current_task()
        coro, stepping = self.coro, self.stepping
        value: Any = None
        error, self.pending = self.pending, None
        while True:
            stepping[0] = self.name
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                return stop.value
            finally:
                stepping[0] = None
            try:
                value, error = (yield yielded), None
            except asyncio.CancelledError as cancelled:
                value, error = None, cancelled
                if self.pending is not None and self.owner is not None:
                    self.owner.uncancel()
                    error, self.pending = self.pending, None
            except BaseException as exc:  # thrown in by the loop: the coroutine sees it
                value, error = None, exc


async def aexecute(task: Task[Any, Any], context: RequestContext, steer: Callable[[Steerable], None],
                   stepping: list[str | None]) -> Outcome:
    """Await the task body with ``context`` as its request; never raises (but Terminated and
    HardTimeLimit, which the pool delivers). A failure that autoretry_for may turn into a
    retry is returned as it is (the retry is sent off the loop, by ``atrace``).

    ``steer`` receives the running body so the pool can interrupt it (limits, terminate).
    """
    token = current_request.set(context)
    started = time.perf_counter()
    try:
        body = Steerable(task.run(*context.args, **context.kwargs), task.name, stepping)
        steer(body)
        value = await body
    except (Terminated, HardTimeLimit):
        raise
    except Retry as retry:
        return Outcome(states.RETRY, retry, tb.format_exc(), time.perf_counter() - started)
    except BaseException as exc:  # the task-execution boundary: every failure is recorded
        return Outcome(states.FAILURE, exc, tb.format_exc(), time.perf_counter() - started)
    finally:
        current_request.reset(token)
    return Outcome(states.SUCCESS, value, None, time.perf_counter() - started)


async def atrace(task: Task[Any, Any], context: RequestContext, info: TaskInfo, ignore_result: bool, *,
                 run_sync: RunSync, steer: Callable[[Steerable], None], stepping: list[str | None],
                 time_limit: float | None = None, started_stored: bool = False) -> Outcome:
    """trace() for a coroutine: STARTED, the awaited body, then the final state.

    Writes that only queue in the result writer are made on the loop; anything that may
    reach the database is made through ``run_sync``. The pool cleans the connections of
    Django's async ORM thread after tasks (``AsyncioPool._clean_soon``).
    """
    backend = PatientStore(get_backend())
    started_at = timezone.now()
    try:
        if djq_settings.TASK_TRACK_STARTED and not ignore_result and not started_stored:
            await _store_started(backend, info, started_at, run_sync)
        started = time.perf_counter()
        try:
            outcome = await aexecute(task, context, steer, stepping)
        except HardTimeLimit:
            error = TimeLimitExceeded(f"task {task.name} ran past its hard time limit ({time_limit}s)")
            outcome = Outcome(states.FAILURE, error, tb.format_exc(), time.perf_counter() - started)
        except Terminated:
            # the worker records REVOKED for a task it terminated (worker/outcomes.py)
            return Outcome(states.REVOKED, None, None, time.perf_counter() - started, recorded=False)
        if outcome.state == states.FAILURE and isinstance(outcome.value, Exception):
            outcome = await run_sync(_autoretry, task, context, outcome)
        if any(context.embed.values()) or not _queues():
            await run_sync(_finish, task, context, info, outcome, ignore_result, started_at)
        else:
            record(backend, info, outcome, ignore_result, started_at)
    except Exception as exc:  # the backend failed: the task's outcome cannot be stored
        logger.exception("task %s[%s]: could not store its state", info.task_name, info.task_id)
        outcome = Outcome(states.FAILURE, exc, tb.format_exc(), 0.0)
    return outcome


def _queues() -> bool:
    """A result writer takes writes now without touching the database."""
    writer = current_writer()
    return writer is not None and bool(writer.accepting())


async def _store_started(backend: PatientStore, info: TaskInfo, started_at: Any, run_sync: RunSync) -> None:
    """STARTED as trace() stores it: an early-acked task waits until the row is stored
    (awaiting the result writer, holding no thread), a late-acked one does not."""
    writer = current_writer()
    if writer is None or not writer.accepting():
        await run_sync(backend.store if not info.acks_late else backend.put, info, states.STARTED,
                       date_started=started_at)
        return
    writer.put(info, states.STARTED, date_started=started_at)
    if info.acks_late:
        return
    loop = asyncio.get_running_loop()
    stored: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not stored.done():
            stored.set_result(None)

    def done() -> None:
        loop.call_soon_threadsafe(settle)

    writer.after(done)
    await stored


def _finish(task: Task[Any, Any], context: RequestContext, info: TaskInfo, outcome: Outcome,
            ignore_result: bool, started_at: Any) -> None:
    """The task's end, in a thread: store it, send what follows, clean the connections."""
    try:
        record_and_follow(PatientStore(get_backend()), task, context, info, outcome, ignore_result, started_at)
    finally:
        dbhygiene.clean_connections()


__all__ = ["Steerable", "Terminated", "aexecute", "atrace"]
