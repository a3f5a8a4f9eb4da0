"""Periodic tasks declared in code: the ``DJQ_BEAT_SCHEDULE`` setting and ``@periodic``.

    DJQ_BEAT_SCHEDULE = {
        "nightly report": {"task": "reports.tasks.nightly", "schedule": "30 2 * * *"},
        "poll feeds": {"task": "feeds.tasks.poll", "schedule": timedelta(minutes=5), "queue": "io"},
    }

    @periodic(crontab("0 4 * * mon", timezone="Europe/Paris"), name="weekly cleanup")
    @task
    def cleanup() -> None: ...

A schedule is a ``crontab``/``every``/``solar``/``clocked`` value, a crontab string (in
TIME_ZONE), a ``timedelta`` or a number of seconds. Every mistake is a ConfigurationError
naming the entry. Beat writes these into the database when it starts (djq.beat.sync);
only the fields an entry names are written, so admin edits to the others survive.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, TypeVar

from ..conf import djq_settings
from ..exceptions import ConfigurationError
from .cron import Crontab, crontab
from .schedules import Interval, Schedule, ScheduleError

#: Fields an entry may set besides ``task`` and ``schedule``.
OPTIONS = frozenset({
    "args", "kwargs", "queue", "priority", "expires", "expire_seconds", "one_off", "start_time", "enabled",
    "description",
})
T = TypeVar("T")


@dataclass(frozen=True)
class Declaration:
    """One periodic task as code declares it. ``options`` holds only the fields it sets.

    ``schedule`` is as written until ``declarations()`` makes it a Schedule, so that a
    crontab's default timezone is read when beat starts, not when a module is imported.
    """

    name: str
    task: str
    schedule: Schedule | Any
    options: dict[str, Any] = field(default_factory=dict)
    origin: str = ""


_by_decorator: dict[str, Declaration] = {}
#: The built-in periodic cleanup (DJQ_RESULT_CLEANUP_SCHEDULE); a user entry of this name replaces it.
CLEANUP_NAME = "djq result cleanup"


def to_schedule(value: Any, where: str) -> Schedule:
    try:
        if isinstance(value, Crontab):
            return value.resolved()
        if isinstance(value, Schedule):
            return value
        if isinstance(value, timedelta):
            return Interval.from_timedelta(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Interval.from_timedelta(timedelta(seconds=value))
        if isinstance(value, str):
            return crontab(value).resolved()
    except ScheduleError as exc:
        raise ScheduleError(f"{where}: {exc}") from exc
    raise ConfigurationError(f"{where}: schedule must be crontab(...), every(...), solar(...), clocked(...), "
                             f"a crontab string, a timedelta or seconds; got {value!r}")


def _aware(value: Any, key: str, where: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ConfigurationError(f"{where}: {key} must be a timezone-aware datetime, got {value!r}")
    return value


def _json(value: Any, key: str, where: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: {key} must be JSON-serializable: {exc}") from exc


def _check(key: str, value: Any, where: str) -> Any:
    """One option's value, normalised as the database stores it."""
    if key == "args":
        if not isinstance(value, (list, tuple)):
            raise ConfigurationError(f"{where}: args must be a list or tuple, got {type(value).__name__}")
        return _json(list(value), key, where)
    if key == "kwargs":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigurationError(f"{where}: kwargs must be a dict with string keys, got {value!r}")
        return _json(value, key, where)
    if key in ("expires", "start_time"):
        return None if value is None else _aware(value, key, where)
    if key == "priority" and value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255):
        raise ConfigurationError(f"{where}: priority must be an integer from 0 to 255, got {value!r}")
    if key == "expire_seconds" and value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{where}: expire_seconds must be a whole number >= 1, got {value!r}")
    if key in ("one_off", "enabled") and not isinstance(value, bool):
        raise ConfigurationError(f"{where}: {key} must be True or False, got {value!r}")
    if key in ("queue", "description") and not isinstance(value, str):
        raise ConfigurationError(f"{where}: {key} must be a string, got {value!r}")
    return value


def declaration(name: str, task: Any, schedule: Any, options: dict[str, Any], origin: str) -> Declaration:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ConfigurationError(f"{origin}: the name must be a non-empty string of at most 200 characters")
    unknown = set(options) - OPTIONS
    if unknown:
        raise ConfigurationError(f"{origin}: unknown option(s) {', '.join(sorted(unknown))}; "
                                 f"valid: task, schedule, {', '.join(sorted(OPTIONS))}")
    if not isinstance(task, str) or not task:
        raise ConfigurationError(f"{origin}: 'task' must be a task name, got {task!r}")
    checked = {key: _check(key, value, origin) for key, value in options.items()}
    if checked.get("expires") is not None and checked.get("expire_seconds") is not None:
        raise ConfigurationError(f"{origin}: give expires or expire_seconds, not both")
    return Declaration(name, task, schedule, checked, origin)


def periodic(schedule: Any, *, name: str | None = None, **options: Any) -> Callable[[T], T]:
    """Declare a periodic run of the task below: ``@periodic(every(minutes=5))`` above ``@task``."""
    unknown = set(options) - OPTIONS
    if unknown:  # fail at the decorator call itself, like @task does
        raise ConfigurationError(f"@periodic: unknown option(s) {', '.join(sorted(unknown))}; "
                                 f"valid: name, {', '.join(sorted(OPTIONS))}")

    def decorate(task: T) -> T:
        from ..task import Task

        if not isinstance(task, Task):
            raise ConfigurationError(f"@periodic must be placed above @task (it got {task!r})")
        entry_name = name or task.name
        origin = f"@periodic({entry_name!r}) on {task.name}"
        # The schedule is checked now, but a crontab's default timezone is named at sync.
        to_schedule(schedule, origin)
        _by_decorator[entry_name] = declaration(entry_name, task.name, schedule, options, origin)
        return task

    return decorate


def declarations() -> list[Declaration]:
    """Everything declared in code: DJQ_BEAT_SCHEDULE, then @periodic. A name used twice is an error."""
    setting = djq_settings.BEAT_SCHEDULE
    if not isinstance(setting, dict):
        raise ConfigurationError(f"DJQ_BEAT_SCHEDULE must be a dict of name -> entry, got {type(setting).__name__}")
    found: dict[str, Declaration] = {}
    for name, entry in setting.items():
        origin = f"DJQ_BEAT_SCHEDULE[{name!r}]"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{origin} must be a dict with 'task' and 'schedule', got {entry!r}")
        if "schedule" not in entry:
            raise ConfigurationError(f"{origin} has no 'schedule'")
        options = {k: v for k, v in entry.items() if k not in ("task", "schedule")}
        found[name] = declaration(name, entry.get("task"), entry["schedule"], options, origin)
    for name, declared in _by_decorator.items():
        if name in found:
            raise ConfigurationError(f"periodic task {name!r} is declared twice: {found[name].origin} and {declared.origin}")
        found[name] = declared
    cleanup = djq_settings.RESULT_CLEANUP_SCHEDULE
    if cleanup is not None and djq_settings.RESULT_EXPIRES is not None and CLEANUP_NAME not in found:
        found[CLEANUP_NAME] = declaration(CLEANUP_NAME, "djq.cleanup", cleanup,
                                          {"description": "built in: deletes results older than DJQ_RESULT_EXPIRES"},
                                          "DJQ_RESULT_CLEANUP_SCHEDULE")
    return [replace(d, schedule=to_schedule(d.schedule, d.origin)) for d in found.values()]
