"""Crontabs against references: a minute-by-minute cron, and the schedule's own words.

The property test builds random crontabs from parts whose values it knows, walks the
clock one minute at a time in the schedule's timezone applying cron(8)'s rules (and the
DST rules of docs/beat.md), and checks ``next_after`` finds the same first run. The text
test reads back what ``describe()`` claims about days and months and checks it against
the days a schedule really runs on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from djq.beat import ScheduleError
from djq.beat.cron import Crontab
from djq.beat.cron_text import DAY_NAMES, MONTH_NAMES

ZONES = ("UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")
#: How far the brute force walks (minutes). Long enough for day fields to matter, short
#: enough that a few hundred examples take seconds.
HORIZON = timedelta(days=3)
_MINUTE = timedelta(minutes=1)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]

    @property
    def star(self) -> bool:
        return self.text.startswith("*")


# (low, high as cron stores it, where '*' and 'N/step' end, names)
SPECS = {
    "minute": (0, 59, 59, ()), "hour": (0, 23, 23, ()), "dom": (1, 31, 31, ()),
    "month": (1, 12, 12, tuple(name[:3] for name in MONTH_NAMES)),
    "dow": (0, 7, 6, tuple(name[:3] for name in DAY_NAMES)),
}


@st.composite
def items(draw: st.DrawFn, kind: str) -> tuple[str, set[int]]:
    low, high, end, names = SPECS[kind]

    def word(value: int) -> str:
        return names[value - low] if names and draw(st.booleans()) and value - low < len(names) else str(value)

    shape = draw(st.sampled_from(["star", "star", "value", "range", "from"]))
    step = draw(st.sampled_from([1, 1, 2, 3, 5, 7, 10, 15]))
    suffix = f"/{step}" if step > 1 or draw(st.booleans()) else ""
    if shape == "star":
        # cron's '*' runs to ``high`` (7 for weekdays; 7 is Sunday again)
        return f"*{suffix}", set(range(low, high + 1, step))
    first = draw(st.integers(low, end))
    if shape == "value":
        return word(first), {first}
    if shape == "from":
        return f"{first}/{step}", set(range(first, end + 1, step))
    last = draw(st.integers(first, high))
    if names and last == 7:  # the name 'sun' is 0, so a range up to 7 is written with the number
        return f"{word(first)}-7{suffix}", set(range(first, last + 1, step))
    return f"{word(first)}-{word(last)}{suffix}", set(range(first, last + 1, step))


@st.composite
def fields(draw: st.DrawFn, kind: str) -> Field:
    parts = draw(st.lists(items(kind), min_size=1, max_size=3))
    values = set().union(*(values for _, values in parts))
    if kind == "dow" and 7 in values:
        values = (values - {7}) | {0}
    return Field(",".join(text for text, _ in parts), frozenset(values))


@cache
def transitions(zone: str) -> tuple[datetime, ...]:
    """Clock changes of ``zone`` in 2024-2030, to the minute."""
    tz, found = ZoneInfo(zone), []
    day = datetime(2024, 1, 1, tzinfo=UTC)
    while day.year < 2031:
        following = day + timedelta(days=1)
        if day.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
            low, high = day, following
            while high - low > _MINUTE:
                middle = low + (high - low) / 2
                middle = middle.replace(second=0, microsecond=0)
                if middle.astimezone(tz).utcoffset() == day.astimezone(tz).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        day = following
    return tuple(found)


@st.composite
def instants(draw: st.DrawFn, zone: str) -> datetime:
    seconds = draw(st.sampled_from([0, 0, 30]))
    if zone != "UTC" and zone != "Asia/Kolkata" and draw(st.integers(0, 9)) < 6:  # 60 % near a clock change
        change = draw(st.sampled_from(transitions(zone)))
        offset = draw(st.integers(-2 * 24 * 60, 2 * 24 * 60))
        return change + timedelta(minutes=offset, seconds=seconds)
    minutes = draw(st.integers(0, 7 * 365 * 24 * 60))
    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes, seconds=seconds)


def brute_force(parts: dict[str, Field], zone: str, after: datetime) -> datetime | None:
    """The first run after ``after`` within HORIZON, found minute by minute with cron's rules."""
    tz = ZoneInfo(zone)
    dom, dow = parts["dom"], parts["dow"]
    follows_clock = parts["minute"].star or parts["hour"].star

    def matches(wall: datetime) -> bool:
        if wall.minute not in parts["minute"].values or wall.hour not in parts["hour"].values:
            return False
        if wall.month not in parts["month"].values:
            return False
        in_dom, in_dow = wall.day in dom.values, wall.isoweekday() % 7 in dow.values
        return (in_dom and in_dow) if (dom.star or dow.star) else (in_dom or in_dow)

    moment = after.astimezone(UTC).replace(second=0, microsecond=0) + _MINUTE
    end = after + HORIZON
    while moment <= end:
        local = moment.astimezone(tz)
        wall = local.replace(tzinfo=None)
        if follows_clock:  # every pass of every existing wall time
            if matches(wall):
                return moment
        else:
            if local.fold == 0 and matches(wall):  # first occurrence only
                return moment
            before = (moment - _MINUTE).astimezone(tz)
            jumped = local.utcoffset() - before.utcoffset()  # type: ignore[operator]
            if jumped > timedelta(0):  # clocks jumped forward: skipped times run now
                skipped = before.replace(tzinfo=None) + _MINUTE
                while skipped < wall:
                    if matches(skipped):
                        return moment
                    skipped += _MINUTE
        moment += _MINUTE
    return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_next_after_agrees_with_a_minute_by_minute_cron(data: st.DataObject) -> None:
    zone = data.draw(st.sampled_from(ZONES))
    parts = {kind: data.draw(fields(kind), label=kind) for kind in SPECS}
    after = data.draw(instants(zone), label="after")
    expression = " ".join(parts[kind].text for kind in SPECS)
    dom, months = parts["dom"], parts["month"].values
    some_date = any(day <= _DAYS_IN_MONTH[month - 1] for month in months for day in dom.values)
    if (dom.star or parts["dow"].star) and not some_date:
        with pytest.raises(ScheduleError, match="would never run"):
            Crontab.parse(expression, zone)
        return
    schedule = Crontab.parse(expression, zone)
    expected = brute_force(parts, zone, after)
    found = schedule.next_after(after)
    if expected is not None:
        assert found == expected, expression
    else:
        assert found is None or found > after + HORIZON, expression


