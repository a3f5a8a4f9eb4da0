"""Crontab schedules in words, for the admin: "At 02:30, every day (Europe/Paris)"."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from .cron import Crontab

DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")
#: Up to this many run times a day are listed one by one ("At 08:00, 12:00 and 18:00").
MAX_LISTED_TIMES = 6


def join(words: list[str], conjunction: str = "and") -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def runs(values: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted values as (first, last) runs of consecutive numbers."""
    result: list[tuple[int, int]] = []
    for value in sorted(values):
        if result and value == result[-1][1] + 1:
            result[-1] = (result[-1][0], value)
        else:
            result.append((value, value))
    return result


def spans(values: Iterable[int], name: Callable[[int], str] = str, through: str = "-",
          conjunction: str = "and") -> str:
    words = []
    for first, last in runs(values):
        if first == last:
            words.append(name(first))
        elif last == first + 1:
            words += [name(first), name(last)]
        else:
            words.append(f"{name(first)}{through}{name(last)}")
    return join(words, conjunction)


def _step(values: tuple[int, ...], size: int) -> int | None:
    """The step s when ``values`` is exactly 0, s, 2s, ... below ``size``."""
    if len(values) < 2 or values[0] != 0:
        return None
    step = values[1]
    return step if values == tuple(range(0, size, step)) else None


def _time(cron: Crontab) -> str:
    minutes, hours = cron.minutes, cron.hours
    if len(hours) < 24 and len(minutes) * len(hours) <= MAX_LISTED_TIMES:
        return "At " + join([f"{h:02d}:{m:02d}" for h in hours for m in minutes])
    if len(minutes) == 60:
        text = "Every minute"
    elif (step := _step(minutes, 60)) is not None:
        text = f"Every {step} minutes"
    else:
        label = "minute" if len(minutes) == 1 else "minutes"
        text = f"At {label} {spans(minutes)} past {'every' if len(hours) == 24 else 'the'} hour"
    if len(hours) == 24:
        return text
    if (step := _step(hours, 24)) is not None:
        return f"{text}, every {step} hours"
    hour_runs = runs(hours)
    if len(hour_runs) == 1:
        first, last = hour_runs[0]
        return f"{text}, between {first:02d}:00 and {last:02d}:59"
    return f"{text}, during hours {spans(hours, lambda h: f'{h:02d}')}"


def _weekdays(days: Iterable[int], conjunction: str = "and") -> str:
    # Monday first, Sunday last, so that sat-sun reads as one span.
    shifted = [day or 7 for day in days]
    return spans(shifted, lambda d: DAY_NAMES[d % 7], " through ", conjunction)


def _days(cron: Crontab) -> str:
    """The days a crontab runs on, worded from the sets and the rule that combines them."""
    every_date, every_weekday = len(cron.days) == 31, len(cron.weekdays) == 7
    month_days = f"on day{'s' if len(cron.days) > 1 else ''} {spans(cron.days)} of the month"
    if not cron.both_days_must_match:  # cron's OR rule: either field's days
        if every_date or every_weekday:
            return "every day"
        return f"{month_days} and every {_weekdays(cron.weekdays)}"
    if every_date and every_weekday:
        return "every day"
    if every_date:
        return f"on {_weekdays(cron.weekdays)}"
    if every_weekday:
        return month_days
    return f"{month_days}, if it falls on {_weekdays(cron.weekdays, 'or')}"


def describe(cron: Crontab) -> str:
    from .cron import default_timezone

    text = f"{_time(cron)}, {_days(cron)}"
    if len(cron.months) < 12:
        text += f", in {spans(cron.months, lambda m: MONTH_NAMES[m - 1], ' through ')}"
    return f"{text} ({cron.timezone or default_timezone()})"
