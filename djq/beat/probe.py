"""What a tick asks before it reads any row: one statement of indexed look-ups, and the pass
that checks every stored next run against its schedule.

The probe (``probe``) is a handful of scalar subqueries, each answered from an index in
a few page reads, whatever the table holds: the latest ``date_changed`` of the tasks and
of each schedule table (admin edits, ``save()``, ``bulk_create``), the highest id (new
rows), the earliest stored next run of an enabled task (``due_at``, also when written by
hand), and whether an enabled task has an empty ``last_run_at`` ("run it now"). It never
aggregates the whole table, so a quiet tick costs the same at 100 rows and at 100,000.

``QuerySet.update()`` can change a task or a schedule without moving ``date_changed``, so
no probe sees it. ``revalidate`` catches those edits: it reads the enabled tasks in
chunks of ``CHUNK`` by id, works out each one's next run as a tick would, and writes the
ones whose stored ``due_at`` is wrong (compare-and-set: a row claimed or edited meanwhile
is left as it is). djq.beat.service runs it in a thread of its own, so it never holds up a
tick; a Scheduler used on its own runs it inside its first tick and once a minute after.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections

from . import timing
from .claims import AsRead, store_due
from .schedules import ScheduleError

if TYPE_CHECKING:
    from ..models import PeriodicTask

#: Rows read at a time by ``revalidate`` (one keyset query each; bounded memory).
CHUNK = 1000
KEYS = ("edited", "newest", "first_due", "never_ran")


def probe(using: str) -> dict[str, Any]:
    """The table's state as far as a tick cares, from indexes only (see the module docstring)."""
    from ..models import SCHEDULE_FIELDS, PeriodicTask

    connection = connections[using]
    q = connection.ops.quote_name
    table = q(PeriodicTask._meta.db_table)
    col = {name: q(str(PeriodicTask._meta.get_field(name).column))  # type: ignore[union-attr]
           for name in ("id", "date_changed", "due_at", "enabled", "last_run_at")}
    parts = [
        f"(SELECT MAX({col['date_changed']}) FROM {table})",
        f"(SELECT MAX({col['id']}) FROM {table})",
        f"(SELECT MIN({col['due_at']}) FROM {table} WHERE {col['enabled']} AND {col['due_at']} IS NOT NULL)",
        f"(SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE {col['last_run_at']} IS NULL AND {col['enabled']} "
        "LIMIT 1) AS never_ran)",
    ]
    for name in SCHEDULE_FIELDS:
        model = PeriodicTask._meta.get_field(name).related_model
        parts.append(f"(SELECT MAX({q('date_changed')}) FROM {q(model._meta.db_table)})")  # type: ignore[union-attr]
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts))
        values = list(cursor.fetchone())
    # SQLite hands back text for a raw datetime: read it as Django would.
    convert = getattr(connection.ops, "convert_datetimefield_value", None)
    for index in (0, 2, *range(4, len(values))):
        if convert is not None and values[index] is not None:
            values[index] = convert(values[index], None, connection)
    return dict(zip((*KEYS, *SCHEDULE_FIELDS), values))


def expected_due(row: PeriodicTask, now: datetime) -> datetime | None:
    """The next run a tick would work out for ``row`` (a broken schedule: now, so a tick reports it)."""
    try:
        return timing.next_run(row.schedule, last_run_at=timing.from_db(row.last_run_at),
                               changed_at=row.changed_at(), start_time=timing.from_db(row.start_time),
                               run_count=row.total_run_count, now=now)
    except ScheduleError:
        return now


def revalidate(using: str, *, now: datetime | None = None, stop: threading.Event | None = None,
               duty: float = 1.0) -> int:
    """Fix every enabled task's stored next run that its schedule contradicts; returns how many.

    ``duty`` below 1 sleeps between chunks (a chunk that took t seconds is followed by
    t * (1 - duty) / duty of sleep), so a pass in a thread leaves the tick the interpreter.
    ``stop`` ends the pass early.
    """
    from ..models import SCHEDULE_FIELDS, PeriodicTask

    rows = (PeriodicTask.objects.using(using).filter(enabled=True).select_related(*SCHEDULE_FIELDS)
            .order_by("pk"))
    last, fixed = 0, 0
    while True:
        started = time.perf_counter()
        at = now or timing.now()
        chunk = list(rows.filter(pk__gt=last)[:CHUNK])
        if not chunk:
            return fixed
        found = [(AsRead(row.pk, row.date_changed, row.last_run_at), due) for row in chunk
                 if (due := expected_due(row, at)) != timing.from_db(row.due_at)]
        store_due(found, using)
        fixed += len(found)
        last = chunk[-1].pk
        pause = (time.perf_counter() - started) * (1 - duty) / duty
        if stop is not None and stop.wait(pause):
            return fixed
        if stop is None and pause:
            time.sleep(pause)
