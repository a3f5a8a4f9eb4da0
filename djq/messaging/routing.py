"""Routing: which queue (and priority) a task's messages go to.

``DJQ_TASK_ROUTES`` maps a task name or a glob (``"billing.*"``) to a queue name, or to a
dict with ``queue`` and/or ``priority``. Exact names win over globs; globs are tried in
the order written. Precedence when sending: the call's own ``queue=``/``priority=``, then
the routes, then the task's decorator options, then ``DJQ_DEFAULT_QUEUE``.

Priorities are 0-255, higher first, on ``djq://``. Redis and RabbitMQ have ten levels,
so a priority above 9 counts as 9 there.
"""
from __future__ import annotations

import fnmatch
from functools import lru_cache
from typing import Any

from django.core.signals import setting_changed

from ..conf import djq_settings
from ..exceptions import ConfigurationError

BROKER_MAX_PRIORITY = 9


def _normalise(pattern: Any, route: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigurationError(f"DJQ_TASK_ROUTES: {pattern!r} is not a task name or glob")
    if isinstance(route, str) and route:
        return pattern, {"queue": route}
    if isinstance(route, dict) and route and set(route) <= {"queue", "priority"}:
        queue, priority = route.get("queue"), route.get("priority")
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise ConfigurationError(f"DJQ_TASK_ROUTES[{pattern!r}]: queue must be a non-empty string")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                     or not 0 <= priority <= 255):
            raise ConfigurationError(f"DJQ_TASK_ROUTES[{pattern!r}]: priority must be an integer 0-255")
        return pattern, dict(route)
    raise ConfigurationError(
        f"DJQ_TASK_ROUTES[{pattern!r}] must be a queue name or a dict with 'queue' and/or 'priority', got {route!r}"
    )


@lru_cache(maxsize=1)
def _compiled() -> tuple[dict[str, dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    routes = djq_settings.TASK_ROUTES or {}
    items = routes.items() if isinstance(routes, dict) else routes
    exact: dict[str, dict[str, Any]] = {}
    globs: list[tuple[str, dict[str, Any]]] = []
    try:
        for pattern, route in items:
            pattern, route = _normalise(pattern, route)
            if any(ch in pattern for ch in "*?["):
                globs.append((pattern, route))
            else:
                exact[pattern] = route
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"DJQ_TASK_ROUTES must be a dict or a list of (pattern, route): {exc}") from exc
    return exact, globs


def route_queues() -> list[str]:
    """Every queue ``DJQ_TASK_ROUTES`` sends to, in the order written."""
    exact, globs = _compiled()
    routes = [*exact.values(), *(route for _, route in globs)]
    return list(dict.fromkeys(route["queue"] for route in routes if route.get("queue")))


def route_for(task_name: str) -> dict[str, Any]:
    exact, globs = _compiled()
    if task_name in exact:
        return exact[task_name]
    for pattern, route in globs:
        if fnmatch.fnmatchcase(task_name, pattern):
            return route
    return {}


def check_routes() -> None:
    """Raise ConfigurationError if DJQ_TASK_ROUTES is malformed (used by system checks)."""
    _compiled.cache_clear()
    _compiled()


def broker_priority(url: str, priority: int | None) -> int | None:
    """djq's priority (higher first) in the broker's own terms."""
    scheme = url.split("://", 1)[0]
    if priority is None or scheme == "djq":
        return priority
    level = min(max(priority, 0), BROKER_MAX_PRIORITY)
    if scheme.startswith("redis"):
        return BROKER_MAX_PRIORITY - level  # kombu's Redis transport serves 0 first
    return level


def queue_arguments(url: str) -> dict[str, Any]:
    """RabbitMQ orders by priority only in queues declared with x-max-priority."""
    if url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp"):
        return {"x-max-priority": BROKER_MAX_PRIORITY}
    return {}


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "DJQ_TASK_ROUTES":
        _compiled.cache_clear()


setting_changed.connect(_reset)
