"""Claiming many due runs with one statement: a compare-and-set over a batch of rows (and
writing many rows' next runs the same way).

Each due run is claimed by moving its task's ``last_run_at`` from what the beat read to
the run's scheduled time, on the condition that ``last_run_at`` and ``date_changed`` are
still what it read and the task is still enabled (see djq.beat.scheduler). Here that
``UPDATE`` covers a whole batch, each row with its own values (``CASE``), and says with
``RETURNING`` which rows it took, so a beat knows exactly which runs are its own.

- PostgreSQL: the rows are locked in id order with ``FOR UPDATE SKIP LOCKED``, so two beats
  claiming overlapping batches never deadlock; a row another beat is claiming is left to
  it (it sends the run, or rolls back and the run is due again at the next tick).
- SQLite: one writer at a time, so the statement alone is enough.
- Other databases (no ``UPDATE ... RETURNING``): one compare-and-set per row.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.models import F, Q

from . import timing

if TYPE_CHECKING:
    from ..models import PeriodicRun, PeriodicTask
    from .schedules import Schedule

#: Runs claimed and sent together. At 9 parameters a row, a claim stays under the 999
#: parameters of older SQLite builds, and Django inserts 100 run-log rows in one statement there.
BATCH = 100
#: On PostgreSQL a batch's claim and run log are a few array parameters whatever its size,
#: so a batch is larger there: fewer round trips and commits per burst.
PG_BATCH = 500


def batch_size(using: str) -> int:
    """Runs claimed and sent together on database ``using``."""
    return PG_BATCH if connections[using].vendor == "postgresql" else BATCH


@dataclass
class Due:
    """One run to send: the row as read, its schedule, when the run was due, and the run after it."""

    row: PeriodicTask
    schedule: Schedule
    scheduled: datetime
    following: datetime | None
    disable: bool
    task: Any


@dataclass(frozen=True)
class AsRead:
    """What a compare-and-set compares: a row's id, ``date_changed`` and ``last_run_at`` as read."""

    pk: int
    date_changed: datetime
    last_run_at: datetime | None


def as_read(row: PeriodicTask) -> Q:
    """The row still as this beat read it: neither claimed nor edited since."""
    seen = Q(pk=row.pk, date_changed=row.date_changed)
    return seen & (Q(last_run_at__isnull=True) if row.last_run_at is None else Q(last_run_at=row.last_run_at))


class _Statement:
    """Hand-written SQL for a batch: Django's expressions cost about 2 ms of CPU a row to build."""

    def __init__(self, using: str) -> None:
        from ..models import PeriodicTask

        self.connection = connections[using]
        self.ops = self.connection.ops
        self.table = self.ops.quote_name(PeriodicTask._meta.db_table)
        self.column = {name: self.ops.quote_name(str(PeriodicTask._meta.get_field(name).column))  # type: ignore[union-attr]
                       for name in ("id", "last_run_at", "date_changed", "due_at", "enabled", "total_run_count")}
        # PostgreSQL needs a type for a CASE whose values may all be NULL; SQLite has no such casts
        self.moment = "%s::timestamptz" if self.connection.vendor == "postgresql" else "%s"
        self.params: list[Any] = []

    def at(self, value: datetime | None) -> str:
        self.params.append(None if value is None else self.ops.adapt_datetimefield_value(value))
        return self.moment

    def value(self, value: Any) -> str:
        self.params.append(value)
        return "%s"

    def per_row(self, name: str, rows: list[tuple[PeriodicTask | AsRead, Any]], moment: bool) -> str:
        whens = " ".join(f"WHEN {self.value(row.pk)} THEN {self.at(v) if moment else self.value(v)}" for row, v in rows)
        return f"{self.column[name]} = CASE {self.column['id']} {whens} END"

    def as_read(self, rows: list[PeriodicTask | AsRead]) -> str:
        c = self.column
        return " OR ".join(
            f"({c['id']} = {self.value(row.pk)} AND {c['date_changed']} = {self.at(row.date_changed)} AND "
            + (f"{c['last_run_at']} IS NULL)" if row.last_run_at is None else f"{c['last_run_at']} = {self.at(row.last_run_at)})")
            for row in rows)


def store_due(found: list[tuple[AsRead, datetime | None]], using: str) -> None:
    """Write the next runs worked out from rows as read, a batch a statement; rows that moved on are left."""
    for start in range(0, len(found), BATCH):  # CASE with 4 parameters a row, on any database
        batch: list[tuple[PeriodicTask | AsRead, Any]] = [
            (row, timing.to_db(due)) for row, due in found[start:start + BATCH]]
        sql = _Statement(using)
        statement = (f"UPDATE {sql.table} SET {sql.per_row('due_at', batch, moment=True)} "
                     f"WHERE {sql.as_read([row for row, _ in batch])}")
        with sql.connection.cursor() as cursor:
            cursor.execute(statement, sql.params)


def claim_one(due: Due, using: str) -> bool:
    from ..models import PeriodicTask

    return PeriodicTask.objects.using(using).filter(as_read(due.row), enabled=True).update(
        last_run_at=timing.to_db(due.scheduled), total_run_count=F("total_run_count") + 1,
        enabled=not due.disable, due_at=timing.to_db(due.following)) == 1


