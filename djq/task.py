"""``Task`` (and ``AsyncTask``, from an ``async def``): a djq task, and sending it.

``@task`` (djq/decorators.py) makes them. Options are checked when the task is made, so a
typo is an error at import time, not a surprise in production.
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Generic, Iterable, NoReturn, ParamSpec, TypeVar

from . import enqueue
from .conf import djq_settings
from .context import EMPTY, RequestContext, current_request
from .enqueue import check_args, check_kwargs, check_limit, check_priority
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


class Task(Generic[P, R]):
    """A function that can run on a djq worker. Call it to run inline; ``delay()`` to enqueue."""

    OPTIONS = frozenset({
        "name", "bind", "queue", "priority", "ignore_result", "acks_late", "time_limit",
        "soft_time_limit", "max_retries", "default_retry_delay", "rate_limit", "reject_on_worker_lost",
        "autoretry_for", "dont_autoretry_for", "retry_backoff", "retry_backoff_max", "retry_jitter", "retry_kwargs",
        "typing",
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
        self.priority = check_priority(options.get("priority"))
        self.ignore_result: bool = bool(options.get("ignore_result", False))
        acks_late = options.get("acks_late")
        self._acks_late: bool | None = None if acks_late is None else bool(acks_late)
        self.time_limit = check_limit("time_limit", options.get("time_limit"))
        self.soft_time_limit = check_limit("soft_time_limit", options.get("soft_time_limit"))
        if self.time_limit and self.soft_time_limit and self.soft_time_limit >= self.time_limit:
            raise TaskOptionError(
                f"soft_time_limit ({self.soft_time_limit}) must be below time_limit ({self.time_limit})"
            )
        self.max_retries: int | None = options.get("max_retries", 3)
        if self.max_retries is not None and (isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0):
            raise TaskOptionError(f"max_retries must be a non-negative integer or None, got {self.max_retries!r}")
        self.default_retry_delay = check_limit("default_retry_delay", options.get("default_retry_delay", 180))
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
        self.retry_backoff_max = check_limit("retry_backoff_max", options.get("retry_backoff_max", 600))
        self.retry_jitter = bool(options.get("retry_jitter", True))
        self.retry_kwargs = check_retry_kwargs(options.get("retry_kwargs"))
        # typing=False: the function takes what its signature does not say (Celery's name)
        self.typing = bool(options.get("typing", True))
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", self.name)
        self.__module__ = func.__module__
        self.__qualname__ = getattr(func, "__qualname__", self.name)
        self.__wrapped__ = func
        registry.register(self)

    #: an ``async def`` task (AsyncTask)
    is_async = False

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
        **celery_options: Any,
    ) -> AsyncResult[R]:
        """Enqueue with options; validates them and returns an AsyncResult at once.

        ``argsrepr``/``kwargsrepr`` replace the shortened ``repr`` of the arguments that
        results and the admin show (e.g. to hide a secret, as in Celery). ``headers`` adds
        message headers the worker sees in ``task.request.headers``.
        ``link``/``link_error``: signatures (or lists) to call on success (with the result)
        or on failure (with this task's id). ``embed``, ``group_id``, ``parent_id`` and
        ``root_id`` are set by the canvas. Options of Celery's ``apply_async`` that djq has
        no use for (``reply_to``, ``exchange``, stamping, ...) are accepted and ignored;
        ``routing_key`` names the queue when ``queue`` does not.
        """
        enqueue.check_call(self, args, kwargs)
        if celery_options:
            queue = queue or enqueue.celery_queue(self.name, celery_options)
        if djq_settings.TASK_ALWAYS_EAGER:
            return self.apply(args, kwargs, task_id=task_id)
        resolved = enqueue.resolve(
            self, countdown=countdown, eta=eta, expires=expires, queue=queue, priority=priority,
            ignore_result=ignore_result, time_limit=time_limit, soft_time_limit=soft_time_limit,
            headers=headers, link=link, link_error=link_error, embed=embed, group_id=group_id,
            parent_id=parent_id, root_id=root_id,
        )
        message = enqueue.build(resolved, args, kwargs, task_id=task_id, argsrepr=argsrepr, kwargsrepr=kwargsrepr)
        enqueue.send(message)
        return AsyncResult(message.task_id, task_name=self.name)

    def delay_many(self, calls: Iterable[tuple[Any, ...] | list[Any] | dict[str, Any]]) -> list[AsyncResult[R]]:
        """Enqueue one task per element: ``add.delay_many([(1, 2), (3, 4)])``.

        Each element is a tuple (or list) of positional arguments or a dict of keyword
        arguments. Every message is encoded before any is sent (a bad element raises
        naming its index, and nothing is sent); then they go a chunk per round trip. The
        same transactional rules as ``delay()``. Returns one AsyncResult per element, in order.
        """
        return self.apply_many(calls)

    def apply_many(self, calls: Iterable[tuple[Any, ...] | list[Any] | dict[str, Any]],
                   **options: Any) -> list[AsyncResult[R]]:
        """``delay_many`` with options common to every call (``queue=``, ``countdown=``,
        ``priority=``, ... as ``apply_async`` takes them, except ``task_id``, ``argsrepr``
        and ``kwargsrepr``, which belong to one call)."""
        per_call = {"task_id", "argsrepr", "kwargsrepr"} & set(options)
        if per_call:
            raise TaskOptionError(f"apply_many() options are common to every call; {', '.join(sorted(per_call))} "
                                  "belongs to one call (use apply_async for it)")
        if djq_settings.TASK_ALWAYS_EAGER or type(self).apply_async is not Task.apply_async:
            # eager runs, and subclasses that send their own way, keep their apply_async
            return [self.apply_async(*enqueue.split_call(i, item, self.name), **options) for i, item in enumerate(calls)]
        messages = enqueue.build_many(enqueue.resolve(self, **options), calls, self)
        enqueue.send_many(messages)
        return [AsyncResult(message.task_id, task_name=self.name) for message in messages]

    def apply(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        task_id: str | None = None,
    ) -> EagerResult[R]:
        """Run in this process, now, the way a worker would (for tests); nothing is stored."""
        from .worker.trace import run_eager

        return run_eager(self, check_args(args), check_kwargs(kwargs), task_id or str(uuid.uuid4()))

    # -- from async code (an async view, an async task) -------------------------------
    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """``delay()`` for async code: sends without blocking the event loop."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(self, args: tuple[Any, ...] | list[Any] | None = None,
                           kwargs: dict[str, Any] | None = None, **options: Any) -> AsyncResult[R]:
        """``apply_async()`` for async code, with the same options.

        It runs in Django's thread-sensitive thread (``sync_to_async``'s default, where
        Django's async ORM runs too), so it sends outside any transaction: for an enqueue
        that commits with your writes, put both in one sync function with
        ``transaction.atomic()`` and await it with ``sync_to_async`` (docs/pools.md).
        """
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.apply_async)(args, kwargs, **options)

    def AsyncResult(self, task_id: str) -> AsyncResult[R]:  # noqa: N802 - Celery's spelling, users know it
        return AsyncResult(task_id, task_name=self.name)


