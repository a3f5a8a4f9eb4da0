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
from typing import TYPE_CHECKING, Any, cast

from django.db import connections
from django.db.models import BooleanField, Case, DateTimeField, F, Q, Value, When
from django.db.models.sql import UpdateQuery

from . import timing

if TYPE_CHECKING:
    from ..models import PeriodicTask
    from .schedules import Schedule

#: Runs claimed and sent together. At 9 parameters a row, a claim stays under the 999
#: parameters of older SQLite builds, and Django inserts 100 run-log rows in one statement there.
BATCH = 100


@dataclass
class Due:
    """One run to send: the row as read, its schedule, when the run was due, and the run after it."""

    row: PeriodicTask
    schedule: Schedule
    scheduled: datetime
    following: datetime | None
    disable: bool
    task: Any


def as_read(row: PeriodicTask) -> Q:
    """The row still as this beat read it: neither claimed nor edited since."""
    seen = Q(pk=row.pk, date_changed=row.date_changed)
    return seen & (Q(last_run_at__isnull=True) if row.last_run_at is None else Q(last_run_at=row.last_run_at))


def store_due(found: list[tuple[PeriodicTask, datetime | None]], using: str) -> None:
    """Write the next runs worked out from rows as read, a batch a statement; rows that moved on are left."""
    from ..models import PeriodicTask

    for start in range(0, len(found), BATCH):
        batch = found[start:start + BATCH]
        condition = Q()
        for row, _ in batch:
            condition |= as_read(row)
        field = DateTimeField()
        PeriodicTask.objects.using(using).filter(condition).update(due_at=Case(
            *(When(pk=row.pk, then=Value(timing.to_db(due), output_field=field)) for row, due in batch),
            output_field=field))


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
    if connection.vendor not in ("postgresql", "sqlite"):
        return {due.row.pk for due in batch if claim_one(due, using)}
    condition = Q()
    for due in batch:
        condition |= as_read(due.row)
    rows = PeriodicTask.objects.using(using).filter(condition, enabled=True)
    if connection.features.has_select_for_update_skip_locked:
        locked = (PeriodicTask.objects.using(using).filter(pk__in=[due.row.pk for due in batch])
                  .order_by("pk").select_for_update(skip_locked=True).values("pk"))
        rows = rows.filter(pk__in=locked)

    def per_row(value: Any, field: Any) -> Case:
        return Case(*(When(pk=due.row.pk, then=Value(value(due), output_field=field)) for due in batch),
                    output_field=field)

    query = cast(UpdateQuery, rows.query.chain(UpdateQuery))
    query.add_update_values({
        "last_run_at": per_row(lambda due: timing.to_db(due.scheduled), DateTimeField()),
        "due_at": per_row(lambda due: timing.to_db(due.following), DateTimeField()),
        "enabled": per_row(lambda due: not due.disable, BooleanField()),
        "total_run_count": F("total_run_count") + 1,
    })
    statement, params = query.get_compiler(using).as_sql()
    pk = connection.ops.quote_name(str(PeriodicTask._meta.pk.column))  # type: ignore[union-attr]
    with connection.cursor() as cursor:
        cursor.execute(f"{statement} RETURNING {pk}", params)
        return {taken for (taken,) in cursor.fetchall()}
