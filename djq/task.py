"""``@task``: turning a function into a djq Task, and sending it.

Options are checked when the decorator runs, so a typo is an error at import time, not a
surprise in production.
"""
from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from .conf import djq_settings
from .context import EMPTY, RequestContext, current_request
from .exceptions import TaskOptionError
from .registry import registry
from .result import AsyncResult, EagerResult

P = ParamSpec("P")
R = TypeVar("R")

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*$")
_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: str | None) -> float | None:
    """``"10/m"`` -> tasks per second; None means no limit."""
    if value is None:
        return None
    match = _RATE_RE.match(str(value))
    if not match:
        raise TaskOptionError(f"rate_limit {value!r} must look like '10/s', '100/m' or '5/h'")
    return float(match.group(1)) / _RATE_UNITS[match.group(2)]


def _check_limit(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise TaskOptionError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _check_priority(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise TaskOptionError(f"priority must be an integer from 0 to 255 (higher runs first), got {value!r}")
    return value


class Task(Generic[P, R]):
    """A function that can run on a djq worker. Call it to run inline; ``delay()`` to enqueue."""

    OPTIONS = frozenset({
        "name", "bind", "queue", "priority", "ignore_result", "acks_late", "time_limit",
        "soft_time_limit", "max_retries", "default_retry_delay", "rate_limit", "reject_on_worker_lost",
    })

    def __init__(self, func: Callable[..., R], **options: Any) -> None:
        unknown = set(options) - self.OPTIONS
        if unknown:
            raise TaskOptionError(
                f"@task on {func.__module__}.{func.__qualname__}: unknown option(s) "
                f"{', '.join(sorted(unknown))}; valid options are {', '.join(sorted(self.OPTIONS))}"
            )
        if not callable(func):
            raise TaskOptionError(f"@task needs a function, got {func!r}")
        self.func = func
        self.name: str = options.get("name") or f"{func.__module__}.{func.__qualname__}"
        if not isinstance(self.name, str):
            raise TaskOptionError(f"task name must be a string, got {self.name!r}")
        self.bind: bool = bool(options.get("bind", False))
        self.queue: str | None = options.get("queue")
        if self.queue is not None and (not isinstance(self.queue, str) or not self.queue):
            raise TaskOptionError(f"queue must be a non-empty string, got {self.queue!r}")
        self.priority = _check_priority(options.get("priority"))
        self.ignore_result: bool = bool(options.get("ignore_result", False))
        acks_late = options.get("acks_late")
        self._acks_late: bool | None = None if acks_late is None else bool(acks_late)
        self.time_limit = _check_limit("time_limit", options.get("time_limit"))
        self.soft_time_limit = _check_limit("soft_time_limit", options.get("soft_time_limit"))
        if self.time_limit and self.soft_time_limit and self.soft_time_limit >= self.time_limit:
            raise TaskOptionError(
                f"soft_time_limit ({self.soft_time_limit}) must be below time_limit ({self.time_limit})"
            )
        self.max_retries: int | None = options.get("max_retries", 3)
        if self.max_retries is not None and (isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0):
            raise TaskOptionError(f"max_retries must be a non-negative integer or None, got {self.max_retries!r}")
        self.default_retry_delay = _check_limit("default_retry_delay", options.get("default_retry_delay", 180))
        self.reject_on_worker_lost = bool(options.get("reject_on_worker_lost", False))
        self.rate_limit: str | None = options.get("rate_limit")
        self.rate_per_second = parse_rate(self.rate_limit)
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", self.name)
        self.__module__ = func.__module__
        self.__qualname__ = getattr(func, "__qualname__", self.name)
        self.__wrapped__ = func
        registry.register(self)

    def __repr__(self) -> str:
        return f"<djq task {self.name}>"

    @property
    def acks_late(self) -> bool:
        return djq_settings.TASK_ACKS_LATE if self._acks_late is None else self._acks_late

    @property
    def request(self) -> RequestContext:
        """The context of the current execution of this task (empty outside a worker)."""
        return current_request.get() or EMPTY

    def run(self, *args: Any, **kwargs: Any) -> R:
        if self.bind:
            return self.func(self, *args, **kwargs)
        return self.func(*args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.run(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Enqueue with these arguments; returns at once with the task id."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: float | datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        ignore_result: bool | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
    ) -> AsyncResult[R]:
        """Enqueue with options; validates them and returns an AsyncResult at once."""
        from .messaging import producer
        from .messaging.protocol import encode_task
        from .messaging.routing import route_for

        if djq_settings.TASK_ALWAYS_EAGER:
            return self.apply(args, kwargs, task_id=task_id)
        args = _check_args(args)
        kwargs = _check_kwargs(kwargs)
        eta = _resolve_eta(countdown, eta)
        task_id = task_id or str(uuid.uuid4())
        if not isinstance(task_id, str):
            raise TaskOptionError(f"task_id must be a string, got {task_id!r}")
        parent = current_request.get()
        route = route_for(self.name)
        queue_name = queue or route.get("queue") or self.queue or djq_settings.DEFAULT_QUEUE
        if priority is None:
            priority = route.get("priority", self.priority)
        message = encode_task(
            self.name,
            task_id,
            args,
            kwargs,
            queue=queue_name,
            serializer=djq_settings.TASK_SERIALIZER,
            eta=eta,
            expires=_resolve_expires(expires),
            timelimit=(
                _check_limit("time_limit", time_limit) or self.time_limit,
                _check_limit("soft_time_limit", soft_time_limit) or self.soft_time_limit,
            ),
            root_id=(parent.root_id or parent.id) if parent and not parent.is_eager else None,
            parent_id=parent.id if parent and not parent.is_eager else None,
            ignore_result=self.ignore_result if ignore_result is None else bool(ignore_result),
            priority=_check_priority(priority),
        )
        sent_at = time.time()
        producer.send(message)
        if djq_settings.TASK_SEND_SENT_EVENT:
            from .messaging.events import send_task_sent

            send_task_sent(message, sent_at)
        return AsyncResult(task_id, task_name=self.name)

    def apply(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        task_id: str | None = None,
    ) -> EagerResult[R]:
        """Run in this process, now, the way a worker would (for tests); nothing is stored."""
        from .worker.trace import run_eager

        return run_eager(self, _check_args(args), _check_kwargs(kwargs), task_id or str(uuid.uuid4()))

    def AsyncResult(self, task_id: str) -> AsyncResult[R]:  # noqa: N802 - Celery's spelling, users know it
        return AsyncResult(task_id, task_name=self.name)


def _check_args(args: Any) -> list[Any]:
    if args is None:
        return []
    if not isinstance(args, (list, tuple)):
        raise TaskOptionError(f"args must be a list or tuple, got {type(args).__name__}")
    return list(args)


def _check_kwargs(kwargs: Any) -> dict[str, Any]:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise TaskOptionError(f"kwargs must be a dict, got {type(kwargs).__name__}")
    return dict(kwargs)


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


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *, name: str | None = ..., bind: Literal[False] = ..., queue: str | None = ..., priority: int | None = ...,
    ignore_result: bool = ..., acks_late: bool | None = ..., time_limit: float | None = ...,
    soft_time_limit: float | None = ..., max_retries: int | None = ..., default_retry_delay: float = ...,
    rate_limit: str | None = ..., reject_on_worker_lost: bool = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
@overload
def task(
    *, name: str | None = ..., bind: Literal[True], queue: str | None = ..., priority: int | None = ...,
    ignore_result: bool = ..., acks_late: bool | None = ..., time_limit: float | None = ...,
    soft_time_limit: float | None = ..., max_retries: int | None = ..., default_retry_delay: float = ...,
    rate_limit: str | None = ..., reject_on_worker_lost: bool = ...,
) -> Callable[[Callable[Concatenate[Any, P], R]], Task[P, R]]: ...
def task(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make ``func`` a djq task: ``@task`` or ``@task(queue="emails", acks_late=True, ...)``."""
    if func is not None:
        if options:
            raise TaskOptionError("use @task(...) with keyword options, or bare @task")
        return Task(func)

    def decorate(fn: Callable[..., Any]) -> Task[Any, Any]:
        return Task(fn, **options)

    unknown = set(options) - Task.OPTIONS
    if unknown:  # fail at the decorator call itself, before any function is seen
        raise TaskOptionError(
            f"@task: unknown option(s) {', '.join(sorted(unknown))}; valid options are {', '.join(sorted(Task.OPTIONS))}"
        )
    return decorate


shared_task = task
