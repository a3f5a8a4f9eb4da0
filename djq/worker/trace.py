"""Running one task: context, state records, outcome. Shared by every pool and by apply()."""
from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import time
import traceback as tb
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from django.db import InterfaceError, OperationalError
from django.utils import timezone

from .. import signals, states
from ..backends import get_backend
from ..backends.base import TaskInfo, exception_to_meta
from ..conf import djq_settings
from ..context import RequestContext, current_request
from ..concurrency.base import Limiter, no_limits
from ..exceptions import EncodeError, Retry, TimeLimitExceeded
from ..retries import autoretry
from . import dbhygiene

if TYPE_CHECKING:
    from ..result import EagerResult
    from ..task import Task

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    state: str
    value: Any
    traceback: str | None
    runtime: float
    #: False when the task could not record its own end (its process died, or it was
    #: stopped at its hard time limit): the worker records ``value`` for it.
    recorded: bool = True
    #: what went wrong sending its callbacks, chain or chord body (noted on its result
    #: and sent as a ``task-follow-up-failed`` event)
    follow_up_error: str | None = None


#: In a prefork child: where a task's end goes instead of the database (the pipe to the
#: worker, whose result writer stores it in a batch with the other children's).
END_SINK: Callable[[dict[str, Any]], None] | None = None

#: In a prefork child, SystemExit means the pool is stopping this process (hard time limit,
#: shutdown): the parent records the outcome, so the child must not record one too.
PROCESS_EXIT_ENDS_TASK = False


class HardTimeLimit(BaseException):
    """Raised in-process by a pool at the hard limit; a BaseException so tasks don't catch it."""


class ColdShutdown(BaseException):
    """Raised in the worker's main thread by a second shutdown signal while the solo pool
    runs a task there: it ends the task without recording it (the worker records it lost)."""


def execute(task: Task[Any, Any], context: RequestContext, limiter: Limiter = no_limits,
            soft_time_limit: float | None = None, time_limit: float | None = None) -> Outcome:
    """Run the task body in this thread with ``context`` as its request; never raises.

    Sends djq.signals' task_prerun before the body and task_success/failure/retry and
    task_postrun after it (only when someone listens: one list test each otherwise)."""
    if signals.task_prerun.receivers:
        signals.send(signals.task_prerun, task, task_id=context.id, task=task, args=context.args,
                     kwargs=context.kwargs)
    outcome = _execute(task, context, limiter, soft_time_limit, time_limit)
    if signals.task_success.receivers or signals.task_failure.receivers or signals.task_retry.receivers:
        _send_outcome(task, context, outcome)
    if signals.task_postrun.receivers:
        signals.send(signals.task_postrun, task, task_id=context.id, task=task, args=context.args,
                     kwargs=context.kwargs, retval=outcome.value, state=outcome.state)
    return outcome


def _send_outcome(task: Task[Any, Any], context: RequestContext, outcome: Outcome) -> None:
    if outcome.state == states.SUCCESS:
        signals.send(signals.task_success, task, result=outcome.value)
    elif outcome.state == states.RETRY:
        reason = getattr(outcome.value, "reason", None) or outcome.value
        signals.send(signals.task_retry, task, request=context, reason=reason,
                     einfo=signals.exception_info(outcome.value, outcome.traceback))
    elif isinstance(outcome.value, BaseException):
        signals.send(signals.task_failure, task, task_id=context.id, exception=outcome.value, args=context.args,
                     kwargs=context.kwargs, traceback=outcome.value.__traceback__,
                     einfo=signals.exception_info(outcome.value, outcome.traceback))