# -- the words against the runs -------------------------------------------------------------
WEEK = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _listed(text: str, names: tuple[str, ...] | None, first: int) -> set[int]:
    """'Monday through Friday and Sunday' or '1-7, 15 and 31' -> the values it names."""
    values: set[int] = set()
    for word in re.split(r", | and | or ", text):
        low, _, high = word.partition(" through " if names else "-")
        value = (lambda w: names.index(w) + first) if names else int  # noqa: E731
        values |= set(range(value(low), value(high or low) + 1))
    return values


def claimed(text: str) -> tuple[set[int], set[int], set[int], str]:
    """What a description says: (days of the month, ISO weekdays, months, 'and' | 'or')."""
    words = re.fullmatch(r"At 12:00, (.+?)(?:, in (.+))? \(UTC\)", text)
    assert words is not None, text
    days, months = words.group(1), words.group(2)
    in_months = _listed(months, MONTH_NAMES, 1) if months else set(range(1, 13))
    every_date, every_weekday = set(range(1, 32)), set(range(1, 8))
    if days == "every day":
        return every_date, every_weekday, in_months, "and"
    if found := re.fullmatch(r"on days? (.+) of the month and every (.+)", days):
        return _listed(found[1], None, 1), _listed(found[2], WEEK, 1), in_months, "or"
    if found := re.fullmatch(r"on days? (.+) of the month, if it falls on (.+)", days):
        return _listed(found[1], None, 1), _listed(found[2], WEEK, 1), in_months, "and"
    if found := re.fullmatch(r"on days? (.+) of the month", days):
        return _listed(found[1], None, 1), every_weekday, in_months, "and"
    found = re.fullmatch(r"on (.+)", days)
    assert found is not None, text
    return every_date, _listed(found[1], WEEK, 1), in_months, "and"


CORPUS = [f"0 12 {dom} {month} {dow}"
          for dom in ("*", "*/2", "*/10", "13", "1-7", "1,15,31", "29", "*/28", "2-30/7")
          for dow in ("*", "mon", "*/2", "*/7", "sat,sun", "mon-fri", "fri-7", "2,4,7", "1-7/2", "sun-sat")
          for month in ("*", "feb,jul-sep")]


def test_the_words_say_on_which_days_a_schedule_runs() -> None:
    start, end = date(2027, 1, 1), date(2029, 1, 1)  # 2028 has a 29 February
    for expression in CORPUS:
        try:
            schedule = Crontab.parse(expression, "UTC")
        except ScheduleError:
            continue
        dom, weekdays, months, rule = claimed(schedule.describe())
        runs, moment = set(), datetime(2026, 12, 31, 12, tzinfo=UTC)
        while (moment := schedule.next_after(moment)) is not None and moment.date() < end:  # type: ignore[assignment]
            runs.add(moment.date())
        said = set()
        for offset in range((end - start).days):
            day = start + timedelta(days=offset)
            in_dom, in_dow = day.day in dom, day.isoweekday() in weekdays
            if day.month in months and ((in_dom and in_dow) if rule == "and" else (in_dom or in_dow)):
                said.add(day)
        assert runs == said, f"{expression}: {schedule.describe()}"
