"""Sending tasks: options checked once, protocol messages built, handed to the producer.

``Task.apply_async`` sends one call. ``Task.apply_many`` (and ``delay_many``) send many
calls of one task with options common to all, and ``group(...).apply_async`` the plain
signatures of a group: every message is built and encoded first, so an argument that
cannot be encoded raises ``EncodeError`` naming the element and nothing is sent; then
the producer sends them a chunk per round trip (``producer.send_many``).
"""
from __future__ import annotations

import inspect
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable

from . import pending
from .conf import djq_settings
from .context import current_request
from .exceptions import DjqError, EncodeError, TaskOptionError
from .messaging.protocol import MessageTemplate, OutgoingMessage

if TYPE_CHECKING:
    from .task import Task


def check_limit(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise TaskOptionError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_priority(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise TaskOptionError(f"priority must be an integer from 0 to 255 (higher runs first), got {value!r}")
    return value


def check_args(args: Any) -> list[Any]:
    if args is None:
        return []
    if not isinstance(args, (list, tuple)):
        raise TaskOptionError(f"args must be a list or tuple, got {type(args).__name__}")
    return list(args)


def check_kwargs(kwargs: Any) -> dict[str, Any]:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise TaskOptionError(f"kwargs must be a dict, got {type(kwargs).__name__}")
    return dict(kwargs)


def check_call(task: Task[Any, Any], args: Any, kwargs: Any) -> None:
    """TypeError at the caller when ``args``/``kwargs`` do not fit the task's function, as
    calling it would raise; skipped for ``@task(typing=False)`` (dynamic signatures)."""
    if not getattr(task, "typing", True):
        return
    signature = _signature(task)
    if signature is None:
        return
    args, kwargs = check_args(args), check_kwargs(kwargs)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{task.name}() called with the wrong arguments: {exc} "
                        "(nothing was sent; @task(typing=False) turns this check off)") from None


def _signature(task: Task[Any, Any]) -> inspect.Signature | None:
    cached = task.__dict__.get("_call_signature", False)
    if cached is not False:
        return cached
    try:
        signature: inspect.Signature | None = inspect.signature(task.func)
    except (TypeError, ValueError):  # a builtin or C callable without a readable signature
        signature = None
    # a bound task gets itself first, a Django task that takes_context its context
    passed_first = task.bind or bool(getattr(getattr(task, "django_task", None), "takes_context", False))
    if signature is not None and passed_first:
        params = list(signature.parameters.values())
        signature = signature.replace(parameters=params[1:]) if params else None
    task.__dict__["_call_signature"] = signature
    return signature


def _check_repr(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TaskOptionError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _resolve_eta(countdown: float | None, eta: datetime | None) -> datetime | None:
    if countdown is not None and eta is not None:
        raise TaskOptionError("give countdown or eta, not both")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, (int, float)):
            raise TaskOptionError(f"countdown must be a number of seconds, got {countdown!r}")
        return datetime.now(timezone.utc) + timedelta(seconds=countdown)
    if eta is not None:
        if not isinstance(eta, datetime):
            raise TaskOptionError(f"eta must be a datetime, got {type(eta).__name__}")
        return _aware(eta)
    return None


def _resolve_expires(expires: float | datetime | None) -> datetime | None:
    if expires is None:
        return None
    if isinstance(expires, datetime):
        return _aware(expires)
    if isinstance(expires, bool) or not isinstance(expires, (int, float)):
        raise TaskOptionError(f"expires must be seconds or a datetime, got {expires!r}")
    return datetime.now(timezone.utc) + timedelta(seconds=expires)


def celery_queue(task_name: str, options: dict[str, Any]) -> str | None:
    """Options only Celery's ``apply_async`` takes: checked against the names Celery uses
    (a typo is still an error), ignored, except ``routing_key``: the queue it names."""
    from .canvas import CELERY_OPTIONS

    unknown = set(options) - CELERY_OPTIONS
    if unknown:
        raise TaskOptionError(f"{task_name}.apply_async(): unknown option(s) {', '.join(sorted(unknown))}")
    routing_key = options.get("routing_key")
    return routing_key if isinstance(routing_key, str) and routing_key else None


def resolve(
    task: Task[Any, Any], *, countdown: float | None = None, eta: datetime | None = None,
    expires: float | datetime | None = None, queue: str | None = None, priority: int | None = None,
    ignore_result: bool | None = None, time_limit: float | None = None, soft_time_limit: float | None = None,
    headers: dict[str, Any] | None = None, link: Any = None, link_error: Any = None,
    embed: dict[str, Any] | None = None, group_id: str | None = None, parent_id: str | None = None,
    root_id: str | None = None,
) -> MessageTemplate:
    """The options of ``apply_async`` checked and worked out: what every message shares."""
    from .canvas import embed_links
    from .messaging.routing import route_for

    parent = current_request.get()
    if parent is not None and parent.is_eager:
        parent = None
    route = route_for(task.name)
    if priority is None:
        priority = route.get("priority", task.priority)
    return MessageTemplate.of(
        task.name,
        queue=queue or route.get("queue") or task.queue or djq_settings.DEFAULT_QUEUE,
        serializer=djq_settings.TASK_SERIALIZER,
        eta=_resolve_eta(countdown, eta),
        expires=_resolve_expires(expires),
        timelimit=(check_limit("time_limit", time_limit) or task.time_limit,
                   check_limit("soft_time_limit", soft_time_limit) or task.soft_time_limit),
        root_id=root_id or ((parent.root_id or parent.id) if parent else None),
        parent_id=parent_id or (parent.id if parent else None),
        group_id=group_id,
        embed=embed_links(embed, link, link_error),
        ignore_result=task.ignore_result if ignore_result is None else bool(ignore_result),
        priority=check_priority(priority),
        extra_headers=headers,
    )


def build(template: MessageTemplate, args: Any, kwargs: Any, *, task_id: str | None = None,
          argsrepr: str | None = None, kwargsrepr: str | None = None) -> OutgoingMessage:
    """One encoded message: a call added to a template from ``resolve``."""
    task_id = task_id or str(uuid.uuid4())
    if not isinstance(task_id, str):
        raise TaskOptionError(f"task_id must be a string, got {task_id!r}")
    return template.encode(task_id, check_args(args), check_kwargs(kwargs),
                           _check_repr("argsrepr", argsrepr), _check_repr("kwargsrepr", kwargsrepr))


def split_call(index: int, item: Any, task_name: str = "") -> tuple[Any, Any]:
    """An element of ``delay_many``: a tuple or list of positional arguments, or a dict of
    keyword arguments."""
    if isinstance(item, (list, tuple)):
        return item, None
    if isinstance(item, dict):
        return None, item
    raise TaskOptionError(
        f"element {index} of {task_name}.delay_many(): each element is a tuple (or list) of positional "
        f"arguments or a dict of keyword arguments, got {type(item).__name__} (wrap a single argument "
        "as (value,)); nothing was sent"
    )


def build_many(template: MessageTemplate, items: Iterable[Any],
               task: Task[Any, Any] | None = None) -> list[OutgoingMessage]:
    """Every element's message; the first bad element raises, naming its index."""
    messages = []
    for index, item in enumerate(items):
        args, kwargs = split_call(index, item, template.task_name)
        try:
            if task is not None:
                check_call(task, args, kwargs)
        except TypeError as exc:
            raise TypeError(f"element {index} of {template.task_name}.delay_many(): {exc}") from None
        try:
            messages.append(build(template, args, kwargs))
        except DjqError as exc:
            kind = EncodeError if isinstance(exc, EncodeError) else TaskOptionError
            raise kind(f"element {index} of {template.task_name}.delay_many(): {exc}; nothing was sent") from exc
    return messages


def send(message: OutgoingMessage) -> None:
    """Publish one message, with its PENDING row (djq/pending.py)."""
    from .messaging import producer

    sent_at = time.time()
    with pending.recorded([message], producer.broker_alias()) as undo:
        producer.send(message, on_failure=undo)
    _sent_events([message], sent_at)


def send_many(messages: list[OutgoingMessage]) -> None:
    """Publish a batch, with their PENDING rows: one INSERT per chunk beside the messages."""
    from .messaging import producer

    if not messages:
        return
    sent_at = time.time()
    with pending.recorded(messages, producer.broker_alias()) as undo:
        producer.send_many(messages, on_failure=undo)
    _sent_events(messages, sent_at)


def _sent_events(messages: list[OutgoingMessage], sent_at: float) -> None:
    if djq_settings.TASK_SEND_SENT_EVENT:
        from .messaging.events import send_task_sent

        for message in messages:
            send_task_sent(message, sent_at)
