"""Crontab parsing, next run times, DST days, and the schedule in words."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from djq.beat import ScheduleError, crontab
from djq.beat.cron import Crontab

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def times(schedule: Crontab, start: datetime, until: datetime) -> list[datetime]:
    found, moment = [], start
    while (moment := schedule.next_after(moment)) is not None and moment < until:  # type: ignore[assignment]
        found.append(moment)
    return found


@pytest.mark.parametrize(("expression", "field", "expected"), [
    ("* * * * *", "minutes", tuple(range(60))),
    ("*/15 * * * *", "minutes", (0, 15, 30, 45)),
    ("5/20 * * * *", "minutes", (5, 25, 45)),
    ("0-30/10 * * * *", "minutes", (0, 10, 20, 30)),
    ("1,2,40-42 * * * *", "minutes", (1, 2, 40, 41, 42)),
    ("0 9-17/4 * * *", "hours", (9, 13, 17)),
    ("0 0 * jan,jul-sep *", "months", (1, 7, 8, 9)),
    ("0 0 * February *", "months", (2,)),
])
def test_fields_parse_to_sets(expression: str, field: str, expected: tuple[int, ...]) -> None:
    assert getattr(Crontab.parse(expression, "UTC"), field) == expected


@pytest.mark.parametrize(("day_of_week", "expected"), [
    ("mon-fri", {1, 2, 3, 4, 5}), ("sun", {0}), ("7", {0}), ("0,7", {0}), ("SAT,Sunday", {6, 0}),
    ("*/2", {0, 2, 4, 6}), ("tues-thurs", {2, 3, 4}),
])
def test_weekdays_by_number_and_name(day_of_week: str, expected: set[int]) -> None:
    assert set(crontab(day_of_week=day_of_week, timezone="UTC").weekdays) == expected


@pytest.mark.parametrize(("expression", "message"), [
    ("60 * * * *", "minute: 60 is out of range 0-59"),
    ("* 24 * * *", "hour: 24 is out of range 0-23"),
    ("* * 0 * *", "day_of_month: 0 is out of range 1-31"),
    ("* * * 13 *", "month_of_year: 13 is out of range 1-12"),
    ("* * * * fun", "day_of_week: 'fun' is neither a number (0-7) nor a name (sun-sat)"),
    ("*/0 * * * *", "minute: step '0' in '*/0' must be a whole number >= 1"),
    ("30-10 * * * *", "minute: range '30-10' goes backwards (ranges do not wrap around); write 30-59,0-10"),
    ("1,,2 * * * *", "minute: empty item in a list"),
    ("61 * * * *", "minute: 61 is out of range 0-59"),
    ("-5 * * * *", "minute: '-5' is not a value or a range: a range is first-last, such as 0-1 (there are no "
                   "negative numbers)"),
    ("1-/2 * * * *", "minute: range '1-/2' has no end: a range is first-last, such as 0-1"),
    ("1-2-3 * * * *", "minute: '1-2-3' has more than one '-'"),
    ("٣ * * * *", "minute: '٣' is not a number (0-59) (only the digits 0-9 count)"),
    ("１ * * * *", "minute: '１' is not a number (0-59) (only the digits 0-9 count)"),
    ("² * * * *", "minute: '²' is not a number (0-59) (only the digits 0-9 count)"),
    ("0 */² * * *", "hour: step '²' in '*/²' must be a whole number >= 1"),
    ("0 22-2 * * *", "hour: range '22-2' goes backwards (ranges do not wrap around); write 22-23,0-2"),
    ("0 0 * dec-feb *", "month_of_year: range 'dec-feb' goes backwards (ranges do not wrap around); write dec,jan-feb"),
    # cronie refuses a range whose end is below its start, and sun is 0, never 7, in a range.
    ("0 0 * * sat-sun", "day_of_week: range 'sat-sun' goes backwards (ranges do not wrap around); write sat,sun"),
    ("0 0 * * fri-mon", "day_of_week: range 'fri-mon' goes backwards (ranges do not wrap around); "
                        "write fri-sat,sun-mon"),
    ("0 0 * * 5-1", "day_of_week: range '5-1' goes backwards (ranges do not wrap around); write 5-6,0-1"),
    ("0 0 * * 7/2", "day_of_week: '7/2' matches no day: a step runs from its start to 6 (sat); write 0/2 to start "
                    "on Sunday"),
    ("0 0 * * 7/1", "day_of_week: '7/1' matches no day"),
    ("* * * *", "needs 5 fields"),
    ("0 0 30 feb *", "would never run"),
    ("0 0 31 apr,jun *", "would never run"),
])
def test_invalid_crontabs_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        Crontab.parse(expression, "UTC")
    assert message in str(info.value)


@pytest.mark.parametrize("expression", ["61 * * * *", "* 24 * * *", "* * 1-/2 * *", "* * * ² *", "* * * * 7/2",
                                        "-5 * * * *", "* * * * sat-sun"])
def test_each_error_names_its_field_once(expression: str) -> None:
    with pytest.raises(ScheduleError) as info:
        Crontab.parse(expression, "UTC")
    field = str(info.value).partition(":")[0]
    assert field in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
    assert str(info.value).count(field) == 1


def test_unknown_timezone_is_an_error() -> None:
    with pytest.raises(ScheduleError, match="unknown timezone 'Mars/Olympus'"):
        crontab("0 0 * * *", timezone="Mars/Olympus")


def test_aliases() -> None:
    assert Crontab.parse("@daily", "UTC").expression == "0 0 * * *"
    assert Crontab.parse("@hourly", "UTC").expression == "0 * * * *"


def test_next_after_is_strictly_after_and_uses_the_schedule_timezone() -> None:
    schedule = crontab("30 2 * * *", timezone="Europe/Paris")
    at_run = datetime(2026, 6, 10, 2, 30, tzinfo=PARIS)
    assert schedule.next_after(at_run - timedelta(seconds=1)) == at_run
    assert schedule.next_after(at_run) == datetime(2026, 6, 11, 2, 30, tzinfo=PARIS)
    assert schedule.next_after(at_run).tzinfo == UTC  # type: ignore[union-attr]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Worked out by hand from cron(8)'s rules (Vixie cron, cronie): a day field starting with
# '*' sets DOM_STAR/DOW_STAR, and then a day must match both fields; otherwise either.
# 2026-12-01 is a Tuesday.
@pytest.mark.parametrize(("expression", "after", "expected"), [
    # */2 in day-of-month is 1, 3, 5, ..., 31: odd days, not every day
    ("0 0 */2 * *", "2026-12-01 00:00", ["2026-12-03", "2026-12-05", "2026-12-07"]),
    ("0 0 */2 * *", "2026-12-29 00:00", ["2026-12-31", "2027-01-01", "2027-01-03"]),
    # */10 is 1, 11, 21, 31, and both fields must match: Mondays that are one of those
    ("0 0 */10 * mon", "2026-12-01 00:00", ["2026-12-21", "2027-01-11", "2027-02-01"]),
    # */7 in day-of-week is 0 and 7: Sunday only; a 29 February that is a Sunday
    ("0 0 29 2 */7", "2026-12-01 00:00", ["2032-02-29", "2060-02-29"]),
    # Saturday or Sunday: 2032 (Sun), 2048 (Sat), 2060 (Sun)
    ("0 0 29 2 */6", "2026-12-01 00:00", ["2032-02-29", "2048-02-29", "2060-02-29"]),
    # 2100 is no leap year: the Sunday 29 February after 2088 is in 2128, 40 years later
    ("0 0 29 2 */7", "2088-03-01 00:00", ["2128-02-29"]),
    # both restricted: the 13th, and every Friday
    ("0 0 13 * fri", "2026-12-01 00:00", ["2026-12-04", "2026-12-11", "2026-12-13", "2026-12-18"]),
    ("0 0 1 * sun", "2026-12-01 00:00", ["2026-12-06", "2026-12-13", "2026-12-20", "2026-12-27", "2027-01-01"]),
    # 1-31 does not start with '*': restricted, so the OR rule holds and every day matches
    ("0 0 1-31 * mon", "2026-12-01 00:00", ["2026-12-02", "2026-12-03"]),
    # odd days that are Sundays; */1 is every day yet still takes the field out of the OR rule
    ("0 0 */2 * sun", "2026-12-01 00:00", ["2026-12-13", "2026-12-27", "2027-01-03"]),
    ("0 0 */1 * fri", "2026-12-01 00:00", ["2026-12-04", "2026-12-11"]),
    # 7 is Sunday; 1-7/2 is 1, 3, 5, 7: Monday, Wednesday, Friday, Sunday
    ("0 0 * * 7", "2026-12-01 00:00", ["2026-12-06", "2026-12-13"]),
    ("0 0 * * 1-7/2", "2026-12-01 00:00", ["2026-12-02", "2026-12-04", "2026-12-06", "2026-12-07"]),
    ("0 0 * * sat-7", "2026-12-01 00:00", ["2026-12-05", "2026-12-06", "2026-12-12"]),
    ("0 0 * * sat,sun", "2026-12-01 00:00", ["2026-12-05", "2026-12-06", "2026-12-12"]),
    # a restricted day field and a month: the OR rule still applies within the month
    ("0 0 30 2 mon", "2026-12-01 00:00", ["2027-02-01", "2027-02-08"]),
    ("@weekly", "2026-12-01 00:00", ["2026-12-06", "2026-12-13"]),
    ("@monthly", "2026-12-01 00:00", ["2027-01-01", "2027-02-01"]),
])
def test_days_as_cron_runs_them(expression: str, after: str, expected: list[str]) -> None:
    schedule, moment, found = Crontab.parse(expression, "UTC"), at(after), []
    for _ in expected:
        moment = schedule.next_after(moment)  # type: ignore[assignment]
        found.append(moment.date().isoformat() if moment else None)
    assert found == expected


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # cron(8): the 13th of the month, and also every Friday.
    schedule = crontab("0 12 13 * fri", timezone="UTC")
    days = [t.date().isoformat() for t in times(schedule, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 21, tzinfo=UTC))]
    assert days == ["2026-03-06", "2026-03-13", "2026-03-20"]


def test_leap_day_schedule_waits_for_the_next_leap_year() -> None:
    schedule = crontab("0 0 29 feb *", timezone="UTC")
    assert schedule.next_after(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2028, 2, 29, tzinfo=UTC)


def test_day_31_skips_the_months_without_one() -> None:
    schedule = crontab(minute="0", hour="0", day_of_month="31", timezone="UTC")
    assert schedule.next_after(datetime(2026, 1, 31, tzinfo=UTC)) == datetime(2026, 3, 31, tzinfo=UTC)
    assert schedule.next_after(datetime(2028, 1, 31, tzinfo=UTC)) == datetime(2028, 3, 31, tzinfo=UTC), "leap year"
    found = times(schedule, datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert [t.date().isoformat() for t in found] == [
        "2026-01-31", "2026-03-31", "2026-05-31", "2026-07-31", "2026-08-31", "2026-10-31", "2026-12-31"]


def test_29_february_runs_only_in_leap_years() -> None:
    schedule = crontab(minute="0", hour="0", day_of_month="29", month_of_year="2", timezone="UTC")
    found = times(schedule, datetime(2023, 1, 1, tzinfo=UTC), datetime(2041, 1, 1, tzinfo=UTC))
    assert [t.date().isoformat() for t in found] == [
        "2024-02-29", "2028-02-29", "2032-02-29", "2036-02-29", "2040-02-29"]
    # 2100 is divisible by 100 and not by 400: no leap day, so eight years between two runs.
    assert schedule.next_after(datetime(2096, 2, 29, tzinfo=UTC)) == datetime(2104, 2, 29, tzinfo=UTC)


def test_daily_0230_runs_once_on_the_spring_forward_day() -> None:
    # Europe/Paris, 2026-03-29: 02:00 becomes 03:00, so 02:30 does not exist that day.
    schedule = crontab("30 2 * * *", timezone="Europe/Paris")
    found = times(schedule, datetime(2026, 3, 27, 12, tzinfo=UTC), datetime(2026, 3, 31, 12, tzinfo=UTC))
    local = [t.astimezone(PARIS) for t in found]
    assert [t.date().isoformat() for t in local] == ["2026-03-28", "2026-03-29", "2026-03-30", "2026-03-31"]
    assert local[1].strftime("%H:%M %z") == "03:00 +0200", "runs when the clocks jump"
    assert [t.strftime("%H:%M") for t in (local[0], local[2], local[3])] == ["02:30"] * 3


def test_daily_0230_runs_once_on_the_fall_back_day() -> None:
    # Europe/Paris, 2026-10-25: 03:00 goes back to 02:00, so 02:30 happens twice.
    schedule = crontab("30 2 * * *", timezone="Europe/Paris")
    found = times(schedule, datetime(2026, 10, 23, 12, tzinfo=UTC), datetime(2026, 10, 27, 12, tzinfo=UTC))
    assert [t.astimezone(PARIS).isoformat() for t in found] == [
        "2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    # Asked during the second pass of the repeated hour, the day's run is already over.
    second_pass = datetime(2026, 10, 25, 2, 10, tzinfo=PARIS, fold=1)
    assert schedule.next_after(second_pass) == datetime(2026, 10, 26, 2, 30, tzinfo=PARIS)


def test_new_york_daily_job_in_the_repeated_hour_runs_once() -> None:
    schedule = crontab("30 1 * * *", timezone="America/New_York")
    found = times(schedule, datetime(2026, 10, 31, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    assert [t.astimezone(NEW_YORK).strftime("%m-%d %H:%M %z") for t in found] == [
        "10-31 01:30 -0400", "11-01 01:30 -0400", "11-02 01:30 -0500"]


def test_frequent_jobs_follow_the_clock_through_both_changes() -> None:
    every_15 = crontab("*/15 * * * *", timezone="Europe/Paris")
    fall = times(every_15, datetime(2026, 10, 24, 23, 50, tzinfo=UTC), datetime(2026, 10, 25, 2, 20, tzinfo=UTC))
    gaps = {b - a for a, b in zip(fall, fall[1:])}
    assert gaps == {timedelta(minutes=15)}, "no pause during the repeated hour"
    assert len(fall) == 10
    spring = times(every_15, datetime(2026, 3, 29, 0, 50, tzinfo=UTC), datetime(2026, 3, 29, 1, 50, tzinfo=UTC))
    assert [t.astimezone(PARIS).strftime("%H:%M") for t in spring] == ["03:00", "03:15", "03:30", "03:45"]
    hourly = crontab("30 * * * *", timezone="Europe/Paris")
    skipped = times(hourly, datetime(2026, 3, 29, 0, tzinfo=UTC), datetime(2026, 3, 29, 2, 40, tzinfo=UTC))
    assert [t.astimezone(PARIS).strftime("%H:%M") for t in skipped] == ["01:30", "03:30", "04:30"]


def test_crontab_without_timezone_uses_time_zone_setting(settings) -> None:
    settings.TIME_ZONE = "Asia/Tokyo"
    schedule = crontab("0 9 * * *")
    assert schedule.timezone is None and schedule.resolved().timezone == "Asia/Tokyo"
    assert schedule.next_after(datetime(2025, 12, 31, 12, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("expression", "text"), [
    ("30 2 * * *", "At 02:30, every day (Europe/Paris)"),
    ("0 8,12,18 * * *", "At 08:00, 12:00 and 18:00, every day (Europe/Paris)"),
    ("*/15 * * * *", "Every 15 minutes, every day (Europe/Paris)"),
    ("* * * * *", "Every minute, every day (Europe/Paris)"),
    ("0 * * * *", "At minute 0 past every hour, every day (Europe/Paris)"),
    ("*/10 9-17 * * mon-fri", "Every 10 minutes, between 09:00 and 17:59, on Monday through Friday (Europe/Paris)"),
    ("0 0 1 * *", "At 00:00, on day 1 of the month (Europe/Paris)"),
    ("0 0 1,15 jan-mar *", "At 00:00, on days 1 and 15 of the month, in January through March (Europe/Paris)"),
    ("0 7 * * sat,sun", "At 07:00, on Saturday and Sunday (Europe/Paris)"),
    ("0 0 13 * fri", "At 00:00, on day 13 of the month and every Friday (Europe/Paris)"),
    ("0 0 */10 * mon", "At 00:00, on days 1, 11, 21 and 31 of the month, if it falls on Monday (Europe/Paris)"),
    ("0 0 */10 * tue,thu,sun",
     "At 00:00, on days 1, 11, 21 and 31 of the month, if it falls on Tuesday, Thursday or Sunday (Europe/Paris)"),
    ("0 0 */2 * *", "At 00:00, on days 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29 and 31 of the month "
                    "(Europe/Paris)"),
    ("0 0 1-31 * mon", "At 00:00, every day (Europe/Paris)"),
])
def test_described_in_words(expression: str, text: str) -> None:
    assert Crontab.parse(expression, "Europe/Paris").describe() == text
