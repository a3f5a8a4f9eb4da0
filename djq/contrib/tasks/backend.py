"""``DjqTaskBackend``: djq as a backend of Django's task framework (``TASKS``).

    TASKS = {"default": {"BACKEND": "djq.contrib.tasks.DjqTaskBackend"}}

Capabilities: ``supports_defer`` (``run_after`` becomes the message's eta),
``supports_priority`` (see ``results.priority_for``), ``supports_get_result`` (from
djq's result backend), ``supports_async_task`` (``async def`` tasks run in an event loop
on the worker). Parameters: ``QUEUES`` (the queue names tasks may use; ``"default"``
means ``DJQ_DEFAULT_QUEUE``; an empty list allows any). djq itself is configured with
its ``DJQ_*`` settings, so ``OPTIONS`` takes nothing.
"""
from __future__ import annotations

from typing import Any

from django.core import checks

from ...backends import get_backend
from ...conf import djq_settings
from ...exceptions import NotRegistered
from ...messaging.routing import route_for
from ...registry import registry
from . import compat, results
from .adapter import DjangoTask, adapter_for


class DjqTask(compat.Task):  # type: ignore[misc]
    """Django's Task, registered with djq when it is made so workers and beat know it."""

    __slots__ = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        adapter_for(self)


class DjqTaskBackend(compat.BaseTaskBackend):  # type: ignore[misc]
    task_class = DjqTask

    supports_defer = True
    supports_priority = True
    supports_get_result = True
    supports_async_task = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.params = params

    def queue_for(self, queue_name: str) -> str:
        """The djq queue a Django queue name stands for."""
        return djq_settings.DEFAULT_QUEUE if queue_name == compat.DEFAULT_TASK_QUEUE_NAME else queue_name

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        adapter = adapter_for(task)
        route = route_for(adapter.name)
        options: dict[str, Any] = {"eta": task.run_after}
        # Django's defaults defer to DJQ_TASK_ROUTES; values a task chose win over them.
        if task.queue_name != compat.DEFAULT_TASK_QUEUE_NAME or "queue" not in route:
            options["queue"] = self.queue_for(task.queue_name)
        if task.priority != compat.DEFAULT_TASK_PRIORITY or "priority" not in route:
            options["priority"] = results.priority_for(task.priority, djq_settings.BROKER_URL)
        return adapter.send(task, args, kwargs, **options)[0]

    def get_result(self, result_id: str) -> Any:
        meta = get_backend().get(result_id) if isinstance(result_id, str) else None
        if meta is None:
            raise compat.TaskResultDoesNotExist(f"no task result with id {result_id!r}")
        try:
            djq_task = registry.get(meta.task_name or "")
        except NotRegistered:
            djq_task = None
        if not isinstance(djq_task, DjangoTask):
            raise compat.TaskResultDoesNotExist(
                f"{result_id!r} is a result of {meta.task_name!r}, which is not a Django task in this process"
            )
        return results.from_meta(djq_task.django_task, meta, self.alias)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        where = f"TASKS[{self.alias!r}]"
        errors: list[checks.CheckMessage] = []
        if self.options:
            errors.append(checks.Error(
                f"{where}: djq's backend takes no OPTIONS (got {', '.join(map(str, self.options))})",
                hint="configure djq with its DJQ_* settings", id="djq.E010"))
        queues = self.params.get("QUEUES", [compat.DEFAULT_TASK_QUEUE_NAME])
        if isinstance(queues, str) or not isinstance(queues, (list, tuple, set, frozenset)) \
                or not all(isinstance(q, str) and q.strip() for q in queues):
            errors.append(checks.Error(f"{where}: QUEUES must be a list of queue names, got {queues!r}",
                                       id="djq.E010"))
            return errors
        served = _served_queues()
        for name in sorted(queues):
            queue = self.queue_for(name)
            if queue not in served:
                errors.append(checks.Warning(
                    f"{where}: queue {name!r} (djq queue {queue!r}) is neither served by workers started "
                    "without -Q nor a queue DJQ_TASK_ROUTES sends to",
                    hint=f"start a worker for it: manage.py djq_worker -Q {queue}, or add it to DJQ_WORKER_QUEUES",
                    id="djq.W010"))
        return errors


def _served_queues() -> set[str]:
    """Queues a worker serves by default, and queues DJQ_TASK_ROUTES sends to."""
    served = set(djq_settings.WORKER_QUEUES or [djq_settings.DEFAULT_QUEUE])
    routes = djq_settings.TASK_ROUTES or {}
    for route in (routes.values() if isinstance(routes, dict) else (r for _, r in routes)):
        if isinstance(route, str):
            served.add(route)
        elif isinstance(route, dict) and isinstance(route.get("queue"), str):
            served.add(route["queue"])
    return served