def _execute(task: Task[Any, Any], context: RequestContext, limiter: Limiter,
             soft_time_limit: float | None, time_limit: float | None) -> Outcome:
    token = current_request.set(context)
    started = time.perf_counter()
    try:
        with limiter(soft_time_limit, time_limit):
            value = task.run(*context.args, **context.kwargs)
            if inspect.iscoroutine(value):  # an async def task on a pool without a loop
                value = asyncio.run(value)
    except ColdShutdown:
        raise
    except SystemExit:
        if PROCESS_EXIT_ENDS_TASK:
            raise
        return Outcome(states.FAILURE, *_current_error(), time.perf_counter() - started)
    except Retry as retry:
        return Outcome(states.RETRY, retry, tb.format_exc(), time.perf_counter() - started)
    except HardTimeLimit:
        error = TimeLimitExceeded(f"task {task.name} ran past its hard time limit ({time_limit}s)")
        return Outcome(states.FAILURE, error, tb.format_exc(), time.perf_counter() - started)
    except BaseException as exc:  # the task-execution boundary: every failure is recorded
        if context.is_eager and isinstance(exc, KeyboardInterrupt):
            raise  # Ctrl-C in the calling process stops the caller (Django's ImmediateBackend does the same)
        failure = Outcome(states.FAILURE, exc, tb.format_exc(), time.perf_counter() - started)
        if context.is_eager or not isinstance(exc, Exception):
            return failure
        return _autoretry(task, context, failure)
    finally:
        current_request.reset(token)
    return Outcome(states.SUCCESS, value, None, time.perf_counter() - started)


def _autoretry(task: Task[Any, Any], context: RequestContext, failure: Outcome) -> Outcome:
    """autoretry_for: turn a failure into a retry, or into the error retry() raised."""
    try:
        retry = autoretry(task, context, failure.value)
    except BaseException as exc:  # max retries used up: exc (or MaxRetriesExceededError) is the failure
        return Outcome(states.FAILURE, exc, failure.traceback if exc is failure.value else tb.format_exc(),
                       failure.runtime)
    if retry is None:
        return failure
    return Outcome(states.RETRY, retry, failure.traceback, failure.runtime)


def _current_error() -> tuple[BaseException, str]:
    exc = sys.exc_info()[1]
    return (exc if exc is not None else RuntimeError("unknown error")), tb.format_exc()


def run_eager(task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any], task_id: str) -> EagerResult[Any]:
    from ..result import EagerResult

    context = RequestContext(id=task_id, task=task.name, args=args, kwargs=kwargs, root_id=task_id, is_eager=True)
    outcome = execute(task, context)
    return EagerResult(task_id, outcome.state, outcome.value, outcome.traceback, task_name=task.name)


def trace(task: Task[Any, Any], context: RequestContext, info: TaskInfo, ignore_result: bool, *,
          limiter: Limiter | None = None, soft_time_limit: float | None = None,
          time_limit: float | None = None, started_stored: bool = False) -> Outcome:
    """Run a task on a worker: DB hygiene, STARTED (unless the consumer stored it), the
    body, then the final state."""
    dbhygiene.clean_connections()
    backend = PatientStore(get_backend())
    try:
        started_at = timezone.now()
        if djq_settings.TASK_TRACK_STARTED and not ignore_result and not started_stored:
            # An early-acked task is stored STARTED before it runs, so a worker killed
            # meanwhile leaves a row the orphan sweep ends; a late-acked one returns to
            # the queue instead, so its STARTED may wait and give way to its end.
            if info.acks_late:
                backend.put(info, states.STARTED, date_started=started_at)
            else:
                backend.store(info, states.STARTED, date_started=started_at)
        outcome = execute(task, context, limiter or no_limits, soft_time_limit, time_limit)
        record_and_follow(backend, task, context, info, outcome, ignore_result, started_at)
    except Exception as exc:  # the backend failed: the task's outcome cannot be stored
        logger.exception("task %s[%s]: could not store its state", info.task_name, info.task_id)
        outcome = Outcome(states.FAILURE, exc, tb.format_exc(), 0.0)
    finally:
        dbhygiene.clean_connections()
    return outcome


