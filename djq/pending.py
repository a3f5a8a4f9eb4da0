"""PENDING rows: every task has a result row from the moment it is sent.

``enqueue.send``/``send_many`` wrap the producer in ``recorded(messages)``: the rows
(state PENDING, the task's name, arguments' reprs, queue and eta) go in with one
multi-row ``INSERT ... ON CONFLICT DO NOTHING`` per chunk (on PostgreSQL one statement with
an array per column), so a PENDING row only ever
creates a row and never replaces a later state (a retry sent under the same id, a worker
faster than the caller). Where the rows go with the message:

- ``djq://`` with results on the broker's database: one transaction holds the rows and
  the message rows (inside the caller's own ``atomic()``, or one of its own), so the
  task is visible exactly when it is sent. On PostgreSQL a single ``delay()``'s row
  rides in the message's own INSERT (``attached``: one statement, so one round trip
  where BEGIN, two INSERTs and COMMIT took four);
- any other broker (or results elsewhere): the rows are inserted first (in the
  caller's transaction when there is one), then the message is published; a publish
  that fails deletes the rows it stood for, so no PENDING row outlives an unsent task.
  On PostgreSQL outside a transaction, a few rows' INSERT is put on the wire and the
  publish goes out while the database commits it (``_send_insert``,
  backends/pg_overlap.py): ``delay()`` waits for one round trip, not two. A row the
  database then refuses is a warning (the task is sent; its worker stores its row with
  STARTED), as on the djq:// path below.

Only the database result backend stores them; ``ignore_result`` tasks get none (no
worker would ever move their row on). ``DJQ_TASK_STORE_PENDING = False`` turns it off.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Callable, ContextManager, Iterator

from django.db import connections, transaction
from django.utils import timezone

from . import states
from .conf import djq_settings
from .messaging.protocol import OutgoingMessage

logger = logging.getLogger(__name__)
_COLUMNS = ("task_id", "task_name", "state", "args_repr", "kwargs_repr", "queue", "retries", "root_id",
            "parent_id", "date_created", "eta", "attempt", "acks_late")
#: rows per INSERT (13 parameters each: well inside SQLite's 32766)
CHUNK_SIZE = 500


class Attached:
    """A PENDING row waiting for the djq:// message INSERT it rides in (``attached``)."""

    __slots__ = ("alias", "task_id", "row", "stored")

    def __init__(self, alias: str, task_id: str, row: tuple[Any, ...]) -> None:
        self.alias, self.task_id, self.row = alias, task_id, row
        #: set by the transport once the statement carrying it has run
        self.stored = False

    def statement(self) -> tuple[str, list[Any]]:
        """The row's INSERT, to run as a CTE of the message's, and its parameters."""
        return _values_insert(connections[self.alias], 1), list(self.row)


def _values_insert(connection: Any, rows: int, *, numbered: bool = False) -> str:
    """``INSERT`` of ``rows`` PENDING rows as plain values, existing rows kept; placeholders
    ``%s``, or ``$1``, ``$2`` ... with ``numbered`` (libpq's own, for pg_overlap)."""
    from .models import TaskResult

    table = connection.ops.quote_name(TaskResult._meta.db_table)
    width = len(_COLUMNS)
    if numbered:
        values = ", ".join("(" + ", ".join(f"${row * width + column + 1}" for column in range(width)) + ")"
                           for row in range(rows))
    else:
        values = ", ".join([f"({', '.join(['%s'] * width)})"] * rows)
    return f"INSERT INTO {table} ({', '.join(_COLUMNS)}) VALUES {values} ON CONFLICT (task_id) DO NOTHING"


_attached: ContextVar[Attached | None] = ContextVar("djq_pending_attached", default=None)


def _database_alias() -> str | None:
    """The alias results are stored on, when the result backend is the database one."""
    from .backends import get_backend
    from .backends.database import DatabaseBackend

    backend = get_backend()
    backend = getattr(backend, "inner", backend)  # a worker's WriterBackend wraps it
    return backend.alias if isinstance(backend, DatabaseBackend) else None


def recorded(messages: list[OutgoingMessage], broker_alias: str | None) -> ContextManager[Callable[[], None]]:
    """Around the publish of ``messages``: their PENDING rows, as the module says.

    ``broker_alias`` is the database of a ``djq://`` broker (None for other brokers).
    Yields the undo to call when the publish fails (a no-op where one transaction
    covers both)."""
    if not djq_settings.TASK_STORE_PENDING:
        return nullcontext(_nothing)
    wanted = [message for message in messages if not message.headers.get("ignore_result")]
    alias = _database_alias() if wanted else None
    if alias is None:
        return nullcontext(_nothing)
    return _recorded(wanted, alias, same_transaction=alias == broker_alias)


def _nothing() -> None:
    pass


