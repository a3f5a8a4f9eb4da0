"""Writing code-declared periodic tasks into the database when beat starts.

For each declaration: the schedule row is found or made, then the PeriodicTask of that
name is created, or updated in the fields the declaration sets and nothing else. So a
description or ``enabled`` changed in the admin survives a restart, unless the code
itself sets that field. A task that code declared before but no longer does is disabled
(not deleted: its run log stays). Many beats may start at once: the whole sync is one
transaction, retried if another beat created the same rows first.
"""
from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from ..exceptions import ConfigurationError
from ..registry import registry
from .cron import Crontab
from .declare import Declaration, declarations
from .schedules import Clocked, Interval, Schedule
from .sun import Solar
from .timing import now, to_db

logger = logging.getLogger(__name__)
ATTEMPTS = 3


def schedule_row(schedule: Schedule, using: str) -> tuple[str, Any]:
    """(foreign key name, schedule row) for ``schedule``, made if missing."""
    from ..models import ClockedSchedule, CrontabSchedule, IntervalSchedule, SolarSchedule

    if isinstance(schedule, Interval):
        interval, _ = IntervalSchedule.objects.using(using).get_or_create(every=schedule.every, period=schedule.period)
        return "interval", interval
    if isinstance(schedule, Crontab):
        cron, _ = CrontabSchedule.objects.using(using).get_or_create(
            minute=schedule.minute, hour=schedule.hour, day_of_month=schedule.day_of_month,
            month_of_year=schedule.month_of_year, day_of_week=schedule.day_of_week,
            timezone=schedule.resolved().timezone or "UTC",
        )
        return "crontab", cron
    if isinstance(schedule, Solar):
        solar, _ = SolarSchedule.objects.using(using).get_or_create(
            event=schedule.event, latitude=_degrees(schedule.latitude), longitude=_degrees(schedule.longitude))
        return "solar", solar
    if isinstance(schedule, Clocked):
        clocked, _ = ClockedSchedule.objects.using(using).get_or_create(clocked_time=to_db(schedule.at))
        return "clocked", clocked
    raise ConfigurationError(f"cannot store a schedule of type {type(schedule).__name__}")


def _degrees(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))


def _values(declared: Declaration, using: str) -> dict[str, Any]:
    from ..models import SCHEDULE_FIELDS

    kind, row = schedule_row(declared.schedule, using)
    values: dict[str, Any] = {f"{name}_id": row.pk if name == kind else None for name in SCHEDULE_FIELDS}
    values["task"] = declared.task
    for key, value in declared.options.items():
        values[key] = to_db(value) if key in ("expires", "start_time") else value
    return values


def _apply(declared: Declaration, using: str) -> str:
    """Create or update one task; returns what happened ("created", "updated", "unchanged")."""
    from ..models import PeriodicTask

    values = _values(declared, using)
    existing = PeriodicTask.objects.using(using).select_for_update().filter(name=declared.name).first()
    if existing is None:
        PeriodicTask.objects.using(using).create(name=declared.name, declared_in_code=True, **values)
        return "created"
    values["declared_in_code"] = True
    changed = [key for key, value in values.items() if getattr(existing, key) != value]
    if not changed:
        return "unchanged"
    for key in changed:
        setattr(existing, key, values[key])
    existing.save(using=using, update_fields=[key.removesuffix("_id") for key in changed] + ["date_changed"])
    return "updated"


def _disable_undeclared(names: set[str], using: str) -> list[str]:
    from ..models import PeriodicTask

    stale = PeriodicTask.objects.using(using).filter(declared_in_code=True, enabled=True).exclude(name__in=names)
    gone = list(stale.values_list("name", flat=True))
    if gone:
        stale.update(enabled=False, date_changed=to_db(now()))
    return gone


def sync(using: str = "default", found: list[Declaration] | None = None) -> dict[str, str]:
    """Write the declared periodic tasks into database ``using``; returns name -> what happened."""
    found = declarations() if found is None else found
    for declared in found:
        if declared.task not in registry:
            raise ConfigurationError(f"{declared.origin}: task {declared.task!r} is not registered "
                                     "(is its app in INSTALLED_APPS, with the task in its tasks.py?)")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with transaction.atomic(using=using):
                outcome = {declared.name: _apply(declared, using) for declared in found}
                for name in _disable_undeclared(set(outcome), using):
                    outcome[name] = "disabled"
        except IntegrityError:
            if attempt == ATTEMPTS:
                raise
            continue  # another beat made the same rows meanwhile; now they exist
        for name, what in outcome.items():
            if what != "unchanged":
                logger.info("beat: periodic task %r %s from code", name, what)
        return outcome
    raise AssertionError("unreachable")  # pragma: no cover