def claim_many(batch: list[Due], using: str) -> set[int]:
    """Claim every run of ``batch`` that no other beat has; returns the ids of the rows taken.

    Must run inside a transaction (the claim commits with what is sent for it).
    """
    from ..models import PeriodicTask

    connection = connections[using]
    if connection.vendor == "postgresql":
        return _claim_postgres(batch, using)
    # RETURNING: SQLite from 3.35 (Django's flag for it on inserts says the same)
    if connection.vendor != "sqlite" or not connection.features.can_return_columns_from_insert:
        return {due.row.pk for due in batch if claim_one(due, using)}
    sql = _Statement(using)
    rows: list[PeriodicTask | AsRead] = [due.row for due in batch]
    c = sql.column
    assignments = ", ".join((
        sql.per_row("last_run_at", [(due.row, timing.to_db(due.scheduled)) for due in batch], moment=True),
        sql.per_row("due_at", [(due.row, timing.to_db(due.following)) for due in batch], moment=True),
        sql.per_row("enabled", [(due.row, not due.disable) for due in batch], moment=False),
        f"{c['total_run_count']} = {c['total_run_count']} + 1",
    ))
    statement = f"UPDATE {sql.table} SET {assignments} WHERE {c['enabled']} AND ({sql.as_read(rows)})"
    if connection.features.has_select_for_update_skip_locked:
        ids = ", ".join(sql.value(row.pk) for row in rows)
        statement += (f" AND {c['id']} IN (SELECT {c['id']} FROM {sql.table} WHERE {c['id']} IN ({ids}) "
                      f"ORDER BY {c['id']} FOR UPDATE SKIP LOCKED)")
    with connection.cursor() as cursor:
        cursor.execute(f"{statement} RETURNING {c['id']}", sql.params)
        return {taken for (taken,) in cursor.fetchall()}


def _claim_postgres(batch: list[Due], using: str) -> set[int]:
    """``claim_many`` on PostgreSQL: the batch's values as one array per column (``unnest``), so
    psycopg sends seven parameters whatever the batch's size instead of parsing hundreds."""
    sql = _Statement(using)
    c = sql.column
    ids = [due.row.pk for due in batch]
    arrays = (ids, [due.row.date_changed for due in batch], [due.row.last_run_at for due in batch],
              [timing.to_db(due.scheduled) for due in batch], [timing.to_db(due.following) for due in batch],
              [not due.disable for due in batch])
    # The rows are locked first, in id order, skipping those another beat holds (a
    # MATERIALIZED CTE runs once, before the UPDATE): the UPDATE then touches only rows this
    # statement already holds, so two beats on one burst never wait on each other (with the
    # lock in an IN-subquery, PostgreSQL could recheck a row the other beat had updated and
    # the two deadlocked). The locked ids are a semi-join: joined as a third table, the
    # planner expected one row and compared every pair (500 x 500: 100 ms a batch).
    statement = (
        f"WITH locked AS MATERIALIZED (SELECT {c['id']} AS id FROM {sql.table} WHERE {c['id']} = ANY(%b::bigint[]) "
        f"ORDER BY {c['id']} FOR UPDATE SKIP LOCKED) "
        f"UPDATE {sql.table} AS t SET {c['last_run_at']} = v.last, {c['due_at']} = v.due, "
        f"{c['enabled']} = v.enabled, {c['total_run_count']} = t.{c['total_run_count']} + 1 "
        "FROM unnest(%b::bigint[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[], "
        "%b::boolean[]) AS v(id, changed, seen, last, due, enabled) "
        f"WHERE t.{c['id']} = v.id AND t.{c['id']} IN (SELECT id FROM locked) AND t.{c['enabled']} "
        f"AND t.{c['date_changed']} = v.changed AND t.{c['last_run_at']} IS NOT DISTINCT FROM v.seen "
        f"RETURNING t.{c['id']}")
    from ..backends.database import pg_execute

    return {taken for (taken,) in pg_execute(sql.connection, statement, [ids, *(list(a) for a in arrays)], fetch=True)}


def insert_runs(runs: list[PeriodicRun], using: str) -> None:
    """The batch's run-log rows in one statement (on PostgreSQL one array per column)."""
    from ..models import PeriodicRun

    connection = connections[using]
    if connection.vendor != "postgresql":
        PeriodicRun.objects.using(using).bulk_create(runs)
        return
    q = connection.ops.quote_name
    names = ("periodic_task_id", "scheduled_at", "sent_at", "task_id", "beat", "manual", "published_at")
    types = ("bigint", "timestamptz", "timestamptz", "text", "text", "boolean", "timestamptz")
    columns = ", ".join(q(str(PeriodicRun._meta.get_field(name).column)) for name in names)  # type: ignore[union-attr]
    arrays = ", ".join(f"%b::{kind}[]" for kind in types)
    from ..backends.database import pg_execute

    pg_execute(connection, f"INSERT INTO {q(PeriodicRun._meta.db_table)} ({columns}) SELECT * FROM unnest({arrays})",
               [[getattr(run, name) for run in runs] for name in names])
