"""A Django ``@task`` as a djq task: one djq Task per Django task function.

The djq task is named after the function's module path (``myapp.tasks.send_report``),
so routes, beat schedules, the admin and the worker all see Django tasks by that name.
Every send goes through :meth:`DjangoTask.send` (the backend's ``enqueue``, beat, a plain
``apply_async``): it stores a READY result row and sends Django's ``task_enqueued``. On
the worker, :meth:`DjangoTask.run` sends ``task_started`` / ``task_finished`` and calls
the function as Django would (with a ``TaskContext`` when it takes one; ``async def``
functions run to completion in an event loop of their own).
"""
from __future__ import annotations

import json
import logging
import socket
import uuid
from datetime import datetime
from typing import Any

from django.apps import apps
from django.utils import timezone
from django.utils.module_loading import import_string

from ... import states
from ...backends import get_backend
from ...backends.base import TaskInfo
from ...conf import djq_settings
from ...context import RequestContext, current_request
from ...exceptions import EncodeError
from ...registry import registry
from ...result import AsyncResult
from ...task import Task
from . import compat, results

logger = logging.getLogger(__name__)

#: Message header with the time ``enqueue`` ran, for ``TaskResult.enqueued_at`` on the worker.
ENQUEUED_AT = "django_task_enqueued_at"


class DjangoTask(Task[Any, Any]):
    """Runs a function decorated with Django's ``@task`` on djq workers."""

    def __init__(self, django_task: Any) -> None:
        self.django_task = django_task
        super().__init__(django_task.func, name=django_task.module_path)

    def __repr__(self) -> str:
        return f"<djq task {self.name} (Django task)>"

    # -- sending ------------------------------------------------------------------
    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> AsyncResult[Any]:  # type: ignore[override]
        """Send with djq's options (used by beat and by djq callers)."""
        return self.send(self.django_task, args, kwargs, **options)[1]

    def send(self, django_task: Any, args: Any, kwargs: Any, **options: Any) -> tuple[Any, AsyncResult[Any]]:
        """Enqueue one run; returns Django's TaskResult and djq's handle for it."""
        try:
            args = compat.normalize_json(list(args or []))
            kwargs = compat.normalize_json(dict(kwargs or {}))
        except (TypeError, ValueError) as exc:
            raise EncodeError(f"cannot send Django task {self.name}: arguments must be JSON values ({exc})") from exc
        task_id = options.pop("task_id", None) or str(uuid.uuid4())
        argsrepr, kwargsrepr = json.dumps(args), json.dumps(kwargs)
        sender = type(django_task.get_backend())
        if djq_settings.TASK_ALWAYS_EAGER:  # runs right here, so it is enqueued before it starts
            result = results.build(django_task, task_id, args, kwargs, backend=django_task.backend,
                                   status=compat.TaskResultStatus.READY, enqueued_at=timezone.now())
            compat.task_enqueued.send(sender, task_result=result)
            handle = super().apply_async(args, kwargs, task_id=task_id, **options)
            _copy_eager_outcome(result, handle)
            return result, handle
        backend = get_backend()
        # In the caller's transaction when the result store is the caller's database:
        # a rollback removes the row together with the message (djq://) or the publish.
        # The row is created with the enqueue time this result carries: enqueue(),
        # get_result(), refresh() and the worker's TaskResult hold one enqueued_at.
        enqueued_at = timezone.now()
        backend.store(TaskInfo(task_id=task_id, task_name=self.name, args_repr=argsrepr, kwargs_repr=kwargsrepr,
                               created=enqueued_at), states.PENDING)
        result = results.build(django_task, task_id, args, kwargs, backend=django_task.backend,
                               status=compat.TaskResultStatus.READY, enqueued_at=enqueued_at)
        try:
            handle = super().apply_async(args, kwargs, task_id=task_id, argsrepr=argsrepr, kwargsrepr=kwargsrepr,
                                         headers={ENQUEUED_AT: enqueued_at.isoformat()}, **options)
        except BaseException:
            backend.forget(task_id)  # nothing was sent: leave no READY row behind
            raise
        compat.task_enqueued.send(sender, task_result=result)
        return result, handle

    # -- running ------------------------------------------------------------------
    def run(self, *args: Any, **kwargs: Any) -> Any:
        request = current_request.get()
        if request is None:  # called as a plain function
            return self.django_task.call(*args, **kwargs)
        result = self._running(request, list(args), kwargs)
        sender = type(self.django_task.get_backend())
        compat.task_started.send(sender, task_result=result)
        try:
            if self.django_task.takes_context:
                value = self.django_task.call(compat.TaskContext(task_result=result), *args, **kwargs)
            else:
                value = self.django_task.call(*args, **kwargs)
            # Django's rule and Django's error: a value that is not JSON fails the run with
            # the TypeError (or ValueError) of normalize_json, recorded as that class.
            value = compat.normalize_json(value)
        except BaseException as exc:  # the task-execution boundary: recorded, then re-raised for djq
            if request.is_eager and isinstance(exc, KeyboardInterrupt):
                raise  # as Django's ImmediateBackend: Ctrl-C reaches the caller, unrecorded
            results.mark_finished(result, error=exc)
            compat.task_finished.send(sender, task_result=result)
            raise
        results.mark_finished(result, value=value)
        compat.task_finished.send(sender, task_result=result)
        return value

    def _running(self, request: RequestContext, args: list[Any], kwargs: dict[str, Any]) -> Any:
        worker = request.hostname or f"eager@{socket.gethostname()}"
        return results.build(
            self.django_task, request.id or "", args, kwargs, backend=self.django_task.backend,
            status=compat.TaskResultStatus.RUNNING, enqueued_at=_enqueued_at(request.headers),
            started_at=timezone.now(), worker_ids=[worker] * (request.retries + 1),
        )


def _enqueued_at(headers: dict[str, Any]) -> datetime | None:
    """The enqueue time the message carries (reading the result row would cost a query per task)."""
    try:
        return datetime.fromisoformat(headers[ENQUEUED_AT])
    except (KeyError, TypeError, ValueError):
        return None


def _copy_eager_outcome(result: Any, handle: AsyncResult[Any]) -> None:
    object.__setattr__(result, "started_at", result.enqueued_at)
    object.__setattr__(result, "last_attempted_at", result.enqueued_at)
    result.worker_ids.append(f"eager@{socket.gethostname()}")
    value = handle.result
    if handle.state == states.SUCCESS:
        results.mark_finished(result, value=value)
    else:
        results.mark_finished(result, error=value if isinstance(value, BaseException) else RuntimeError(str(value)))


def adapter_for(django_task: Any) -> DjangoTask:
    """The djq task for a Django task, registered on first use."""
    name = django_task.module_path
    if name in registry:
        existing = registry.get(name)
        if isinstance(existing, DjangoTask) and existing.func is django_task.func:
            return existing
    return DjangoTask(django_task)  # registers itself; a clash with a djq task is an error


def resolve(name: str) -> Task[Any, Any] | None:
    """Registry resolver: import a Django task by module path, from installed apps only."""
    module = name.rpartition(".")[0]
    if not module or not any(module == app.name or module.startswith(app.name + ".")
                             for app in apps.get_app_configs()):
        return None
    try:
        found = import_string(name)
    except ImportError:
        return None
    except Exception:  # the module itself is broken: say so, and treat the task as unknown
        logger.exception("importing %s to find Django task %s failed", module, name)
        return None
    if not isinstance(found, compat.Task):
        return None
    return adapter_for(found)
