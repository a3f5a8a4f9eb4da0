"""The database result backend: one ``TaskResult`` row per task, on a Django database alias.

Option: ``database://ALIAS`` stores on ALIAS (default ``default``). Each state change is a
single conditional upsert (``INSERT ... ON CONFLICT DO UPDATE ... WHERE``) that keeps the
rule of ``supersedes``: a stored state never moves backwards.
"""
from __future__ import annotations

import functools
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from .. import states
from ..models import SavedGroup, TaskResult
from .base import ResultBackend, ResultMeta, TaskInfo, decode_value, encode_value, exception_path, supersedes

_INFO_FIELDS = ("task_name", "args_repr", "kwargs_repr", "worker", "queue", "retries", "root_id", "parent_id",
                "attempt", "acks_late")
_COLUMNS = ("task_id", "state", "result", "traceback", "date_created", "date_started", "date_done", "runtime",
            *_INFO_FIELDS)
_TABLE = TaskResult._meta.db_table
#: PostgreSQL: the channel a stored final state is announced on, with the task id
NOTIFY_CHANNEL = "djq_results"
_FINAL = ", ".join(f"'{state}'" for state in sorted(states.READY_STATES))
#: ``supersedes`` (backends/base.py) in SQL: ``t`` is the stored row, ``excluded`` the write
_SUPERSEDES = (
    f"excluded.retries > t.retries OR (excluded.retries = t.retries AND ("
    f"excluded.attempt > t.attempt OR (t.state NOT IN ({_FINAL}) AND ("
    f"excluded.state IN ({_FINAL}) OR excluded.attempt = t.attempt"
    f" OR (excluded.attempt = 0 AND excluded.state <> '{states.PENDING}')))))"
)
#: what a write from outside a worker leaves empty keeps its stored value
_KEEP_IF_EMPTY = ("args_repr", "kwargs_repr", "worker", "root_id", "parent_id")
#: the columns a write from outside a worker (attempt 0) does not take over
_KEEP_IF_NO_ATTEMPT = ("attempt", "acks_late")
_RUNNING_EXCLUDED = (states.PENDING, states.RETRY, *states.READY_STATES)
#: what ``get`` reads
_READ = ("state", "result", "traceback", "task_name", "worker", "retries", "date_done", "date_created",
         "date_started", "queue", "args_repr", "kwargs_repr", "parent_id")
_READ_SQL = f"SELECT {', '.join(_READ)} FROM {_TABLE} WHERE task_id = %s"


def _assignment(column: str) -> str:
    if column in _KEEP_IF_EMPTY:
        return f"{column} = COALESCE(NULLIF(excluded.{column}, ''), t.{column})"
    if column in _KEEP_IF_NO_ATTEMPT:
        return f"{column} = CASE WHEN excluded.attempt = 0 THEN t.{column} ELSE excluded.{column} END"
    if column == "date_started":  # a write without it (PROGRESS, a revoke) keeps the stored one
        return "date_started = COALESCE(excluded.date_started, t.date_started)"
    if column in ("date_done", "runtime"):  # taken with the end that sets date_done
        return f"{column} = CASE WHEN excluded.date_done IS NULL THEN t.{column} ELSE excluded.{column} END"
    return f"{column} = excluded.{column}"


_UPDATED = ("state", "result", "traceback", *_INFO_FIELDS, "date_started", "date_done", "runtime")
_UPSERT_HEAD = f"INSERT INTO {_TABLE} AS t ({', '.join(_COLUMNS)}) VALUES"
_UPSERT_TAIL = (f"ON CONFLICT (task_id) DO UPDATE SET {', '.join(_assignment(c) for c in _UPDATED)} "
                f"WHERE {_SUPERSEDES} RETURNING task_id")


_pg_casts: dict[tuple[str, ...], str] = {}


def pg_arrays(connection: Any, columns: tuple[str, ...] = _COLUMNS) -> str:
    """``%s::type[], ...``: one array parameter per TaskResult column, each cast to the
    column's own type, for ``unnest`` (PostgreSQL's types: any PostgreSQL connection gives
    the same)."""
    casts = _pg_casts.get(columns)
    if casts is None:
        casts = _pg_casts[columns] = ", ".join(
            f"%b::{TaskResult._meta.get_field(name).db_type(connection)}[]" for name in columns)
    return casts


#: what a stored final state announces (backends/wake.py): state, result text and id,
#: apart by chr(31); a result too long for NOTIFY's 8,000 bytes (with its id) is left for get() to read
_PAYLOAD = ("CASE WHEN octet_length(s.result) + octet_length(s.task_id) > 7500 THEN chr(31) || chr(31) "
            "ELSE s.state || chr(31) || COALESCE(s.result, '') || chr(31) END || s.task_id")
