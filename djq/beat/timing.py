"""When a periodic task runs next, and which run to send now: the policy in one place.

- ``last_run_at`` is the scheduled time of the last run sent (set to the creation time
  when a task is created, so a new task waits for its first scheduled time). None means
  "run at once".
- Missed runs: when several scheduled times passed unsent (all beats down, or late),
  only the latest is sent, once; the schedule then carries on from it.
- Edits: when a task or its schedule changed after the run that was due, the runs the
  old settings missed are not made up: the next run is the schedule's first time after
  the change. Re-enabling a task that was off for a week does not fire it at once.
- ``start_time``: nothing runs before it; an interval task's first run is at it.
- A clocked task runs once at its time, even if that time was already past when the
  task was made, unless a run at or after that time was already sent.

Also the conversion between beat's aware UTC datetimes and what the database holds
(naive local time when USE_TZ = False).
"""
from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import overload

from django.conf import settings
from django.utils import timezone

from .schedules import Clocked, Schedule


def now() -> datetime:
    return datetime.now(UTC)


@overload
def from_db(value: datetime) -> datetime: ...
@overload
def from_db(value: None) -> None: ...
def from_db(value: datetime | None) -> datetime | None:
    """A datetime read from the database, as an aware UTC datetime."""
    if value is None:
        return None
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value.astimezone(UTC)


@overload
def to_db(value: datetime) -> datetime: ...
@overload
def to_db(value: None) -> None: ...
def to_db(value: datetime | None) -> datetime | None:
    """An aware datetime, in the form the database expects (naive local time without USE_TZ)."""
    if value is None or settings.USE_TZ:
        return value
    return timezone.make_naive(value, timezone.get_default_timezone())


# Schedules are frozen values and ``next_after`` a pure function of one, so its answers are
# kept: the tasks of a burst share schedules and last runs (each task's own ``changed_at``
# and run count made a cache of whole answers miss for every row), and a crontab's missed
# runs (``latest_due``) step through the same moments for every task on it.
@lru_cache(maxsize=8192)
def next_after(schedule: Schedule, moment: datetime) -> datetime | None:
    return schedule.next_after(moment)


@lru_cache(maxsize=4096)
def _latest_due(schedule: Schedule, first_due: datetime, now: datetime) -> datetime:
    return schedule.latest_due(first_due, now)


def next_run(schedule: Schedule, *, last_run_at: datetime | None, changed_at: datetime | None,
             start_time: datetime | None, run_count: int, now: datetime) -> datetime | None:
    """When the next run is due (at or before ``now`` means due now); None: never again."""
    if isinstance(schedule, Clocked):
        fired = run_count > 0 and last_run_at is not None and last_run_at >= schedule.at
        due: datetime | None = None if fired else schedule.at
    elif last_run_at is None:
        due = now
    else:
        due = next_after(schedule, last_run_at)
        if due is not None and changed_at is not None and due < changed_at:
            due = next_after(schedule, changed_at)
    if due is not None and start_time is not None and due < start_time:
        due = schedule.first_at_or_after(start_time)
    return due


def run_to_send(schedule: Schedule, *, last_run_at: datetime | None, changed_at: datetime | None,
                start_time: datetime | None, run_count: int, now: datetime) -> datetime | None:
    """The scheduled time of the run to send now (the latest one missed), or None."""
    due = next_run(schedule, last_run_at=last_run_at, changed_at=changed_at, start_time=start_time,
                   run_count=run_count, now=now)
    if due is None or due > now:
        return None
    return _latest_due(schedule, due, now)
