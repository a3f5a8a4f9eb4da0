"""Crontab fields: the text of one field -> the set of values it matches.

Syntax, as cron(8) reads it: ``*``, a value, a list (``1,15``), a range (``mon-fri``), a
step over either (``*/15``, ``0-30/10``). Beyond cron: ``5/15`` = from 5 to the field's
last value by 15 (for days of the week the last value is 6, Saturday). Months and
weekdays also take names: any start of three letters or more of the English name
(``jan``, ``sept``, ``tues``, ``thursday``). Weekday 0 and 7 are both Sunday.

Numbers are the ASCII digits 0-9 only, as cron's ``isdigit()`` in the C locale.
Ranges never wrap around (``sat-sun`` is 6-0 and goes backwards; cronie refuses it, Vixie
cron 3.0 silently matches nothing): the error says how to write it as a list. Every
error is a ``CronFieldError`` naming its field once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .schedules import ScheduleError

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_NUMBER = re.compile(r"[0-9]+")
_NAME = re.compile(r"[a-z]+")


class CronFieldError(ScheduleError):
    """One crontab field is invalid; ``field`` names it and ``reason`` says why (without the name)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    #: value of the first name (jan = 1, sun = 0)
    names_start: int = 0
    #: where ``*`` and ``N/step`` end (6 for weekdays, although 7 is a valid Sunday)
    last: int | None = None

    @property
    def end(self) -> int:
        return self.high if self.last is None else self.last

    def error(self, reason: str) -> CronFieldError:
        return CronFieldError(self.name, reason)


MINUTE = FieldSpec("minute", 0, 59)
HOUR = FieldSpec("hour", 0, 23)
DAY_OF_MONTH = FieldSpec("day_of_month", 1, 31)
MONTH_OF_YEAR = FieldSpec("month_of_year", 1, 12, MONTHS, 1)
DAY_OF_WEEK = FieldSpec("day_of_week", 0, 7, WEEKDAYS, 0, last=6)


def _value(token: str, spec: FieldSpec, item: str) -> int:
    token = token.strip().lower()
    if _NUMBER.fullmatch(token):
        number = int(token)
        if not spec.low <= number <= spec.high:
            raise spec.error(f"{number} is out of range {spec.low}-{spec.high}")
        return number
    # A name is any start of three letters or more: mon, tues, thursday, sept.
    if spec.names and len(token) >= 3 and _NAME.fullmatch(token):
        for index, name in enumerate(spec.names):
            if name.startswith(token):
                return index + spec.names_start
    if token.startswith("-") or not token:
        raise spec.error(f"{item!r} is not a value or a range: a range is first-last, such as "
                         f"{spec.low}-{spec.low + 1} (there are no negative numbers)")
    # str.isdigit() is true for '٣', '１' and '²', which cron does not read as numbers.
    hint = " (only the digits 0-9 count)" if any(char.isdigit() for char in token) else ""
    if spec.names:
        raise spec.error(f"{token!r} is neither a number ({spec.low}-{spec.high}) nor a name "
                         f"({spec.names[0][:3]}-{spec.names[-1][:3]}){hint}")
    raise spec.error(f"{token!r} is not a number ({spec.low}-{spec.high}){hint}")


def parse_field(text: str, spec: FieldSpec) -> frozenset[int]:
    """One crontab field -> the set of values it matches (day-of-week 7 becomes 0)."""
    if not isinstance(text, str) or not text.strip():
        raise spec.error(f"empty; use * for every {spec.name.split('_')[0]}")
    values: set[int] = set()
    for item in text.split(","):
        values |= _parse_item(item.strip(), spec)
    if spec is DAY_OF_WEEK and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


def _parse_item(item: str, spec: FieldSpec) -> set[int]:
    if not item:
        raise spec.error("empty item in a list")
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _NUMBER.fullmatch(step_text.strip()) or int(step_text) < 1:
            raise spec.error(f"step {step_text!r} in {item!r} must be a whole number >= 1")
        step = int(step_text)
    base = base.strip()
    if base == "*":
        return set(range(spec.low, spec.end + 1, step))
    if "-" in base.lstrip("-"):
        first, _, last = base.partition("-")
        if not last.strip():
            raise spec.error(f"range {item!r} has no end: a range is first-last, such as {spec.low}-{spec.low + 1}")
        if "-" in last:
            raise spec.error(f"{item!r} has more than one '-': a range is first-last")
        start, stop = _value(first, spec, item), _value(last, spec, item)
        if stop < start:
            raise spec.error(_backwards(item, first.strip(), last.strip(), spec, step))
        return set(range(start, stop + 1, step))
    start = _value(base, spec, item)
    if not slash:
        return {start}
    if start > spec.end:  # only 7/N for weekdays: from Sunday-as-7 there is nothing left to step through
        raise spec.error(f"{item!r} matches no day: a step runs from its start to {spec.end} "
                         f"({spec.names[spec.end][:3] if spec.names else spec.end}); write 0/{step} to start on Sunday")
    return set(range(start, spec.end + 1, step))  # "5/15" means from 5 to the end, every 15


def _backwards(item: str, first: str, last: str, spec: FieldSpec, step: int) -> str:
    """Why a range like sat-sun is refused, and the list that means what was probably meant."""
    reason = f"range {item!r} goes backwards (ranges do not wrap around)"
    if step != 1:
        return f"{reason}; write the values as a list"
    if spec.names and not _NUMBER.fullmatch(first.lower()):
        top, bottom = spec.names[spec.end - spec.names_start][:3], spec.names[0][:3]
    else:
        top, bottom = str(spec.end), str(spec.low)
    head = first if first.lower() == top else f"{first}-{top}"
    tail = last if last.lower() == bottom else f"{bottom}-{last}"
    return f"{reason}; write {head},{tail}"


def timezone_named(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ScheduleError("a crontab needs a timezone name such as 'UTC' or 'Europe/Paris'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown timezone {name!r}; use an IANA name such as 'Europe/Paris'") from exc
