"""AsyncResult: the handle ``delay()`` returns, reading task state from the result backend."""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Generic, TypeVar

from . import states
from .context import current_request
from .exceptions import DjqError, TaskRevokedError, TimeoutError

R = TypeVar("R")


class AsyncResult(Generic[R]):
    """The state and outcome of one task, by id."""

    def __init__(self, id: str, *, task_name: str | None = None) -> None:
        self.id = id
        self.task_name = task_name
        self._parent: AsyncResult[Any] | GroupResult | None = None
        self._parent_known = False

    @property
    def parent(self) -> AsyncResult[Any] | GroupResult | None:
        """The task (or chord header group) before this one in a chain, if any."""
        if not self._parent_known:
            meta = self._meta()
            parent_id = meta.parent_id if meta else None
            self._parent = AsyncResult(parent_id) if parent_id else None
            self._parent_known = bool(meta and meta.state in states.READY_STATES)
        return self._parent

    @parent.setter
    def parent(self, value: AsyncResult[Any] | GroupResult | None) -> None:
        self._parent, self._parent_known = value, True

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM") -> None:
        """Stop this task: it will not start; with ``terminate`` a running one is killed (prefork)."""
        from .control import revoke

        revoke([self.id], terminate=terminate, signal=signal)

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id} {self.task_name or ''}>".replace(" >", ">")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def task_id(self) -> str:
        return self.id

    def _meta(self) -> Any:
        from .backends import get_backend

        return get_backend().get(self.id)

    @property
    def state(self) -> str:
        """PENDING until a worker records anything (an unknown id is PENDING too)."""
        meta = self._meta()
        return meta.state if meta else states.PENDING

    status = state

    @property
    def result(self) -> Any:
        """The return value, the exception of a failure, or the meta of a custom state."""
        meta = self._meta()
        return meta.result if meta else None

    info = result

    @property
    def traceback(self) -> str | None:
        meta = self._meta()
        return meta.traceback if meta else None

    @property
    def date_done(self) -> datetime | None:
        meta = self._meta()
        return meta.date_done if meta else None

    @property
    def retries(self) -> int:
        meta = self._meta()
        return meta.retries if meta else 0

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.1) -> R:
        """Wait for the task to finish and return its value (or raise its exception).

        On PostgreSQL it sleeps until the worker's store announces the end (backends/wake.py);
        it also polls the backend, starting at 1 ms (SQLite) or 5 ms and backing off to
        ``interval``.
        """
        from .backends import get_backend
        from .backends.wake import announced, first_poll, listener_for

        request = current_request.get()
        if request is not None and not request.is_eager:
            raise DjqError(
                "never call AsyncResult.get() inside a task: it can deadlock the worker "
                "(use a chain or a callback instead)"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        backend = get_backend()
        listener = listener_for(backend)
        delay = first_poll(str(getattr(backend, "alias", "default")))
        while True:
            woken = listener.watch(self.id) if listener is not None else None
            try:
                meta = self._meta()
                if meta is not None and meta.state in states.READY_STATES:
                    return self._outcome(meta.state, meta.result, propagate)
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"task {self.id} was not ready after {timeout} s")
                wait = delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0))
                if woken is None:
                    time.sleep(wait)
                elif woken.wait(wait) and (end := announced(woken, backend)) is not None:
                    return self._outcome(*end, propagate)
            finally:
                if woken is not None:
                    listener.unwatch(self.id, woken)  # type: ignore[union-attr]
            delay = min(delay * 2, interval)

    async def astate(self) -> str:
        """``state`` for async code (an async view): read without blocking the event loop."""
        from asgiref.sync import sync_to_async

        return await sync_to_async(lambda: self.state)()

    async def aget(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.1) -> R:
        """``get()`` for async code: awaits the task's end without blocking the event loop.

        Each look at the backend runs in Django's thread-sensitive thread (as the async
        ORM does); between looks it sleeps on the loop, backing off from 1-5 ms to
        ``interval``. On PostgreSQL the wake listener (backends/wake.py) cuts a sleep
        short when the worker announces the end. No thread is held while waiting, so
        thousands of requests may wait at once.
        """
        import asyncio

        from asgiref.sync import sync_to_async

        from .backends import get_backend
        from .backends.wake import announced, first_poll, listener_for

        deadline = None if timeout is None else time.monotonic() + timeout
        backend = get_backend()
        listener = listener_for(backend)
        delay = first_poll(str(getattr(backend, "alias", "default")))
        read = sync_to_async(self._meta)
        while True:
            woken = listener.watch(self.id) if listener is not None else None
            try:
                meta = await read()
                if meta is not None and meta.state in states.READY_STATES:
                    return self._outcome(meta.state, meta.result, propagate)
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"task {self.id} was not ready after {timeout} s")
                wait = delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0))
                end = time.monotonic() + wait
                while not (woken is not None and woken.is_set()) and time.monotonic() < end:
                    await asyncio.sleep(min(end - time.monotonic(), 0.01))
                if (stored := announced(woken, backend)) is not None:
                    return self._outcome(*stored, propagate)
            finally:
                if woken is not None:
                    listener.unwatch(self.id, woken)  # type: ignore[union-attr]
            delay = min(delay * 2, interval)

    def _outcome(self, state: str, value: Any, propagate: bool) -> R:
        if propagate and state == states.FAILURE:
            if isinstance(value, BaseException):
                raise value
            raise DjqError(f"task {self.id} failed: {value!r}")
        if propagate and state == states.REVOKED:
            raise TaskRevokedError(f"task {self.id} was revoked: {value}")
        return value  # type: ignore[no-any-return]

    def forget(self) -> None:
        """Delete the stored result."""
        from .backends import get_backend

        get_backend().forget(self.id)