class AsyncTask(Task[P, R]):
    """A task made from an ``async def``: calling it inline returns a coroutine; on an
    ``-P asyncio`` worker it runs on the event loop, on other pools in a loop of its own."""

    is_async = True

    def run(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, R]:  # type: ignore[override]
        return super().run(*args, **kwargs)  # type: ignore[return-value]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:  # type: ignore[override]
        return self.run(*args, **kwargs)

    async def aupdate_state(self, task_id: str | None = None, state: str = "PROGRESS", meta: Any = None) -> None:
        """``update_state()`` from a coroutine: waits for the store in a thread of the
        loop's executor (not Django's thread-sensitive one, which async ORM calls of every
        task share), keeping the task's request context."""
        from asgiref.sync import sync_to_async

        await sync_to_async(self.update_state, thread_sensitive=False)(task_id, state, meta)

    async def aretry(self, exc: BaseException | None = None, *, countdown: float | None = None,
                     eta: datetime | None = None, max_retries: int | None = None,
                     args: Any = None, kwargs: Any = None) -> NoReturn:
        """``retry()`` from a coroutine (``await self.aretry(exc=exc, countdown=10)``): the
        retry is sent from a thread, then Retry (or ``exc`` when retries are used up) is raised."""
        from asgiref.sync import sync_to_async

        await sync_to_async(self.retry, thread_sensitive=False)(exc, countdown=countdown, eta=eta,
                                                                  max_retries=max_retries, args=args, kwargs=kwargs)
        raise DjqError(f"{self.name}.retry() returned instead of raising")
