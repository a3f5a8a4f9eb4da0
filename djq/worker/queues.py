"""Which queues a worker serves: ``-Q a,b``, ``-Q '*'`` and ``--exclude-queues``.

``*`` stands for every queue djq knows of when the worker starts:

- ``DJQ_DEFAULT_QUEUE`` and ``DJQ_WORKER_QUEUES``;
- every queue ``DJQ_TASK_ROUTES`` sends to;
- every queue a registered task names in its decorator (``@task(queue=...)``, and a
  Django ``@task(queue_name=...)`` through its djq task);
- the ``QUEUES`` of each ``TASKS`` backend that is djq's;
- on ``djq://``, every queue that has a message in the queue table.

On Redis and RabbitMQ djq does not list the broker's queues (other applications' queues
live there too), so a queue only named in a call's ``queue=`` is served by ``*`` on
``djq://`` once a message waits in it, and on other brokers only when named with ``-Q``.
The list is taken once, at start; djq's own control, reply and event queues, and Celery's
event and mailbox queues, are never in it.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..conf import djq_settings
from ..exceptions import ConfigurationError
from ..messaging.routing import route_queues
from ..registry import registry

ALL = "*"
#: djq's own queues (remote control, replies, events) and Celery's event and mailbox
#: queues: never task queues
INTERNAL_PREFIXES = ("djq.control.", "djq.reply.", "djq.events.", "celeryev.")
INTERNAL_SUFFIXES = (".pidbox",)


def parse(text: str | None) -> list[str] | None:
    """``a, b`` -> ``["a", "b"]``; None for no text."""
    if not text:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def resolve(given: list[str] | None, exclude: Iterable[str] = (), broker_url: str | None = None) -> list[str]:
    """The queues to consume: the given ones (``*`` expanded) or the defaults, minus ``exclude``."""
    queues = given or list(djq_settings.WORKER_QUEUES or [djq_settings.DEFAULT_QUEUE])
    if ALL in queues:
        queues = [q for q in queues if q != ALL] + known_queues(broker_url or djq_settings.BROKER_URL)
    excluded = set(exclude)
    served = [q for q in dict.fromkeys(queues) if q not in excluded]
    if not served:
        raise ConfigurationError(f"no queue left to consume: {', '.join(sorted(excluded))} excluded from "
                                 f"{', '.join(dict.fromkeys(queues)) or 'nothing'}")
    return served


def known_queues(broker_url: str) -> list[str]:
    names = [djq_settings.DEFAULT_QUEUE, *(djq_settings.WORKER_QUEUES or [])]
    names += route_queues()
    for name in registry.names():
        task = registry.get(name)
        django_task = getattr(task, "django_task", None)  # a Django @task: its queue_name
        queue = task.queue or (django_task and django_task.queue_name)
        if queue:
            names.append(djq_settings.DEFAULT_QUEUE if django_task and queue == "default" else queue)
    names += _django_task_queues()
    if broker_url.split("://", 1)[0] == "djq":
        names += _queues_with_messages(broker_url)
    return sorted(n for n in set(names) if not n.startswith(INTERNAL_PREFIXES) and not n.endswith(INTERNAL_SUFFIXES))


def _django_task_queues() -> list[str]:
    from django.conf import settings

    from ..contrib.tasks import configured_aliases

    configured: Any = getattr(settings, "TASKS", None) or {}
    names: list[str] = []
    for alias in configured_aliases():
        for queue in configured[alias].get("QUEUES") or []:
            if isinstance(queue, str) and queue:
                names.append(djq_settings.DEFAULT_QUEUE if queue == "default" else queue)
    return names


def _queues_with_messages(broker_url: str) -> list[str]:
    from ..messaging.producer import embedded_alias
    from ..models import QueueMessage

    rows = QueueMessage.objects.using(embedded_alias(broker_url)).values_list("queue", flat=True).distinct()
    return list(rows.order_by())