#: PostgreSQL: a batch of at most this many rows is sent as plain values, not arrays
FEW_ROWS = 4


@functools.cache
def _pg_upsert_text(rows: int, arrays: str, announce: bool) -> str:
    if rows <= FEW_ROWS:
        one = f"({', '.join(['%s'] * len(_COLUMNS))})"
        source = f"VALUES {', '.join([one] * rows)}"
    else:
        source = f"SELECT * FROM unnest({arrays})"
    if not announce:  # the CTE and its join cost a third of a one-row statement (0.32 -> 0.22 ms)
        return f"{_UPSERT_HEAD.removesuffix(' VALUES')} {source} {_UPSERT_TAIL}"
    return (f"WITH s AS ({_UPSERT_HEAD.removesuffix(' VALUES')} {source} {_UPSERT_TAIL}, state, result) "
            f"SELECT s.task_id FROM s LEFT JOIN LATERAL "
            f"(SELECT pg_notify('{NOTIFY_CHANNEL}', {_PAYLOAD}) WHERE s.state IN ({_FINAL})) n ON true")


def pg_guarded_upsert(connection: Any, keys: list[Any], key_type: str, guard: str,
                      rows: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    """The conditional upsert of ``rows`` as one statement to use inside another (a CTE):
    row i is stored only where ``keys[i]`` is among ``guard`` (a subquery of the outer
    statement). djq:// stores early-ack STARTED rows this way, in the DELETE that acks
    their messages (messaging/store.py). Returns the text and its parameters."""
    columns = ", ".join(_COLUMNS)
    sql = (f"{_UPSERT_HEAD.removesuffix(' VALUES')} SELECT {columns} FROM "
           f"unnest(%b::{key_type}[], {pg_arrays(connection)}) AS r(guard_key, {columns}) "
           f"WHERE r.guard_key IN ({guard}) {_UPSERT_TAIL}")
    return sql, [list(keys), *[[row[name] for row in rows] for name in _COLUMNS]]


def _pg_upsert(connection: Any, rows: int, announce: bool = True) -> str:
    """The upsert of ``rows`` rows: plain values for a few, arrays (one text) for more;
    with ``announce``, stored final states are announced to ``get()``."""
    return _pg_upsert_text(rows if rows <= FEW_ROWS else FEW_ROWS + 1, pg_arrays(connection), announce)


def pg_execute(connection: Any, sql: str, params: list[Any], *, fetch: bool = False) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a PostgreSQL connection with its parameters sent apart from the text.

    Django's psycopg 3 cursors bind client-side: psycopg quotes every array element into
    the statement in Python, which was the largest cost of storing a state (py-spy: 12 %
    of a solo worker's GIL time). A plain psycopg cursor on the same connection sends the
    arrays as parameters; it takes part in Django's transaction, and Django's
    ``wrap_database_errors`` gives its errors Django's classes (the writer's retry on a lost
    connection depends on them). Arrays go as ``%b`` (binary): psycopg dumps a binary
    array 10-20x faster than a text one (0.4 against 4.4 ms for six arrays of 100). With
    psycopg2, Django's cursor is used."""
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:  # psycopg2 has no binary parameters: ``%b`` is a plain ``%s`` there
        with connection.cursor() as cursor:
            cursor.execute(sql.replace("%b", "%s"), params)
            return cursor.fetchall() if fetch else []
    import psycopg

    connection.ensure_connection()
    started = time.monotonic() if connection.queries_logged else None
    try:
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, prepare=pg_prepares(connection))
            return cursor.fetchall() if fetch else []
    finally:
        if started is not None:  # DEBUG or CaptureQueriesContext: logged as Django's cursor logs
            connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})


#: the connections' own count before psycopg prepares a statement by itself, where djq
#: turned preparing on: never, in practice (only djq's statements are prepared, explicitly)
_NEVER_BY_COUNT = 1 << 30


