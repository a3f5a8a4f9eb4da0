"""Schedules as plain values: when is the next run after a moment?

Everything here is pure (standard library only, no Django models), so the models, the
admin, ``DJQ_BEAT_SCHEDULE`` in a settings file and the beat loop share one definition
of time. Every datetime going in must be timezone-aware; every run time coming out is in
UTC, because comparing two datetimes of one zone ignores ``fold`` (PEP 495) and would
mistake the two passes of a repeated hour for each other.

- ``Interval``: every N seconds/minutes/hours/days, counted in elapsed time (so "every
  1 day" is 24 hours, also across a DST change; use a crontab for wall-clock times).
- ``Clocked``: one moment.
- ``Crontab`` (djq.beat.cron) and ``Solar`` (djq.beat.sun) build on ``Schedule``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from ..exceptions import ConfigurationError

#: Searching back this far for the latest missed run keeps catch-up cheap after long downtime.
CATCH_UP_WINDOW = timedelta(days=1)
_TICK = timedelta(microseconds=1)

PERIODS: dict[str, int] = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


class ScheduleError(ConfigurationError, ValueError):
    """A schedule is invalid (bad crontab field, unknown timezone, missing astronomy library, ...)."""


def require_aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise ScheduleError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScheduleError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value


class Schedule:
    """A rule that yields run times. Subclasses implement ``next_after`` and ``describe``."""

    kind: ClassVar[str] = ""

    def next_after(self, moment: datetime) -> datetime | None:
        """The first run time strictly after ``moment``; None when there is none."""
        raise NotImplementedError

    def describe(self) -> str:
        """A sentence for people: "At 02:30, every day (Europe/Paris)"."""
        raise NotImplementedError

    def first_at_or_after(self, moment: datetime) -> datetime | None:
        return self.next_after(moment - _TICK)

    def latest_due(self, first_due: datetime, now: datetime) -> datetime:
        """The latest run time in ``[first_due, now]``, where ``first_due`` is a run time.

        This is the missed-run policy: however many runs were missed, only the latest is
        sent. Jumping to a day before ``now`` first keeps this to one day of steps.
        """
        cursor = first_due
        jump = self.next_after(now - CATCH_UP_WINDOW)
        if jump is not None and cursor < jump <= now:
            cursor = jump
        while True:
            following = self.next_after(cursor)
            if following is None or following > now:
                return cursor
            cursor = following


@dataclass(frozen=True)
class Interval(Schedule):
    """Every ``every`` ``period`` (days, hours, minutes or seconds) of elapsed time."""

    every: int
    period: str = "seconds"
    kind: ClassVar[str] = "interval"

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ScheduleError(f"interval period {self.period!r} is unknown; use one of {', '.join(PERIODS)}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ScheduleError(f"interval must be a whole number of {self.period} >= 1, got {self.every!r}")

    @classmethod
    def from_timedelta(cls, delta: timedelta) -> Interval:
        """The largest unit that divides ``delta`` exactly: 90 s -> every 90 seconds, 2 h -> every 2 hours."""
        seconds = delta.total_seconds()
        if seconds < 1 or seconds != int(seconds):
            raise ScheduleError(f"an interval must be a whole number of seconds >= 1, got {delta}")
        for period, size in PERIODS.items():
            if int(seconds) % size == 0:
                return cls(int(seconds) // size, period)
        raise AssertionError("seconds always divides")  # pragma: no cover

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self.every * PERIODS[self.period])

    def next_after(self, moment: datetime) -> datetime | None:
        return moment + self.delta

    def first_at_or_after(self, moment: datetime) -> datetime | None:
        # An interval's grid starts wherever it is anchored: here, at ``moment`` itself.
        return moment

    def latest_due(self, first_due: datetime, now: datetime) -> datetime:
        if now <= first_due:
            return first_due
        return first_due + self.delta * ((now - first_due) // self.delta)

    def describe(self) -> str:
        unit = self.period[:-1]
        return f"every {unit}" if self.every == 1 else f"every {self.every} {self.period}"


@dataclass(frozen=True)
class Clocked(Schedule):
    """Once, at ``at``."""

    at: datetime
    kind: ClassVar[str] = "clocked"

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", require_aware(self.at, "a clocked schedule's time").astimezone(UTC))

    def next_after(self, moment: datetime) -> datetime | None:
        return self.at if self.at > moment else None

    def describe(self) -> str:
        return f"once, at {self.at:%Y-%m-%d %H:%M:%S} UTC"


def every(*, days: int = 0, hours: int = 0, minutes: int = 0, seconds: int = 0) -> Interval:
    """``every(minutes=5)``: an interval for DJQ_BEAT_SCHEDULE or ``@periodic``."""
    return Interval.from_timedelta(timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds))


def clocked(at: datetime) -> Clocked:
    """``clocked(datetime(2030, 1, 1, tzinfo=UTC))``: run once, at that moment."""
    return Clocked(at)
