"""The worker's result writer: the states of all pool slots, stored a batch at a time.

A worker stores two rows per task (STARTED, then the end), each one database round
trip when every slot writes its own. The writer takes the writes of every slot of a
worker process and stores whatever has gathered as one multi-row conditional upsert
(``DatabaseBackend.store_rows``), so under load one statement carries many tasks, and an
idle worker stores at once (no waiting for a batch to fill).

- ``put`` returns at once; ``store`` waits until its row is stored (and says whether
  it was, as ``ResultBackend.store`` does). Both keep the order of a task's writes:
  a second write of a task already waiting goes in the next statement.
- A waiting STARTED row is replaced by a later write of the same delivery (its end
  carries ``date_started``), so a task that ends before the flush costs one row.
- ``after(callback)`` runs ``callback`` once every write made before it is stored: the
  consumer acks, counts and sends events for a finished task only then.
- A lost database connection is retried with backoff until the worker stops; at stop the
  writer stores what is left (for up to ``patience`` seconds) before it returns.
- In a process forked from the worker, and once stopped, writes go straight to the
  backend.

``WriterBackend`` is the result backend of a worker process while its writer runs
(``install``): every ``store`` of the process, from a task's ``update_state`` or the
consumer, goes through the writer, in order with the writes waiting there.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from django.db import InterfaceError, OperationalError

from .. import states
from .base import ResultBackend, ResultMeta, TaskInfo

logger = logging.getLogger(__name__)

#: rows in one statement at most (SQLite 3.32+ allows 32,766 parameters: 18 columns each)
MAX_ROWS = 500
#: and result/traceback bytes: a batch of large results is split, not sent as one statement
MAX_BYTES = 4 << 20


class _Waiter:
    __slots__ = ("done", "stored", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.stored = False
        self.error: BaseException | None = None


@dataclass
class _Entry:
    row: dict[str, Any]
    waiters: list[_Waiter] = field(default_factory=list)


@dataclass
class _Batch:
    entries: dict[str, _Entry] = field(default_factory=dict)
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    #: bytes of results and tracebacks in it
    size: int = 0


def _replaceable(waiting: dict[str, Any], new: dict[str, Any]) -> bool:
    """A waiting STARTED row gives way to a later write of the same delivery."""
    return (waiting["state"] == states.STARTED and new["retries"] == waiting["retries"]
            and new["attempt"] == waiting["attempt"] and waiting["attempt"] != 0)


class ResultWriter:
    patience = 60.0

    def __init__(self, backend: Any, *, direct_stores: bool = False) -> None:
        #: a DatabaseBackend (``build_row`` and ``store_rows``)
        self.backend = backend
        #: a pool that runs one task at a time (solo): its STARTED goes straight to the
        #: database, overlapping the writer's store of the task before. With many slots,
        #: the writer's batches win (measured in docs/benchmarks.md).
        self.direct_stores = direct_stores
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._batches: deque[_Batch] = deque()
        #: the batch being stored, if any
        self._flushing: _Batch | None = None
        self._stopping = False
        self._running = False
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None
        self.rows_stored = 0
        self.statements = 0

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="djq-result-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Store what is waiting, then stop; later writes go straight to the backend."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=self.patience + 5 if timeout is None else timeout)
            if self._thread.is_alive():
                logger.error("the result writer did not finish storing within %.0fs", timeout or self.patience)
        self._running = False
        self._finish_left()

    def _usable(self) -> bool:
        return self._running and not self._stopping and os.getpid() == self._pid

    def accepting(self) -> bool:
        """``put`` queues without touching the database (the asyncio pool puts from its loop)."""
        return self._usable()

    # -- writing ---------------------------------------------------------------------
    def put(self, info: TaskInfo, state: str, **fields: Any) -> None:
        """Store later; raises EncodeError at once for a value that cannot be stored."""
        self.put_row(self.backend.build_row(info, state, **fields))

    def put_row(self, row: dict[str, Any]) -> None:
        """``put`` of a row built by ``build_row`` elsewhere (a prefork child)."""
        if not self._add(row, None):
            self.backend.store_rows([row])

    def store(self, info: TaskInfo, state: str, **fields: Any) -> bool:
        """Store now: queued and waited for; with ``direct_stores``, straight from this
        thread when no write of the task waits here or is being stored."""
        row = self.backend.build_row(info, state, **fields)
        if self.direct_stores and not self._holds(info.task_id):
            return info.task_id in self.backend.store_rows([row])
        waiter = _Waiter()
        if not self._add(row, waiter):
            return info.task_id in self.backend.store_rows([row])
        # the writer answers every waiter: stored, refused, or given up after ``patience``
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.stored

    def begin(self, info: TaskInfo, state: str, **fields: Any) -> Callable[[float], bool] | None:
        """Queue a write and return what waits for it (up to a timeout; True: stored), so
        the caller can do something else meanwhile; None when the writer takes no more
        writes. Raises EncodeError at once, as ``put`` does."""
        waiter = _Waiter()
        if not self._add(self.backend.build_row(info, state, **fields), waiter):
            return None

        def wait(timeout: float) -> bool:
            return waiter.done.wait(timeout) and waiter.stored

        return wait

    def _holds(self, task_id: str) -> bool:
        with self._lock:
            flushing = self._flushing
            return ((flushing is not None and task_id in flushing.entries)
                    or any(task_id in batch.entries for batch in self._batches))

    def after(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (in the writer's thread) once every earlier write is stored."""
        with self._lock:
            if self._usable() and (self._batches or self._flushing is not None):
                if not self._batches:
                    self._batches.append(_Batch())
                self._batches[-1].callbacks.append(callback)
                self._wake.notify()
                return
        callback()

    def _add(self, row: dict[str, Any], waiter: _Waiter | None) -> bool:
        """Queue ``row``; False when the writer takes no more writes (stopped, or this is
        a forked process): the caller stores it itself."""
        task_id = row["task_id"]
        size = len(row["result"] or "") + len(row["traceback"] or "")
        with self._lock:
            if not self._usable():
                return False
            batch = self._batches[-1] if self._batches else None
            if batch is not None and task_id in batch.entries:
                entry = batch.entries[task_id]
                if _replaceable(entry.row, row):
                    if row["date_started"] is None:
                        row["date_started"] = entry.row["date_started"]
                    entry.row = row
                    batch.size += size
                    if waiter is not None:
                        entry.waiters.append(waiter)
                    return True
                batch = None  # the second write of a task goes after the first
            # A batch with callbacks still takes rows: its callbacks need only the writes
            # made before them stored, and closing it would cost a statement per after().
            if batch is None or len(batch.entries) >= MAX_ROWS or batch.size + size > MAX_BYTES:
                batch = _Batch()
                self._batches.append(batch)
            batch.entries[task_id] = _Entry(row, [waiter] if waiter is not None else [])
            batch.size += size
            self._wake.notify()
            return True

    # -- the thread -------------------------------------------------------------------
    def _loop(self) -> None:
        from ..worker import dbhygiene

        try:
            while True:
                with self._lock:
                    while not self._batches and not self._stopping:
                        self._wake.wait()
                    if not self._batches:
                        return
                    batch = self._batches.popleft()
                    self._flushing = batch
                try:
                    self._flush(batch)
                finally:
                    with self._lock:
                        self._flushing = None
        finally:
            dbhygiene.close_all()

    def _flush(self, batch: _Batch) -> None:
        if batch.entries:
            stored, errors = self._write([entry.row for entry in batch.entries.values()])
            for task_id, entry in batch.entries.items():
                for waiter in entry.waiters:
                    waiter.stored = task_id in stored
                    waiter.error = errors.get(task_id)
                    waiter.done.set()
        for callback in batch.callbacks:
            try:
                callback()
            except Exception:
                logger.exception("a callback after storing results failed")

    def _write(self, rows: list[dict[str, Any]]) -> tuple[set[str], dict[str, BaseException]]:
        """Store ``rows``: the ids stored, and the error of each row that could not be.

        A lost connection is retried with backoff for up to ``patience`` seconds (the
        database restarting, a failover); then the rows are given up, logged by id, and
        their waiters get the error. Any other error, or one that leaves the connection
        usable (a statement timeout, a value the database refuses), splits the batch so
        that one row cannot hold the others back."""
        from ..worker import dbhygiene

        delay, deadline = 0.1, time.monotonic() + self.patience
        while True:
            try:
                stored = self.backend.store_rows(rows)
                self.rows_stored += len(rows)
                self.statements += 1
                return stored, {}
            except (OperationalError, InterfaceError) as exc:
                if len(rows) > 1 and self._connection_usable():
                    return self._write_each(rows)
                if time.monotonic() + delay > deadline:
                    logger.error("could not store %d task state(s) within %.0fs, given up: %s (tasks %s)",
                                 len(rows), self.patience, exc, ", ".join(row["task_id"] for row in rows[:20]))
                    return set(), {row["task_id"]: exc for row in rows}
                logger.warning("could not store %d task state(s) (%s); trying again in %.1fs", len(rows), exc, delay)
                dbhygiene.close_all()  # this thread's connections: the next try opens a new one
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:
                if len(rows) == 1:
                    logger.error("could not store the %s state of task %s: %s", rows[0]["state"],
                                 rows[0]["task_id"], exc)
                    return set(), {rows[0]["task_id"]: exc}
                return self._write_each(rows)

    def _connection_usable(self) -> bool:
        from django.db import connections

        alias = getattr(self.backend, "alias", "default")
        try:
            return bool(connections[alias].is_usable())
        except Exception:
            return False

    def _write_each(self, rows: list[dict[str, Any]]) -> tuple[set[str], dict[str, BaseException]]:
        """One row at a time, so one row the database refuses does not take the others down."""
        stored: set[str] = set()
        errors: dict[str, BaseException] = {}
        for row in rows:
            ok, failed = self._write([row])
            stored |= ok
            errors.update(failed)
        return stored, errors

    def _finish_left(self) -> None:
        """Writes that came in while stopping (or were left by a thread that died)."""
        with self._lock:
            batches, self._batches = list(self._batches), deque()
        for batch in batches:
            self._flush(batch)


