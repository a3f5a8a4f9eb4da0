"""The SQL behind the ``djq://`` transport: one ``Store`` per database alias.

PostgreSQL and SQLite differ in how a batch is claimed (``FOR UPDATE SKIP LOCKED`` there;
a single write-locked ``UPDATE ... RETURNING`` with a read-only peek first here), and in
how an idle consumer learns of new rows (NOTIFY in the INSERT there; ``PRAGMA
data_version`` here, ``SqliteWatch``). ``LeaseKeeper`` (leases.py) extends the
visibility of the messages a process holds, from its own thread and connection.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from django.db import connections, transaction

from ..pending import attached
from .wakeup import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)


def _tables() -> tuple[str, str]:
    from ..models import QueueBinding, QueueMessage

    return QueueMessage._meta.db_table, QueueBinding._meta.db_table


def eta_to_timestamp(eta: str | None, now: float) -> float:
    if not eta:
        return now
    try:
        return datetime.fromisoformat(eta).timestamp()
    except (TypeError, ValueError):
        return now  # a malformed eta is the worker's to report; never hide the message


#: messages this process put, per alias: SQLite's data_version does not change for a
#: connection's own commits, so a consumer compares this instead (messaging/idle.py)
PUT_COUNTS: dict[str, int] = {}


def _count_put(alias: str) -> None:
    PUT_COUNTS[alias] = PUT_COUNTS.get(alias, 0) + 1


def _psycopg3() -> bool:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)


class Store:
    """The SQL behind the transport, for one database alias."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.messages, self.bindings = _tables()

    @property
    def connection(self) -> Any:
        return connections[self.alias]

    @property
    def skip_locked(self) -> bool:
        features = self.connection.features
        return bool(features.has_select_for_update_skip_locked)

    def put(self, queue: str, priority: int, visible_at: float, payload: str, task_id: str | None = None) -> None:
        _count_put(self.alias)
        insert = (
            f"INSERT INTO {self.messages} (queue, priority, visible_at, deliveries, payload) "
            "VALUES (%s, %s, %s, 0, %s)"
        )
        if self.connection.vendor == "postgresql":
            # One round trip; NOTIFY is delivered when the caller's transaction commits.
            insert = f"WITH m AS ({insert} RETURNING queue) SELECT pg_notify('{NOTIFY_CHANNEL}', queue) FROM m"
            pending = attached(self.alias, task_id) if task_id else None
            if pending is not None:  # the task's PENDING row in the same statement (djq/pending.py)
                from ..backends.database import pg_execute

                row, params = pending.statement()
                pg_execute(self.connection, f"WITH p AS ({row}), {insert.removeprefix('WITH ')}",
                           [*params, queue, priority, visible_at, payload])
                pending.stored = True
                return
        with self.connection.cursor() as cursor:
            cursor.execute(insert, [queue, priority, visible_at, payload])

    def put_many(self, rows: list[tuple[str, int, float, str]]) -> None:
        """Insert ``(queue, priority, visible_at, payload)`` rows in one statement.

        PostgreSQL with psycopg 3 gets four binary arrays (``unnest``): psycopg would
        otherwise parse a statement of thousands of placeholders and quote every payload
        in Python. One NOTIFY per queue. Elsewhere a multi-row ``VALUES`` per
        ``max_query_params``."""
        if not rows:
            return
        _count_put(self.alias)
        columns = f"INSERT INTO {self.messages} (queue, priority, visible_at, deliveries, payload)"
        if self.connection.vendor == "postgresql" and _psycopg3():
            import psycopg

            self.connection.ensure_connection()
            with self.connection.wrap_database_errors, psycopg.Cursor(self.connection.connection) as cursor:
                cursor.execute(
                    f"WITH m AS ({columns} SELECT q, p, v, 0, b FROM "
                    "unnest(%b::varchar[], %b::smallint[], %b::float8[], %b::text[]) AS r(q, p, v, b) "
                    f"RETURNING queue) SELECT pg_notify('{NOTIFY_CHANNEL}', q.queue) FROM (SELECT DISTINCT queue FROM m) q",
                    [list(column) for column in zip(*rows)],
                )
            return
        notify = ""
        if self.connection.vendor == "postgresql":
            notify = f"SELECT pg_notify('{NOTIFY_CHANNEL}', q.queue) FROM (SELECT DISTINCT queue FROM m) q"
        limit = self.connection.features.max_query_params  # None: no limit
        per_statement = len(rows) if limit is None else max(1, limit // 4)
        with self.connection.cursor() as cursor:
            for start in range(0, len(rows), per_statement):
                batch = rows[start:start + per_statement]
                insert = f"{columns} VALUES " + ", ".join(["(%s, %s, %s, 0, %s)"] * len(batch))
                if notify:
                    insert = f"WITH m AS ({insert} RETURNING queue) {notify}"
                cursor.execute(insert, [value for row in batch for value in row])

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """Statements sent inside do not wait for the previous one's answer (psycopg 3's
        pipeline mode on PostgreSQL), so ``put_many`` of the next chunk overlaps the
        server's work on the last; errors are raised when the block ends."""
        if self.connection.vendor != "postgresql" or not _psycopg3():
            yield
            return
        self.connection.ensure_connection()
        with self.connection.wrap_database_errors, self.connection.connection.pipeline():
            yield

    def next_visible(self, queues: list[str]) -> float | None:
        """When the next hidden message (eta, or an expiring lease) becomes visible, if any."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT MIN(visible_at) FROM {self.messages} WHERE queue IN ({', '.join(['%s'] * len(queues))}) "
                "AND visible_at > %s",
                [*queues, time.time()],
            )
            row = cursor.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def claim(self, queues: list[str], limit: int, visibility_timeout: float) -> list[tuple[int, str, int, str]]:
        now = time.time()
        placeholders = ", ".join(["%s"] * len(queues))
        skip_locked = self.skip_locked
        if not skip_locked and not self._any_visible(placeholders, queues, now):
            # SQLite: even an UPDATE that matches nothing takes the database's write lock;
            # a read (WAL) does not, so an idle consumer never gets in a writer's way.
            return []
        # Claim order: priority, then the earliest due (visible_at is the eta, or when the
        # message was sent or came back), then id. The claim index (queue, -priority,
        # visible_at, id) yields rows in that order, and claimed rows (visible_at in the
        # future) sort after the due ones. RETURNING has no defined order, so each row
        # comes back with what restores the claim order.
        queue_in = f"queue IN ({placeholders})"
        order = "ORDER BY priority DESC, visible_at, id"
        if skip_locked:  # PostgreSQL: the claimed row's old visible_at comes from the subquery
            sql = (
                f"UPDATE {self.messages} AS m SET visible_at = %s, deliveries = m.deliveries + 1 "
                f"FROM (SELECT id, visible_at FROM {self.messages} WHERE {queue_in} AND visible_at <= %s "
                f"{order} LIMIT %s FOR UPDATE SKIP LOCKED) c WHERE m.id = c.id "
                "RETURNING m.id, m.queue, m.deliveries, m.payload, m.priority, c.visible_at"
            )
        else:
            # SQLite's RETURNING sees only the updated table, so each lease carries the
            # row's rank in the claim (its microseconds). "+visible_at" stops the planner
            # from using the visible_at index and then sorting the whole backlog.
            sql = (
                f"UPDATE {self.messages} SET visible_at = %s + c.rank * 1e-6, deliveries = deliveries + 1 "
                f"FROM (SELECT id AS cid, ROW_NUMBER() OVER ({order}) AS rank FROM ("
                f"SELECT id, priority, visible_at FROM {self.messages} WHERE {queue_in} AND +visible_at <= %s "
                f"{order} LIMIT %s)) c WHERE {self.messages}.id = c.cid "
                "RETURNING id, queue, deliveries, payload, priority, visible_at"
            )
        params = [now + visibility_timeout, *queues, now, limit]
        if skip_locked:  # server-side parameters, the statement prepared once (pg_execute)
            from ..backends.database import pg_execute

            rows = pg_execute(self.connection, sql, params, fetch=True)
        else:
            with self.connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
        rows.sort(key=lambda row: (-row[4], row[5], row[0]))
        return [row[:4] for row in rows]

    def _any_visible(self, placeholders: str, queues: list[str], now: float) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {self.messages} WHERE queue IN ({placeholders}) AND visible_at <= %s LIMIT 1",
                [*queues, now],
            )
            return cursor.fetchone() is not None

    def delete(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        if self.connection.vendor == "postgresql":  # one statement text whatever the count: prepared
            from ..backends.database import pg_execute

            pg_execute(self.connection, f"DELETE FROM {self.messages} WHERE id = ANY(%b::bigint[])", [ids])
            return
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {self.messages} WHERE id IN ({', '.join(['%s'] * len(ids))})", ids
            )

    def shown_again(self, ids: list[int]) -> set[int]:
        """Make those of ``ids`` still in the table visible now; the ids it found. The
        UPDATE waits for a DELETE of the same rows still running, then skips what it deleted."""
        found: set[int] = set()
        with self.connection.cursor() as cursor:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                cursor.execute(f"UPDATE {self.messages} SET visible_at = %s "
                               f"WHERE id IN ({', '.join(['%s'] * len(chunk))}) RETURNING id", [time.time(), *chunk])
                found.update(row_id for (row_id,) in cursor.fetchall())
        return found

    def backend_pid(self) -> int | None:
        """The PostgreSQL server process of this connection (None elsewhere, or unconnected)."""
        raw = self.connection.connection
        if raw is None or self.connection.vendor != "postgresql":
            return None
        info = getattr(raw, "info", None)  # psycopg 3; psycopg2 has get_backend_pid()
        return int(info.backend_pid) if info is not None else int(raw.get_backend_pid())

    def end_backend(self, pid: int, timeout: float = 5.0) -> bool:
        """Make sure the server process ``pid`` (a connection that broke) runs nothing more:
        terminate it and wait until it is gone. False if it is still there at ``timeout``."""
        if pid == self.backend_pid():
            return True  # the same connection: its statement failed and is over
        deadline = time.monotonic() + timeout
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            while True:
                cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
                if cursor.fetchone() is None:
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)

    @property
    def stores_results_with_acks(self) -> bool:
        """``delete_and_start`` works here: PostgreSQL, or SQLite with ``RETURNING``."""
        from ..backends.database import sqlite_returning

        vendor = self.connection.vendor
        return vendor == "postgresql" or (vendor == "sqlite" and sqlite_returning())

    def delete_and_start(self, ids: list[int], started: list[tuple[int, dict[str, Any]]]) -> set[str]:
        """Delete the acked rows ``ids`` and store the result row of each ``(message id,
        row)`` in ``started`` whose message it deleted (``DatabaseBackend``'s conditional
        upsert), atomically: on PostgreSQL in one statement, on SQLite in one transaction
        (``DELETE ... RETURNING``, then the upsert). The task ids stored."""
        from ..backends.database import DatabaseBackend, pg_execute, pg_guarded_upsert

        if self.connection.vendor == "sqlite":
            with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {self.messages} WHERE id IN ({', '.join(['%s'] * len(ids))}) "
                               "RETURNING id", ids)
                deleted = {row_id for (row_id,) in cursor.fetchall()}
                kept = [row for key, row in started if key in deleted]
                return DatabaseBackend.upsert(self.connection, kept) if kept else set()
        upsert, params = pg_guarded_upsert(self.connection, [key for key, _ in started], "bigint",
                                           "SELECT id FROM d", [row for _, row in started])
        rows = pg_execute(self.connection,
                          f"WITH d AS (DELETE FROM {self.messages} WHERE id = ANY(%b::bigint[]) RETURNING id), "
                          f"s AS ({upsert}) SELECT task_id FROM s", [list(ids), *params], fetch=True)
        return {task_id for (task_id,) in rows}

    def set_visible(self, ids: Iterable[int], at: float) -> None:
        ids = list(ids)
        if not ids:
            return
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {self.messages} SET visible_at = %s WHERE id IN ({', '.join(['%s'] * len(ids))})",
                [at, *ids],
            )

    def size(self, queue: str) -> int:
        """Messages not currently held by a consumer (ready or waiting for their eta)."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT COUNT(*) FROM {self.messages} WHERE queue = %s "
                "AND (deliveries = 0 OR visible_at <= %s)",
                [queue, time.time()],
            )
            return int(cursor.fetchone()[0])

    def purge(self, queue: str) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {self.messages} WHERE queue = %s AND (deliveries = 0 OR visible_at <= %s)",
                [queue, time.time()],
            )
            return int(cursor.rowcount)

    def delete_queue(self, queue: str) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {self.messages} WHERE queue = %s", [queue])
            cursor.execute(f"DELETE FROM {self.bindings} WHERE queue = %s", [queue])

    def bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        from ..models import QueueBinding

        QueueBinding.objects.using(self.alias).get_or_create(
            exchange=exchange, routing_key=routing_key, queue=queue, defaults={"pattern": pattern}
        )

    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {self.bindings} WHERE exchange = %s AND routing_key = %s AND queue = %s",
                [exchange, routing_key, queue],
            )

    def table(self, exchange: str) -> list[tuple[str, str, str]]:
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT routing_key, pattern, queue FROM {self.bindings} WHERE exchange = %s", [exchange]
            )
            return [tuple(row) for row in cursor.fetchall()]

    def has_queue(self, queue: str) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {self.bindings} WHERE queue = %s LIMIT 1", [queue])
            if cursor.fetchone():
                return True
            cursor.execute(f"SELECT 1 FROM {self.messages} WHERE queue = %s LIMIT 1", [queue])
            return cursor.fetchone() is not None


class SqliteWatch:
    """``PRAGMA data_version`` changes when another connection commits: a near-free
    "anything new?" that lets an idle SQLite consumer poll often and claim rarely."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.version: int | None = None

    def changed(self) -> bool:
        wrapper = connections[self.alias]
        wrapper.ensure_connection()
        version = wrapper.connection.execute("PRAGMA data_version").fetchone()[0]
        if version != self.version:
            self.version = version
            return True
        return False