@contextmanager
def _recorded(messages: list[OutgoingMessage], alias: str, *, same_transaction: bool) -> Iterator[Callable[[], None]]:
    if same_transaction and len(messages) == 1 and connections[alias].vendor == "postgresql":
        waiting = Attached(alias, messages[0].task_id, _rows(messages)[0])
        token = _attached.set(waiting)
        # inside the caller's transaction a savepoint, as below: a statement that fails
        # leaves the caller's transaction usable
        guard = transaction.atomic(using=alias) if connections[alias].in_atomic_block else nullcontext()
        try:
            with guard:
                yield _nothing
        finally:
            _attached.reset(token)
        if not waiting.stored:  # published without the transport's INSERT: the row on its own
            try:
                insert(alias, messages)
            except Exception as exc:  # the task is sent: its row comes with its STARTED
                logger.warning("task %s[%s] was sent, but its PENDING row could not be stored: %s",
                               messages[0].task_name, messages[0].task_id, exc)
        return
    if same_transaction:
        with transaction.atomic(using=alias):
            insert(alias, messages)
            yield _nothing
        return
    sent = _send_insert(alias, messages)
    if sent is None:
        insert(alias, messages)

    def undo() -> None:
        from .models import TaskResult

        if sent is not None:
            try:
                sent.answer()
            except Exception:  # not stored: nothing to take back
                return
        ids = [message.task_id for message in messages]
        TaskResult.objects.using(alias).filter(task_id__in=ids, state=states.PENDING).delete()

    try:
        yield undo
    finally:
        if sent is not None:
            try:
                sent.answer()
            except Exception as exc:  # the task is sent: its row comes with its STARTED
                logger.warning("task %s[%s] was sent, but its PENDING row could not be stored: %s",
                               messages[0].task_name, messages[0].task_id, exc)


def attached(alias: str, task_id: str) -> Attached | None:
    """The PENDING row waiting for the djq:// INSERT of ``task_id``'s message on
    ``alias``, if one does and no statement has stored it yet."""
    waiting = _attached.get()
    if waiting is None or waiting.stored or (waiting.alias, waiting.task_id) != (alias, task_id):
        return None
    return waiting


def _rows(messages: list[OutgoingMessage]) -> list[tuple[Any, ...]]:
    now = timezone.now()
    etas: dict[Any, datetime | None] = {None: None}
    rows = []
    for message in messages:
        headers = message.headers
        eta = headers.get("eta")
        if eta not in etas:
            etas[eta] = datetime.fromisoformat(str(eta))
        rows.append((message.task_id, message.task_name, states.PENDING, headers.get("argsrepr") or "",
                     headers.get("kwargsrepr") or "", message.queue, headers.get("retries") or 0,
                     headers.get("root_id"), headers.get("parent_id"), now, etas[eta], 0, False))
    return rows


def _send_insert(alias: str, messages: list[OutgoingMessage]) -> Any:
    """PostgreSQL outside a transaction, a few rows: their INSERT put on the wire without
    waiting (backends/pg_overlap.py), so the publish overlaps its round trip and commit;
    None where it cannot be: the caller inserts them as usual."""
    from . import signals
    from .backends.database import FEW_ROWS

    connection = connections[alias]
    if connection.vendor != "postgresql" or len(messages) > FEW_ROWS:
        return None
    if signals.before_task_publish.has_listeners() or signals.after_task_publish.has_listeners():
        return None  # a receiver may use this connection while the INSERT is on it
    from .backends import pg_overlap

    rows = _rows(messages)
    sql = _values_insert(connection, len(rows), numbered=True)
    return pg_overlap.send(connection, sql, [value for row in rows for value in row])


def insert(alias: str, messages: list[OutgoingMessage]) -> None:
    """The PENDING rows of ``messages``, a chunk per statement; existing rows are kept."""
    connection = connections[alias]
    rows = _rows(messages)
    if connection.vendor not in ("sqlite", "postgresql"):
        _insert_orm(alias, rows)
        return
    from .models import TaskResult

    adapt = connection.ops.adapt_datetimefield_value
    if connection.vendor == "postgresql":  # as the result upsert: values for a few rows, else arrays
        from .backends.database import FEW_ROWS, pg_arrays, pg_execute

        if len(rows) <= FEW_ROWS:
            pg_execute(connection, _values_insert(connection, len(rows)), [value for row in rows for value in row])
        else:
            table = connection.ops.quote_name(TaskResult._meta.db_table)
            head = f"INSERT INTO {table} ({', '.join(_COLUMNS)})"
            pg_execute(connection, f"{head} SELECT * FROM unnest({pg_arrays(connection, _COLUMNS)}) "
                                   "ON CONFLICT (task_id) DO NOTHING", [list(column) for column in zip(*rows)])
        return
    with connection.cursor() as cursor:
        for start in range(0, len(rows), CHUNK_SIZE):
            chunk = rows[start:start + CHUNK_SIZE]
            values: list[Any] = []
            for row in chunk:
                values += [*row[:9], adapt(row[9]), adapt(row[10]), *row[11:]]
            cursor.execute(_values_insert(connection, len(chunk)), values)


def _insert_orm(alias: str, rows: list[tuple[Any, ...]]) -> None:
    from .models import TaskResult

    objects = [TaskResult(**dict(zip(_COLUMNS, row))) for row in rows]
    TaskResult.objects.using(alias).bulk_create(objects, batch_size=CHUNK_SIZE, ignore_conflicts=True)
