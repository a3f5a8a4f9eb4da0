"""``@task``: making a djq Task (or an AsyncTask, from an ``async def``) of a function.

Typed so that ``delay()`` checks its arguments against the function's (mypy), and the
awaited type of an ``async def`` is the task's result type.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Concatenate, Coroutine, Literal, ParamSpec, Protocol, TypeVar, overload

from .exceptions import TaskOptionError
from .task import AsyncTask, Task

P = ParamSpec("P")
R = TypeVar("R")


class _Decorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class _BoundDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[Concatenate[Any, P], R], /) -> Task[P, R]: ...


def _make(func: Callable[..., Any], **options: Any) -> Task[Any, Any]:
    cls = AsyncTask if inspect.iscoroutinefunction(func) else Task
    return cls(func, **options)


@overload
def task(func: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...
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
) -> _Decorator: ...
@overload
def task(
    *, name: str | None = ..., bind: Literal[True], queue: str | None = ..., priority: int | None = ...,
    ignore_result: bool = ..., acks_late: bool | None = ..., time_limit: float | None = ...,
    soft_time_limit: float | None = ..., max_retries: int | None = ..., default_retry_delay: float = ...,
    rate_limit: str | None = ..., reject_on_worker_lost: bool = ...,
    autoretry_for: Any = ..., dont_autoretry_for: Any = ..., retry_backoff: bool | float = ...,
    retry_backoff_max: float = ..., retry_jitter: bool = ..., retry_kwargs: dict[str, Any] | None = ...,
) -> _BoundDecorator: ...
def task(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make ``func`` a djq task: ``@task`` or ``@task(queue="emails", acks_late=True, ...)``."""
    if func is not None:
        if options:
            raise TaskOptionError("use @task(...) with keyword options, or bare @task")
        return _make(func)

    def decorate(fn: Callable[..., Any]) -> Task[Any, Any]:
        return _make(fn, **options)

    unknown = set(options) - Task.OPTIONS
    if unknown:  # fail at the decorator call itself, before any function is seen
        raise TaskOptionError(
            f"@task: unknown option(s) {', '.join(sorted(unknown))}; valid options are {', '.join(sorted(Task.OPTIONS))}"
        )
    return decorate


shared_task = task
