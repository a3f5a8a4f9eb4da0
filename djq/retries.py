"""Retrying a task: ``self.retry()``, ``autoretry_for`` and exponential backoff.

A retry sends the same task id again (same arguments unless new ones are given, same
callbacks, chain and chord) with ``retries`` one higher and an eta, records RETRY with the
reason, and ends the current run. The new message waits in the broker, never in a pool slot.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import states
from .backends import get_backend
from .backends.base import TaskInfo, exception_to_meta
from .context import RequestContext
from .exceptions import MaxRetriesExceededError, Retry, TaskOptionError

if TYPE_CHECKING:
    from .task import Task


def backoff_countdown(retries: int, base: float, maximum: float | None, jitter: bool,
                      rng: random.Random | None = None) -> float:
    """Seconds before retry number ``retries + 1``: ``base * 2**retries``, capped, then jittered.

    With jitter the delay is drawn uniformly from [0, capped] (full jitter), so many tasks
    failing together do not come back together.
    """
    countdown = base * (2 ** retries)
    if maximum is not None:
        countdown = min(countdown, maximum)
    if jitter:
        countdown = (rng or random).uniform(0, countdown)
    return countdown


def retry(task: Task[Any, Any], request: RequestContext, *, exc: BaseException | None = None,
          countdown: float | None = None, eta: datetime | None = None, max_retries: int | None = None,
          args: Any = None, kwargs: Any = None, use_default_max: bool = True) -> Retry:
    """Send the task again and return the Retry to raise; raise when retries are exhausted."""
    from .messaging import producer
    from .messaging.protocol import encode_task

    limit = max_retries if max_retries is not None else (task.max_retries if use_default_max else None)
    if limit is not None and request.retries >= limit:
        if exc is not None:
            raise exc
        raise MaxRetriesExceededError(
            f"task {task.name}[{request.id}] was retried {request.retries} time(s): max_retries is {limit}")
    if countdown is not None and eta is not None:
        raise TaskOptionError("retry(): give countdown or eta, not both")
    if eta is None:
        delay = task.default_retry_delay if countdown is None else float(countdown)
        eta = datetime.now(timezone.utc) + timedelta(seconds=delay or 0)
    when = max((eta - datetime.now(timezone.utc)).total_seconds(), 0.0)
    reason = Retry(exc, when)
    info = TaskInfo(task_id=request.id or "", task_name=task.name, worker=request.hostname,
                    queue=request.queue or "", retries=request.retries + 1, root_id=request.root_id,
                    parent_id=request.parent_id, attempt=request.attempt,
                    args_repr=str(request.headers.get("argsrepr") or ""),
                    kwargs_repr=str(request.headers.get("kwargsrepr") or ""))
    # Recorded before the message goes out, so a quick rerun's SUCCESS is never overwritten.
    get_backend().store(info, states.RETRY, result=exception_to_meta(exc if exc is not None else reason),
                        traceback=str(reason))
    headers = request.headers
    message = encode_task(
        task.name, request.id or "", request.args if args is None else list(args),
        request.kwargs if kwargs is None else dict(kwargs),
        queue=request.queue or task.queue or "default", eta=eta, expires=request.expires,
        retries=request.retries + 1, timelimit=request.timelimit, root_id=request.root_id,
        parent_id=request.parent_id, group_id=request.group_id,
        ignore_result=bool(headers.get("ignore_result", False)), priority=request.priority,
        embed=request.embed,
    )
    producer.send(message)
    return reason


def autoretry(task: Task[Any, Any], request: RequestContext, exc: BaseException) -> Retry | None:
    """The Retry for ``exc`` when the task retries it automatically, else None."""
    if not task.autoretry_for or not isinstance(exc, task.autoretry_for):
        return None
    if task.dont_autoretry_for and isinstance(exc, task.dont_autoretry_for):
        return None
    options = dict(task.retry_kwargs)
    if task.retry_backoff and "countdown" not in options:
        options["countdown"] = backoff_countdown(request.retries, float(task.retry_backoff),
                                                 task.retry_backoff_max, task.retry_jitter)
    return retry(task, request, exc=exc, **options)


def check_exception_classes(name: str, value: Any) -> tuple[type[BaseException], ...]:
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TaskOptionError(f"{name} must be exception classes, got {item!r}")
    return tuple(items)


def check_retry_kwargs(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    allowed = {"max_retries", "countdown", "eta"}
    if not isinstance(value, dict) or set(value) - allowed:
        raise TaskOptionError(f"retry_kwargs must be a dict with keys from {sorted(allowed)}, got {value!r}")
    return dict(value)