class GroupResult:
    """The results of a group's tasks, in order. ``save()``d by the group, ``restore(id)`` later."""

    def __init__(self, id: str, results: list[AsyncResult[Any]]) -> None:
        self.id = id
        self.results = list(results)

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} ({len(self.results)} tasks)>"

    def __iter__(self) -> Any:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> AsyncResult[Any]:
        return self.results[index]

    def _states(self) -> list[str]:
        from .backends import get_backend

        found = get_backend().states([r.id for r in self.results])
        return [found.get(r.id, states.PENDING) for r in self.results]

    def completed_count(self) -> int:
        return sum(state == states.SUCCESS for state in self._states())

    def ready(self) -> bool:
        return all(state in states.READY_STATES for state in self._states())

    def successful(self) -> bool:
        return all(state == states.SUCCESS for state in self._states())

    def failed(self) -> bool:
        return any(state == states.FAILURE for state in self._states())

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.1) -> list[Any]:
        """Wait for every task; their values in order (the first failure raises)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for result in self.results:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            values.append(result.get(timeout=left, propagate=propagate, interval=interval))
        return values

    join = get

    def save(self) -> None:
        from .backends import get_backend

        get_backend().save_group(self.id, [r.id for r in self.results])

    @classmethod
    def restore(cls, group_id: str) -> GroupResult | None:
        from .backends import get_backend

        ids = get_backend().restore_group(group_id)
        return None if ids is None else cls(group_id, [AsyncResult(task_id) for task_id in ids])

    def forget(self) -> None:
        from .backends import get_backend

        get_backend().forget_group(self.id)
        for result in self.results:
            result.forget()

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM") -> None:
        from .control import revoke

        revoke([r.id for r in self.results], terminate=terminate, signal=signal)


class EagerResult(AsyncResult[R]):
    """The outcome of ``Task.apply()``: held in memory, never stored."""

    def __init__(self, id: str, state: str, value: Any, traceback: str | None = None,
                 *, task_name: str | None = None) -> None:
        super().__init__(id, task_name=task_name)
        self._state = state
        self._value = value
        self._traceback = traceback

    def _meta(self) -> Any:
        from .backends.base import ResultMeta

        return ResultMeta(task_id=self.id, state=self._state, result=self._value, traceback=self._traceback)

    @property
    def state(self) -> str:
        return self._state

    status = state

    @property
    def result(self) -> Any:
        return self._value

    info = result

    @property
    def traceback(self) -> str | None:
        return self._traceback

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.1) -> R:
        return self._outcome(self._state, self._value, propagate)

    def forget(self) -> None:
        """Nothing is stored for an eager result."""