class WriterBackend(ResultBackend):
    """The process's result backend while a writer runs: stores go through it."""

    def __init__(self, backend: ResultBackend, writer: ResultWriter) -> None:
        super().__init__(backend.option)
        self.inner = backend
        self.writer = writer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def store(self, info: TaskInfo, state: str, *, result: Any = None, traceback: str | None = None,
              date_started: datetime | None = None, date_done: datetime | None = None,
              runtime: float | None = None) -> bool:
        return self.writer.store(info, state, result=result, traceback=traceback, date_started=date_started,
                                 date_done=date_done, runtime=runtime)

    def put(self, info: TaskInfo, state: str, **fields: Any) -> None:
        self.writer.put(info, state, **fields)

    def get(self, task_id: str) -> ResultMeta | None:
        return self.inner.get(task_id)

    def running_on(self, worker: str, started_before: datetime) -> list[tuple[str, str, bool]]:
        return self.inner.running_on(worker, started_before)

    def mark_lost(self, task_id: str, worker: str, started_before: datetime, *, result: Any,
                  traceback: str) -> bool:
        return self.inner.mark_lost(task_id, worker, started_before, result=result, traceback=traceback)

    def note_lost(self, task_id: str, worker: str, started_before: datetime, note: str) -> bool:
        return self.inner.note_lost(task_id, worker, started_before, note)

    def forget(self, task_id: str) -> None:
        self.inner.forget(task_id)

    def describe(self) -> str:
        return self.inner.describe()

    def states(self, task_ids: list[str]) -> dict[str, str]:
        return self.inner.states(task_ids)

    def save_group(self, group_id: str, task_ids: list[str]) -> None:
        self.inner.save_group(group_id, task_ids)

    def restore_group(self, group_id: str) -> list[str] | None:
        return self.inner.restore_group(group_id)

    def forget_group(self, group_id: str) -> None:
        self.inner.forget_group(group_id)

    def decode_result(self, state: str, raw: Any) -> Any:
        return self.inner.decode_result(state, raw)