def pg_prepares(connection: Any) -> bool | None:
    """Whether djq prepares its statements on this psycopg 3 connection (``pg_execute``).

    Django turns psycopg's prepared statements off, for poolers that cannot keep them
    (PgBouncer in transaction mode before 1.21). djq's own statements (result upserts,
    PENDING rows, the djq:// transport's) are few, and run thousands of times a second:
    prepared once per connection, the server no longer parses and plans each one, which
    halves a one-row upsert (0.58 -> 0.26 ms; SUCCESS with its NOTIFY 0.78 -> 0.32 ms).
    They are, unless ``DJQ_DATABASE_PREPARED_STATEMENTS`` is False, the alias has
    ``DISABLE_SERVER_SIDE_CURSORS`` (Django's mark of a transaction pooler), or its
    OPTIONS set ``prepare_threshold`` (psycopg's own policy then, as asked: None is
    None, never prepared)."""
    from ..conf import djq_settings

    settings_dict = connection.settings_dict
    if ("prepare_threshold" in settings_dict.get("OPTIONS", {})
            or settings_dict.get("DISABLE_SERVER_SIDE_CURSORS") or not djq_settings.DATABASE_PREPARED_STATEMENTS):
        return None  # psycopg decides, as the connection was configured
    raw = connection.connection
    if raw.prepare_threshold is None:  # Django's default: off for every statement, even asked
        raw.prepare_threshold = _NEVER_BY_COUNT
    return True


@functools.cache
def sqlite_returning() -> bool:
    import sqlite3

    return sqlite3.sqlite_version_info >= (3, 35)