class PatientStore:
    """A result backend that waits out a database outage instead of losing the state.

    A write that fails on a lost connection (the database restarted, a failover) is
    tried again on a new connection with backoff, for up to ``patience`` seconds.
    """

    patience = 60.0

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def put(self, info: TaskInfo, state: str, **fields: Any) -> None:
        """Store, without waiting where the backend can store later (a worker's result
        writer, which waits out an outage itself)."""
        put = getattr(self.backend, "put", None)
        if put is None:
            self.store(info, state, **fields)
        else:
            put(info, state, **fields)

    def put_end(self, info: TaskInfo, state: str, **fields: Any) -> None:
        """A task's end: ``put``, or in a prefork child sent to the worker to store."""
        build = getattr(self.backend, "build_row", None)
        if END_SINK is not None and build is not None:
            END_SINK(build(info, state, **fields))
        else:
            self.put(info, state, **fields)

    def store(self, info: TaskInfo, state: str, **fields: Any) -> None:
        delay, deadline = 0.1, time.monotonic() + self.patience
        while True:
            try:
                self.backend.store(info, state, **fields)
                return
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning("task %s[%s]: could not store %s (%s); trying again in %.1fs",
                               info.task_name, info.task_id, state, exc, delay)
                dbhygiene.close_all()  # this thread's connections: the next try opens a new one
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def record_and_follow(backend: Any, task: Task[Any, Any], context: RequestContext, info: TaskInfo,
                      outcome: Outcome, ignore_result: bool, started_at: Any) -> None:
    """Store the task's end, then send what follows it (callbacks, chain, chord count),
    which reads that end: a follow-up that cannot be sent is noted on the stored result."""
    follows = any(context.embed.values())
    record(backend, info, outcome, ignore_result, started_at, wait=follows)
    if outcome.state in (states.SUCCESS, states.FAILURE) and follows:
        from .flow import follow_up, note_follow_up_failure

        try:
            follow_up(task, context, outcome)
        except Exception as exc:  # the task's own outcome is stored; what failed to follow is noted on it
            logger.exception("task %s[%s]: could not send its callbacks", info.task_name, info.task_id)
            outcome.follow_up_error = note_follow_up_failure(info, exc)


def record(backend: Any, info: TaskInfo, outcome: Outcome, ignore_result: bool, started_at: Any,
           wait: bool = False) -> None:
    """Store a task's end: later through the result writer, unless ``wait``."""
    if not isinstance(backend, PatientStore):
        backend = PatientStore(backend)
    store = backend.store if wait else backend.put_end
    if outcome.state == states.SUCCESS:
        if logger.isEnabledFor(logging.INFO):
            logger.info("task %s[%s] succeeded in %.4fs", info.task_name, info.task_id, outcome.runtime)
        if ignore_result:
            return
        try:
            store(info, states.SUCCESS, result=outcome.value, date_started=started_at, runtime=outcome.runtime)
        except EncodeError as exc:
            error = EncodeError(f"task {info.task_name} returned a value that cannot be stored: {exc}")
            outcome.state, outcome.value, outcome.traceback = states.FAILURE, error, None
            store(info, states.FAILURE, result=exception_to_meta(error), traceback=str(error),
                  date_started=started_at, runtime=outcome.runtime)
        return
    if outcome.state == states.RETRY:
        logger.info("task %s[%s] %s", info.task_name, info.task_id, outcome.value)
        return  # retry() recorded RETRY before it sent the task again
    error = outcome.value
    if ignore_result and not djq_settings.STORE_ERRORS_EVEN_IF_IGNORED:
        logger.error("task %s[%s] raised %s: %s", info.task_name, info.task_id, type(error).__name__, error)
        return
    logger.error("task %s[%s] raised %s: %s", info.task_name, info.task_id, type(error).__name__, error)
    store(info, states.FAILURE, result=exception_to_meta(error), traceback=outcome.traceback,
          date_started=started_at, runtime=outcome.runtime)
