"""Crontab fields: the text of one field -> the set of values it matches.

Syntax: ``*``, a value, a list (``1,15``), a range (``mon-fri``), a step over either
(``*/15``, ``0-30/10``, ``5/15`` = from 5 to the end by 15). Months and weekdays also take
names: any start of three letters or more of the English name (``jan``, ``sept``,
``tues``, ``thursday``). Weekday 0 and 7 are both Sunday. Each error names the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .schedules import ScheduleError

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    #: value of the first name (jan = 1, sun = 0)
    names_start: int = 0


MINUTE = FieldSpec("minute", 0, 59)
HOUR = FieldSpec("hour", 0, 23)
DAY_OF_MONTH = FieldSpec("day_of_month", 1, 31)
MONTH_OF_YEAR = FieldSpec("month_of_year", 1, 12, MONTHS, 1)
DAY_OF_WEEK = FieldSpec("day_of_week", 0, 7, WEEKDAYS, 0)


def _value(token: str, spec: FieldSpec) -> int:
    token = token.strip().lower()
    if token.isdigit():
        number = int(token)
        if not spec.low <= number <= spec.high:
            raise ScheduleError(f"{spec.name}: {number} is out of range {spec.low}-{spec.high}")
        return number
    # A name is any start of three letters or more: mon, tues, thursday, sept.
    for index, name in enumerate(spec.names):
        if len(token) >= 3 and name.startswith(token):
            return index + spec.names_start
    if spec.names:
        raise ScheduleError(f"{spec.name}: {token!r} is neither a number ({spec.low}-{spec.high}) nor a name "
                            f"({spec.names[0][:3]}-{spec.names[-1][:3]})")
    raise ScheduleError(f"{spec.name}: {token!r} is not a number ({spec.low}-{spec.high})")


def parse_field(text: str, spec: FieldSpec) -> frozenset[int]:
    """One crontab field -> the set of values it matches (day-of-week 7 becomes 0)."""
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError(f"{spec.name}: empty; use * for every {spec.name.split('_')[0]}")
    values: set[int] = set()
    for item in text.split(","):
        values |= _parse_item(item.strip(), spec)
    if spec is DAY_OF_WEEK and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


def _parse_item(item: str, spec: FieldSpec) -> set[int]:
    if not item:
        raise ScheduleError(f"{spec.name}: empty item in a list")
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.strip().isdigit() or int(step_text) < 1:
            raise ScheduleError(f"{spec.name}: step {step_text!r} in {item!r} must be a whole number >= 1")
        step = int(step_text)
    high = 6 if spec is DAY_OF_WEEK else spec.high
    if base.strip() == "*":
        start, stop = spec.low, high
    elif "-" in base:
        first, _, last = base.partition("-")
        start, stop = _value(first, spec), _value(last, spec)
        if stop < start:
            raise ScheduleError(f"{spec.name}: range {item!r} goes backwards")
    else:
        start = _value(base, spec)
        stop = high if slash else start  # "5/15" means from 5 to the end, every 15
    return set(range(start, stop + 1, step))


def timezone_named(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ScheduleError("a crontab needs a timezone name such as 'UTC' or 'Europe/Paris'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown timezone {name!r}; use an IANA name such as 'Europe/Paris'") from exc