class DatabaseBackend(ResultBackend):
    def __init__(self, option: str = "") -> None:
        super().__init__(option)
        self.alias = option or "default"

    @property
    def notify_channel(self) -> str | None:
        """Where stored final states are announced (PostgreSQL), for get() to wait on."""
        return NOTIFY_CHANNEL if connections[self.alias].vendor == "postgresql" else None

    def describe(self) -> str:
        settings = connections.settings[self.alias] if self.alias in connections.settings else {}
        return f"database ({self.alias}: {settings.get('ENGINE', '?').rsplit('.', 1)[-1]})"

    def store(
        self,
        info: TaskInfo,
        state: str,
        *,
        result: Any = None,
        traceback: str | None = None,
        date_started: datetime | None = None,
        date_done: datetime | None = None,
        runtime: float | None = None,
    ) -> bool:
        row = self.build_row(info, state, result=result, traceback=traceback, date_started=date_started,
                             date_done=date_done, runtime=runtime)
        return info.task_id in self.store_rows([row])

    @staticmethod
    def build_row(info: TaskInfo, state: str, *, result: Any = None, traceback: str | None = None,
                  date_started: datetime | None = None, date_done: datetime | None = None,
                  runtime: float | None = None) -> dict[str, Any]:
        """The row a write stores (the result encoded: EncodeError here, not later)."""
        now = timezone.now()
        if date_done is None and state in states.READY_STATES:
            date_done = now
        return {
            "task_id": info.task_id, "state": state, "result": None if result is None else encode_value(result),
            "traceback": traceback, "date_created": info.created or now, "date_started": date_started,
            "date_done": date_done, "runtime": runtime,
            **{name: getattr(info, name) for name in _INFO_FIELDS},
        }

    def store_rows(self, rows: list[dict[str, Any]]) -> set[str]:
        """Store rows of distinct tasks, each unless ``supersedes`` forbids it; the ids stored.

        On SQLite (3.35+) and PostgreSQL, one statement for all of them, in autocommit."""
        connection = connections[self.alias]
        if connection.vendor == "postgresql" or (connection.vendor == "sqlite" and sqlite_returning()):
            return self.upsert(connection, rows)
        stored = set()
        for row in rows:
            if self._store_locked(row):
                stored.add(row["task_id"])
        return stored

    @staticmethod
    def upsert(connection: Any, rows: list[dict[str, Any]]) -> set[str]:
        """One conditional ``INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING``.

        On PostgreSQL the parameters travel apart from the statement (``pg_execute``); a
        batch of more than ``FEW_ROWS`` rows travels as one array per column (``unnest``),
        so the statement is the same whatever the batch's size (psycopg's cost per
        placeholder grew with every row), while a few rows go as plain values (psycopg
        dumps an array in Python: 1.0-1.2 ms for one row, against 0.5-0.7 ms as values).
        In the same statement the stored final states wake the clients waiting in get()
        (backends/wake.py); a batch with none (STARTED, PENDING, RETRY) is the bare upsert."""
        adapt = connection.ops.adapt_datetimefield_value
        if connection.vendor == "postgresql":
            if len(rows) <= FEW_ROWS:
                params: list[Any] = [row[name] for row in rows for name in _COLUMNS]
            else:
                params = [[row[name] for row in rows] for name in _COLUMNS]
            sql = _pg_upsert(connection, len(rows), any(row["state"] in states.READY_STATES for row in rows))
            return {task_id for (task_id,) in pg_execute(connection, sql, params, fetch=True)}
        values: list[Any] = []
        for row in rows:
            values += [adapt(row[name]) if name.startswith("date_") else row[name] for name in _COLUMNS]
        one = f"({', '.join(['%s'] * len(_COLUMNS))})"
        sql = f"{_UPSERT_HEAD} {', '.join([one] * len(rows))} {_UPSERT_TAIL}"
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            return {task_id for (task_id,) in cursor.fetchall()}

    def _store_locked(self, row: dict[str, Any]) -> bool:
        """Other databases: read the row under a lock and apply ``supersedes`` in Python."""
        with transaction.atomic(using=self.alias):
            rows = TaskResult.objects.using(self.alias).select_for_update().filter(task_id=row["task_id"])
            current = rows.values_list("state", "retries", "attempt").first()
            if current is None:
                TaskResult.objects.using(self.alias).create(**row)
                return True
            if not supersedes(row["state"], row["retries"], row["attempt"], *current):
                return False
            changes = {name: row[name] for name in ("state", "result", "traceback", *_INFO_FIELDS)}
            if row["date_started"] is not None:
                changes["date_started"] = row["date_started"]
            if row["date_done"] is not None:
                changes.update(date_done=row["date_done"], runtime=row["runtime"])
            for name in _KEEP_IF_EMPTY:
                if not changes.get(name):
                    changes.pop(name, None)
            if not row["attempt"]:
                for name in _KEEP_IF_NO_ATTEMPT:
                    changes.pop(name, None)
            rows.update(**changes)
            return True

    def get(self, task_id: str) -> ResultMeta | None:
        row = self._read(task_id)
        if row is None:
            return None
        (state, raw, traceback, task_name, worker, retries, date_done,
         date_created, date_started, queue, args_repr, kwargs_repr, parent_id) = row
        value = decode_value(raw)
        return ResultMeta(
            task_id=task_id,
            state=state,
            result=self.decode_result(state, value),
            exception_path=exception_path(value) if state in (states.FAILURE, states.REVOKED) else None,
            date_created=date_created,
            date_started=date_started,
            queue=queue,
            args_repr=args_repr,
            kwargs_repr=kwargs_repr,
            traceback=traceback,
            task_name=task_name,
            worker=worker,
            retries=retries,
            date_done=date_done,
            parent_id=parent_id,
        )

    def _read(self, task_id: str) -> tuple[Any, ...] | None:
        """The row's ``_READ`` columns. On PostgreSQL one plain statement: the queryset
        took 0.7 ms of a 1.1 ms read in building its SQL (``get()`` reads twice per round
        trip). Elsewhere, or with naive datetimes, the queryset (its converters)."""
        connection = connections[self.alias]
        if connection.vendor == "postgresql" and settings.USE_TZ:
            rows = pg_execute(connection, _READ_SQL, [task_id], fetch=True)
            return rows[0] if rows else None
        return TaskResult.objects.using(self.alias).filter(task_id=task_id).values_list(*_READ).first()

    # -- tasks a lost worker left running ------------------------------------------
    def _running(self, worker: str, started_before: datetime) -> Any:
        return (TaskResult.objects.using(self.alias)
                .filter(worker=worker, date_started__lt=started_before)
                .exclude(state__in=_RUNNING_EXCLUDED))

    def running_on(self, worker: str, started_before: datetime) -> list[tuple[str, str, bool]]:
        return list(self._running(worker, started_before).values_list("task_id", "task_name", "acks_late"))

    def mark_lost(self, task_id: str, worker: str, started_before: datetime, *, result: Any,
                  traceback: str) -> bool:
        updated = self._running(worker, started_before).filter(task_id=task_id).update(
            state=states.FAILURE, result=encode_value(result), traceback=traceback, date_done=timezone.now())
        return updated == 1

    def note_lost(self, task_id: str, worker: str, started_before: datetime, note: str) -> bool:
        rows = self._running(worker, started_before).filter(task_id=task_id, traceback__isnull=True)
        return rows.update(traceback=note) == 1

    def states(self, task_ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(task_ids), 500):
            rows = TaskResult.objects.using(self.alias).filter(task_id__in=task_ids[start:start + 500])
            found.update(rows.values_list("task_id", "state"))
        return found

    def save_group(self, group_id: str, task_ids: list[str]) -> None:
        SavedGroup.objects.using(self.alias).update_or_create(group_id=group_id, defaults={"result_ids": task_ids})

    def restore_group(self, group_id: str) -> list[str] | None:
        row = SavedGroup.objects.using(self.alias).filter(group_id=group_id).values_list("result_ids", flat=True).first()
        return None if row is None else list(row)

    def forget_group(self, group_id: str) -> None:
        SavedGroup.objects.using(self.alias).filter(group_id=group_id).delete()

    def forget(self, task_id: str) -> None:
        TaskResult.objects.using(self.alias).filter(task_id=task_id).delete()
