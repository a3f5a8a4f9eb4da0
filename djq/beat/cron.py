"""Crontab schedules: the next run, in the schedule's own timezone.

A string takes the cron order ``minute hour day-of-month month day-of-week``, or an alias
such as ``@daily``; each field's syntax is in djq.beat.cron_fields. Day matching follows
cron(8) (Vixie cron and cronie): when both day fields are restricted (neither starts with
``*``), a day matches if either one does. A day field that starts with ``*`` only takes
both fields out of that OR rule: its values still count, and a day must match both
(``0 0 */2 * *`` runs on odd days, ``0 0 */10 * mon`` on Mondays that are the 1st, 11th,
21st or 31st).

Wall-clock times are turned into instants in the schedule's timezone. As in cron(8),
DST changes treat two kinds of job differently:
- A job at fixed times (neither minute nor hour starts with ``*``, e.g. ``30 2 * * *``):
  a time that occurs twice (clocks go back) runs at its first occurrence only, and a time
  that does not exist (clocks go forward) runs once, the moment the clocks jump. So a
  daily 02:30 job runs exactly once on both change days.
- A job with ``*`` in the minute or hour (hourly or more often) follows the clock: it
  runs in both passes of a repeated hour, and skipped times are simply skipped, so an
  every-15-minutes job never pauses for an hour and never bunches up.
"""
from __future__ import annotations

import bisect
import calendar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo

from .cron_fields import DAY_OF_MONTH, DAY_OF_WEEK, HOUR, MINUTE, MONTH_OF_YEAR, parse_field, timezone_named
from .schedules import Schedule, ScheduleError

ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
#: A schedule that matches nothing within this many years never runs. The longest wait
#: between two runs of a valid crontab is a 29 February on one weekday (``0 0 29 2 mon``):
#: 28 years within a century, 40 across a skipped leap year such as 2100.
SEARCH_YEARS = 41
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MINUTE = timedelta(minutes=1)
#: Clock changes are shorter than this; a repeated hour is looked for this far around a moment.
FOLD_WINDOW = timedelta(hours=3)


