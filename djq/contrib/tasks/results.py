"""Django ``TaskResult`` objects from djq's stored states, and Django priorities in djq's terms.

djq keeps one result row per task (``djq.models.TaskResult``). For a Django task:

- ``status``: PENDING / RECEIVED / RETRY -> READY, STARTED (and custom states) ->
  RUNNING, SUCCESS -> SUCCESSFUL, FAILURE / REVOKED -> FAILED.
- ``enqueued_at`` is when the row was created (at enqueue), ``started_at`` and
  ``last_attempted_at`` when the latest attempt started, ``finished_at`` when it ended.
- ``args`` / ``kwargs`` are stored as JSON in the row's argument columns.
- ``worker_ids``: djq records the worker of the latest attempt and the number of
  retries, so each attempt is listed under the latest worker's name.
- ``errors``: the exception of a failed run (class path and traceback).
"""
from __future__ import annotations

import json
from datetime import datetime
from traceback import format_exception
from typing import Any

from django.utils import timezone

from ... import states
from ...backends.base import ResultMeta
from . import compat

READY_STATES = frozenset({states.PENDING, states.RECEIVED, states.RETRY})
FAILED_STATES = frozenset({states.FAILURE, states.REVOKED})

#: Redis and RabbitMQ order by ten levels; djq:// by any integer 0-255.
BROKER_LEVELS = 10


def priority_for(priority: int, broker_url: str) -> int:
    """A Django priority (-100..100, higher first) as a djq priority (higher first).

    On djq:// every Django priority keeps its own level (``priority + 100``, so 0..200).
    Redis and RabbitMQ have ten levels: -100..100 is cut into ten equal bands (0..9).
    """
    shifted = int(priority) - compat.TASK_MIN_PRIORITY
    if broker_url.split("://", 1)[0] == "djq":
        return shifted
    span = compat.TASK_MAX_PRIORITY - compat.TASK_MIN_PRIORITY
    return min(shifted * BROKER_LEVELS // span, BROKER_LEVELS - 1)


def status_of(state: str) -> Any:
    if state in READY_STATES:
        return compat.TaskResultStatus.READY
    if state == states.SUCCESS:
        return compat.TaskResultStatus.SUCCESSFUL
    if state in FAILED_STATES:
        return compat.TaskResultStatus.FAILED
    return compat.TaskResultStatus.RUNNING


def build(django_task: Any, task_id: str, args: list[Any], kwargs: dict[str, Any], *, backend: str,
          status: Any, enqueued_at: datetime | None, started_at: datetime | None = None,
          finished_at: datetime | None = None, worker_ids: list[str] | None = None,
          errors: list[Any] | None = None) -> Any:
    return compat.TaskResult(
        task=django_task, id=task_id, status=status, enqueued_at=enqueued_at, started_at=started_at,
        finished_at=finished_at, last_attempted_at=started_at, args=args, kwargs=kwargs, backend=backend,
        errors=errors or [], worker_ids=worker_ids or [],
    )


def error_of(exc: BaseException) -> Any:
    cls = type(exc)
    return compat.TaskError(exception_class_path=f"{cls.__module__}.{cls.__qualname__}",
                            traceback="".join(format_exception(exc)))


def mark_finished(result: Any, *, value: Any = None, error: BaseException | None = None) -> None:
    """Record the end of a run on an in-memory TaskResult (it is frozen, as in Django)."""
    object.__setattr__(result, "finished_at", timezone.now())
    if error is None:
        object.__setattr__(result, "status", compat.TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "_return_value", value)
    else:
        object.__setattr__(result, "status", compat.TaskResultStatus.FAILED)
        result.errors.append(error_of(error))


def from_meta(django_task: Any, meta: ResultMeta, backend: str) -> Any:
    """The TaskResult a stored djq state stands for."""
    status = status_of(meta.state)
    started = meta.date_started
    attempts = meta.retries + 1 if started is not None or status != compat.TaskResultStatus.READY else meta.retries
    errors = []
    if status == compat.TaskResultStatus.FAILED:
        errors.append(compat.TaskError(exception_class_path=meta.exception_path or "djq.exceptions.TaskError",
                                       traceback=meta.traceback or ""))
    result = build(
        django_task, meta.task_id, _json_list(meta.args_repr), _json_dict(meta.kwargs_repr), backend=backend,
        status=status, enqueued_at=meta.date_created, started_at=started,
        finished_at=meta.date_done if status in (compat.TaskResultStatus.SUCCESSFUL, compat.TaskResultStatus.FAILED) else None,
        worker_ids=[meta.worker] * attempts if meta.worker else [], errors=errors,
    )
    if status == compat.TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", meta.result)
    return result


def _json_list(text: str) -> list[Any]:
    value = _json(text)
    return value if isinstance(value, list) else []


def _json_dict(text: str) -> dict[str, Any]:
    value = _json(text)
    return value if isinstance(value, dict) else {}


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:  # not sent through the Django task API: only a repr was stored
        return None
