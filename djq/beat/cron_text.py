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


def join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


def runs(values: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted values as (first, last) runs of consecutive numbers."""
    result: list[tuple[int, int]] = []
    for value in sorted(values):
        if result and value == result[-1][1] + 1:
            result[-1] = (result[-1][0], value)
        else:
            result.append((value, value))
    return result


def spans(values: Iterable[int], name: Callable[[int], str] = str, through: str = "-") -> str:
    words = []
    for first, last in runs(values):
        if first == last:
            words.append(name(first))
        elif last == first + 1:
            words += [name(first), name(last)]
        else:
            words.append(f"{name(first)}{through}{name(last)}")
    return join(words)


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


def _weekdays(days: Iterable[int]) -> str:
    # Monday first, Sunday last, so that sat-sun reads as one span.
    shifted = [day or 7 for day in days]
    return spans(shifted, lambda d: DAY_NAMES[d % 7], " through ")


def _days(cron: Crontab) -> str:
    dom_any = cron.day_of_month.strip().startswith("*") and len(cron.days) == 31
    dow_any = cron.day_of_week.strip().startswith("*") and len(cron.weekdays) == 7
    month_days = f"on day{'s' if len(cron.days) > 1 else ''} {spans(cron.days)} of the month"
    weekdays = f"on {_weekdays(cron.weekdays)}"
    if dom_any and dow_any:
        return "every day"
    if dom_any:
        return weekdays
    if dow_any:
        return month_days
    either = not cron.day_of_month.strip().startswith("*") and not cron.day_of_week.strip().startswith("*")
    return f"{month_days} {'or' if either else 'if it is'} {weekdays[3:] if not either else weekdays}"


def describe(cron: Crontab) -> str:
    from .cron import default_timezone

    text = f"{_time(cron)}, {_days(cron)}"
    if len(cron.months) < 12:
        text += f", in {spans(cron.months, lambda m: MONTH_NAMES[m - 1], ' through ')}"
    return f"{text} ({cron.timezone or default_timezone()})"
