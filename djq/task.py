"""``@task``: turning a function into a djq Task, and sending it.

Options are checked when the decorator runs, so a typo is an error at import time, not a
surprise in production.
"""
from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from .conf import djq_settings
from .context import EMPTY, RequestContext, current_request
from .exceptions import DjqError, Retry, TaskOptionError
from .registry import registry
from .result import AsyncResult, EagerResult
from .retries import check_exception_classes, check_retry_kwargs
from .retries import retry as retry_task

if TYPE_CHECKING:
    from .canvas import Signature

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
        "autoretry_for", "dont_autoretry_for", "retry_backoff", "retry_backoff_max", "retry_jitter", "retry_kwargs",
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
        self.autoretry_for = check_exception_classes("autoretry_for", options.get("autoretry_for"))
        self.dont_autoretry_for = check_exception_classes("dont_autoretry_for", options.get("dont_autoretry_for"))
        backoff = options.get("retry_backoff", False)
        if backoff is True:
            backoff = 1
        if backoff is not False and (isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff <= 0):
            raise TaskOptionError(f"retry_backoff must be True, False or a positive number of seconds, got {backoff!r}")
        self.retry_backoff: float | bool = backoff
        self.retry_backoff_max = _check_limit("retry_backoff_max", options.get("retry_backoff_max", 600))
        self.retry_jitter = bool(options.get("retry_jitter", True))
        self.retry_kwargs = check_retry_kwargs(options.get("retry_kwargs"))
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

    def retry(self, exc: BaseException | None = None, *, countdown: float | None = None,
              eta: datetime | None = None, max_retries: int | None = None,
              args: Any = None, kwargs: Any = None) -> Retry:
        """Run this task again later; ``raise self.retry(exc=exc, countdown=10)``.

        Raises Retry (this run ends in RETRY), or ``exc`` / MaxRetriesExceededError when
        ``max_retries`` is used up. Only inside a task running on a worker or eagerly.
        """
        request = current_request.get()
        if request is None or request.task != self.name:
            raise DjqError(f"{self.name}.retry() can only be called while the task runs (use bind=True)")
        if request.is_eager:
            raise exc if exc is not None else DjqError(f"{self.name} asked for a retry while running eagerly")
        raise retry_task(self, request, exc=exc, countdown=countdown, eta=eta, max_retries=max_retries,
                         args=args, kwargs=kwargs)

    def update_state(self, task_id: str | None = None, state: str = "PROGRESS",
                     meta: Any = None) -> None:
        """Record a state (e.g. PROGRESS with ``{"current": 3, "total": 10}``) for this task."""
        from .backends import get_backend
        from .backends.base import TaskInfo

        if not isinstance(state, str) or not state:
            raise TaskOptionError(f"state must be a non-empty string, got {state!r}")
        request = current_request.get()
        task_id = task_id or (request.id if request else None)
        if not task_id:
            raise DjqError("update_state() needs a task_id outside a running task")
        mine = request is not None and request.id == task_id
        info = TaskInfo(task_id=task_id, task_name=self.name,
                        worker=request.hostname if mine and request else None,
                        queue=(request.queue or "") if mine and request else "",
                        retries=request.retries if mine and request else 0,
                        root_id=request.root_id if mine and request else None,
                        parent_id=request.parent_id if mine and request else None,
                        attempt=request.attempt if mine and request else 0,
                        acks_late=self.acks_late if mine else False)
        get_backend().store(info, state, result=meta)

    # -- canvas ---------------------------------------------------------------------
    def signature(self, args: Any = None, kwargs: Any = None, **options: Any) -> Signature:
        from .canvas import Signature

        return Signature(self.name, args, kwargs, options)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A partial call that a chain or callback completes with the previous result."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable call: the previous result is not passed to it."""
        return self.signature(args, kwargs, immutable=True)

    def map(self, items: Any) -> Signature:
        """One task that calls this task on each item and returns the list of results."""
        from .canvas import xmap

        return xmap(self, items)

    def starmap(self, items: Any) -> Signature:
        """One task that calls this task with each item as its arguments."""
        from .canvas import xstarmap

        return xstarmap(self, items)

    def chunks(self, items: Any, n: int) -> Any:
        """A group of starmap tasks, each over ``n`` of ``items``."""
        from .canvas import chunks

        return chunks(self, items, n)

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
        argsrepr: str | None = None,
        kwargsrepr: str | None = None,
        headers: dict[str, Any] | None = None,
        link: Any = None,
        link_error: Any = None,
        embed: dict[str, Any] | None = None,
        group_id: str | None = None,
        parent_id: str | None = None,
        root_id: str | None = None,
    ) -> AsyncResult[R]:
        """Enqueue with options; validates them and returns an AsyncResult at once.

        ``argsrepr``/``kwargsrepr`` replace the shortened ``repr`` of the arguments that
        results and the admin show (e.g. to hide a secret, as in Celery). ``headers`` adds
        message headers the worker sees in ``task.request.headers``.
        ``link``/``link_error``: signatures (or lists) to call on success (with the result)
        or on failure (with this task's id). ``embed``, ``group_id``, ``parent_id`` and
        ``root_id`` are set by the canvas.
        """
        from .canvas import embed_links
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
        embed = embed_links(embed, link, link_error)
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
            root_id=root_id or ((parent.root_id or parent.id) if parent and not parent.is_eager else None),
            parent_id=parent_id or (parent.id if parent and not parent.is_eager else None),
            group_id=group_id,
            embed=embed,
            ignore_result=self.ignore_result if ignore_result is None else bool(ignore_result),
            priority=_check_priority(priority),
            argsrepr=_check_repr("argsrepr", argsrepr),
            kwargsrepr=_check_repr("kwargsrepr", kwargsrepr),
            extra_headers=headers,
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


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *, name: str | None = ..., bind: Literal[False] = ..., queue: str | None = ..., priority: int | None = ...,
    ignore_result: bool = ..., acks_late: bool | None = ..., time_limit: float | None = ...,
    soft_time_limit: float | None = ..., max_retries: int | None = ..., default_retry_delay: float = ...,
    rate_limit: str | None = ..., reject_on_worker_lost: bool = ...,
    autoretry_for: Any = ..., dont_autoretry_for: Any = ..., retry_backoff: bool | float = ...,
    retry_backoff_max: float = ..., retry_jitter: bool = ..., retry_kwargs: dict[str, Any] | None = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
@overload
def task(
    *, name: str | None = ..., bind: Literal[True], queue: str | None = ..., priority: int | None = ...,
    ignore_result: bool = ..., acks_late: bool | None = ..., time_limit: float | None = ...,
    soft_time_limit: float | None = ..., max_retries: int | None = ..., default_retry_delay: float = ...,
    rate_limit: str | None = ..., reject_on_worker_lost: bool = ...,
    autoretry_for: Any = ..., dont_autoretry_for: Any = ..., retry_backoff: bool | float = ...,
    retry_backoff_max: float = ..., retry_jitter: bool = ..., retry_kwargs: dict[str, Any] | None = ...,
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