@dataclass(frozen=True)
class Crontab(Schedule):
    """A cron schedule in ``timezone`` (an IANA name; None: the project's TIME_ZONE, looked up
    when first needed, so ``crontab()`` can be used inside a settings file)."""

    minute: str = "*"
    hour: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    day_of_week: str = "*"
    timezone: str | None = None
    kind: ClassVar[str] = "crontab"
    minutes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    hours: tuple[int, ...] = field(init=False, repr=False, compare=False)
    days: frozenset[int] = field(init=False, repr=False, compare=False)
    months: tuple[int, ...] = field(init=False, repr=False, compare=False)
    weekdays: frozenset[int] = field(init=False, repr=False, compare=False)
    tz: ZoneInfo | None = field(init=False, repr=False, compare=False)
    _both_days: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parsed = {
            "minutes": tuple(sorted(parse_field(self.minute, MINUTE))),
            "hours": tuple(sorted(parse_field(self.hour, HOUR))),
            "days": parse_field(self.day_of_month, DAY_OF_MONTH),
            "months": tuple(sorted(parse_field(self.month_of_year, MONTH_OF_YEAR))),
            "weekdays": parse_field(self.day_of_week, DAY_OF_WEEK),
            "tz": None if self.timezone is None else timezone_named(self.timezone),
            "_both_days": self.day_of_month.strip().startswith("*") or self.day_of_week.strip().startswith("*"),
        }
        for name, value in parsed.items():
            object.__setattr__(self, name, value)
        # Both day fields must match (see day_matches), so a day of the month must exist in one
        # of the months; any such date falls on every weekday within SEARCH_YEARS. With the
        # OR rule every month has each weekday, so such a crontab always runs.
        if self.both_days_must_match and not any(
            day <= _DAYS_IN_MONTH[month - 1] for month in self.months for day in self.days
        ):
            raise ScheduleError(f"day_of_month {self.day_of_month!r} never occurs in month_of_year "
                                f"{self.month_of_year!r}: this schedule would never run")

    @classmethod
    def parse(cls, expression: str, timezone: str | None = None) -> Crontab:
        """``Crontab.parse("30 2 * * mon-fri", "Europe/Paris")``; also ``@daily``, ``@hourly``, ..."""
        text = ALIASES.get(expression.strip().lower(), expression) if isinstance(expression, str) else ""
        parts = text.split()
        if len(parts) != 5:
            raise ScheduleError(f"crontab {expression!r} needs 5 fields (minute hour day-of-month month "
                                "day-of-week), or an alias such as @daily")
        minute, hour, dom, month, dow = parts
        return cls(minute, hour, dom, month, dow, timezone)

    @property
    def zone(self) -> ZoneInfo:
        return self.tz if self.tz is not None else timezone_named(default_timezone())

    def resolved(self) -> Crontab:
        """This schedule with its timezone named (the project's TIME_ZONE if it had none)."""
        return self if self.timezone is not None else replace(self, timezone=default_timezone())

    @property
    def expression(self) -> str:
        return f"{self.minute} {self.hour} {self.day_of_month} {self.month_of_year} {self.day_of_week}"

    def describe(self) -> str:
        from .cron_text import describe

        return describe(self)

    # -- matching wall-clock times ------------------------------------------------
    @property
    def both_days_must_match(self) -> bool:
        """cron's DOM_STAR/DOW_STAR: a day field starting with ``*`` turns the OR rule into AND."""
        return self._both_days

    def day_matches(self, day: datetime) -> bool:
        return self._day_matches(day.day, day.isoweekday() % 7)  # cron counts from Sunday = 0

    def _day_matches(self, day: int, weekday: int) -> bool:
        if self._both_days:
            return day in self.days and weekday in self.weekdays
        return day in self.days or weekday in self.weekdays

    def _next_day(self, wall: datetime) -> datetime:
        """Midnight of the first matching day after ``wall`` in its month, else of the next month's 1st."""
        last = calendar.monthrange(wall.year, wall.month)[1]
        weekday = wall.isoweekday() % 7
        for day in range(wall.day + 1, last + 1):
            weekday = (weekday + 1) % 7
            if self._day_matches(day, weekday):
                return wall.replace(day=day, hour=0, minute=0)
        return wall.replace(day=last, hour=0, minute=0) + timedelta(days=1)

    def next_wall(self, wall: datetime) -> datetime | None:
        """The first naive wall-clock minute at or after ``wall`` that the fields match."""
        limit = min(wall.year + SEARCH_YEARS, 9998)  # datetime stops at 9999
        while wall.year <= limit:
            if wall.month not in self.months:
                wall = _next_month(wall, self.months)
                continue
            if not self.day_matches(wall):
                wall = self._next_day(wall)
                continue
            if wall.hour not in self.hours:
                later = _following(self.hours, wall.hour)
                wall = (wall.replace(hour=later, minute=0) if later is not None
                        else (wall + timedelta(days=1)).replace(hour=0, minute=0))
                continue
            if wall.minute not in self.minutes:
                later = _following(self.minutes, wall.minute)
                wall = (wall.replace(minute=later) if later is not None
                        else wall.replace(minute=0) + timedelta(hours=1))
                continue
            return wall
        return None

    @property
    def follows_clock(self) -> bool:
        """True for jobs with ``*`` in the minute or hour field (see the module docstring)."""
        return self.minute.strip().startswith("*") or self.hour.strip().startswith("*")

    def instant(self, wall: datetime) -> datetime | None:
        """The first moment a naive wall-clock time happens here (None: skipped by the clock)."""
        first = wall.replace(tzinfo=self.zone, fold=0)
        if first.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) == wall:
            return first.astimezone(UTC)  # exists; when it occurs twice, its first occurrence
        return None if self.follows_clock else _gap_end(wall, self.zone)

    def next_after(self, moment: datetime) -> datetime | None:
        # In UTC: comparing two datetimes of the same zone ignores ``fold`` (PEP 495), which
        # would confuse the two passes of a repeated hour.
        moment = moment.astimezone(UTC)
        best = self._next_first_pass(moment)
        if self.follows_clock:
            again = self._next_second_pass(moment)
            if again is not None and (best is None or again < best):
                best = again
        return best

    def _next_first_pass(self, moment: datetime) -> datetime | None:
        wall = moment.astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0)
        candidate = self.next_wall(wall)
        # First-pass instants never go backwards as the wall time grows, so the first one
        # past ``moment`` is the answer.
        while candidate is not None:
            at = self.instant(candidate)
            if at is not None and at > moment:
                return at
            candidate = self.next_wall(candidate + _MINUTE)
        return None

    def _next_second_pass(self, moment: datetime) -> datetime | None:
        """The next run in the second pass of a repeated hour near ``moment``, if any."""
        before, after = moment - FOLD_WINDOW, moment + FOLD_WINDOW
        offset_before, offset_after = before.astimezone(self.zone).utcoffset(), after.astimezone(self.zone).utcoffset()
        if offset_before is None or offset_after is None or offset_before <= offset_after:
            return None  # the clocks are not set back around here
        wall: datetime | None = before.astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0)
        end = after.astimezone(self.zone).replace(tzinfo=None)
        while (wall := self.next_wall(wall)) is not None and wall <= end:  # type: ignore[arg-type]
            first, second = wall.replace(tzinfo=self.zone, fold=0), wall.replace(tzinfo=self.zone, fold=1)
            repeated = first.utcoffset() != second.utcoffset() and self.instant(wall) is not None
            if repeated and second.astimezone(UTC) > moment:
                return second.astimezone(UTC)
            wall = wall + _MINUTE
        return None


def _following(values: tuple[int, ...], current: int) -> int | None:
    index = bisect.bisect_right(values, current)
    return values[index] if index < len(values) else None


def _next_month(wall: datetime, months: tuple[int, ...]) -> datetime:
    later = _following(months, wall.month)
    if later is None:
        return wall.replace(year=wall.year + 1, month=months[0], day=1, hour=0, minute=0)
    return wall.replace(month=later, day=1, hour=0, minute=0)


def _gap_end(wall: datetime, tz: ZoneInfo) -> datetime:
    """When the clocks jump over ``wall``: the first instant after the skipped span."""
    # fold=0 reads ``wall`` with the offset from before the jump, fold=1 with the one after;
    # the jump lies between the two readings. Transitions fall on whole seconds.
    low = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    high = int(wall.replace(tzinfo=tz, fold=0).timestamp())
    low, high = min(low, high), max(low, high)
    after = datetime.fromtimestamp(high, UTC).astimezone(tz).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def crontab(expression: str | None = None, *, minute: str = "*", hour: str = "*", day_of_month: str = "*",
            month_of_year: str = "*", day_of_week: str = "*", timezone: str | None = None) -> Crontab:
    """``crontab("30 2 * * *", timezone="Europe/Paris")`` or ``crontab(minute="30", hour="2")``.

    Without a timezone the schedule uses the project's TIME_ZONE.
    """
    if expression is not None:
        return Crontab.parse(expression, timezone)
    return Crontab(str(minute), str(hour), str(day_of_month), str(month_of_year), str(day_of_week), timezone)


def default_timezone() -> str:
    """The project's TIME_ZONE (UTC when unset)."""
    from django.conf import settings

    return str(getattr(settings, "TIME_ZONE", None) or "UTC")
