"""Interval, clocked and solar schedules, and the policy for missed runs, edits and start times."""
from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from djq.beat import ScheduleError, clocked, crontab, every, solar
from djq.beat.schedules import Interval
from djq.beat.timing import next_run, run_to_send

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_interval_counts_elapsed_time() -> None:
    schedule = every(minutes=5)
    assert schedule == Interval(5, "minutes")
    assert schedule.next_after(T0) == T0 + timedelta(minutes=5)
    assert every(seconds=90) == Interval(90, "seconds")
    assert every(hours=48) == Interval(2, "days")
    assert schedule.describe() == "every 5 minutes"
    assert every(seconds=1).describe() == "every second"


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(milliseconds=1500)])
def test_interval_must_be_whole_seconds(bad: timedelta) -> None:
    with pytest.raises(ScheduleError, match="whole number of seconds"):
        Interval.from_timedelta(bad)


def test_interval_period_is_checked() -> None:
    with pytest.raises(ScheduleError, match="period 'weeks' is unknown"):
        Interval(1, "weeks")


def test_clocked_fires_once_at_its_time() -> None:
    schedule = clocked(T0)
    assert schedule.next_after(T0 - timedelta(seconds=1)) == T0
    assert schedule.next_after(T0) is None
    with pytest.raises(ScheduleError, match="timezone-aware"):
        clocked(datetime(2026, 1, 1))


def test_solar_sunrise_and_sunset_in_paris() -> None:
    sunrise = solar("sunrise", 48.8566, 2.3522)
    at = sunrise.next_after(datetime(2026, 6, 21, 0, 0, tzinfo=UTC))
    assert at is not None and at.date().isoformat() == "2026-06-21"
    assert (at.hour, at.minute) in {(3, 46), (3, 47)}  # 05:47 local summer time
    sunset = solar("sunset", 48.8566, 2.3522).next_after(at)
    assert sunset is not None and 19 <= sunset.hour <= 20 and sunset.date() == at.date()
    assert sunrise.next_after(at) == sunrise.next_after(at + timedelta(minutes=1))
    assert sunrise.describe() == "at sunrise, seen from 48.8566, 2.3522"


def test_solar_skips_days_without_the_event() -> None:
    # Tromsø has no sunset from late May to late July.
    after = solar("sunset", 69.65, 18.96).next_after(datetime(2026, 6, 1, tzinfo=UTC))
    assert after is not None and after > datetime(2026, 7, 15, tzinfo=UTC)


def test_solar_without_astral_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "astral", None)
    monkeypatch.setitem(sys.modules, "astral.sun", None)
    schedule = solar("sunrise", 48.85, 2.35)  # making the value needs no library
    with pytest.raises(ScheduleError, match=r"need the 'astral' library: pip install 'djq\[solar\]'"):
        schedule.next_after(T0)


def test_solar_values_are_checked() -> None:
    with pytest.raises(ScheduleError, match="solar event 'moonrise' is unknown"):
        solar("moonrise", 0, 0)
    with pytest.raises(ScheduleError, match="latitude must be a number from -90 to 90"):
        solar("sunset", 91, 0)


def _policy(schedule, *, last=T0, changed=T0, start=None, count=1, now):  # type: ignore[no-untyped-def]
    return run_to_send(schedule, last_run_at=last, changed_at=changed, start_time=start, run_count=count, now=now)


def test_a_new_task_waits_for_its_first_time() -> None:
    assert _policy(every(minutes=10), count=0, now=T0 + timedelta(minutes=9)) is None
    assert _policy(every(minutes=10), count=0, now=T0 + timedelta(minutes=10)) == T0 + timedelta(minutes=10)


def test_no_last_run_means_run_at_once() -> None:
    now = T0 + timedelta(seconds=3)
    assert _policy(every(hours=1), last=None, count=0, now=now) == now


def test_missed_runs_are_sent_once_the_latest_one() -> None:
    interval = every(minutes=10)
    now = T0 + timedelta(hours=5, minutes=3)  # fifty runs missed
    assert _policy(interval, now=now) == T0 + timedelta(hours=5)
    daily = crontab("30 2 * * *", timezone="Europe/Paris")
    last = datetime(2026, 6, 1, 0, 30, tzinfo=UTC)
    assert _policy(daily, last=last, changed=last, now=datetime(2026, 6, 9, 8, tzinfo=UTC)) == \
        datetime(2026, 6, 9, 0, 30, tzinfo=UTC)


def test_runs_missed_before_an_edit_are_not_made_up() -> None:
    # Re-enabled (or rescheduled) at 15:00 after a week off: next run is the next 02:30, not now.
    daily = crontab("30 2 * * *", timezone="UTC")
    last, edited = datetime(2026, 6, 1, 2, 30, tzinfo=UTC), datetime(2026, 6, 8, 15, tzinfo=UTC)
    assert _policy(daily, last=last, changed=edited, now=edited + timedelta(seconds=5)) is None
    assert next_run(daily, last_run_at=last, changed_at=edited, start_time=None, run_count=1, now=edited) == \
        datetime(2026, 6, 9, 2, 30, tzinfo=UTC)


def test_start_time_delays_the_first_run() -> None:
    start = T0 + timedelta(hours=2)
    assert _policy(every(minutes=10), start=start, now=start - timedelta(seconds=1)) is None
    assert _policy(every(minutes=10), start=start, now=start) == start
    hourly = crontab("0 * * * *", timezone="UTC")
    assert next_run(hourly, last_run_at=T0, changed_at=T0, start_time=T0 + timedelta(minutes=90), run_count=0,
                    now=T0) == T0 + timedelta(hours=2)


def test_clocked_runs_once_even_when_made_after_its_time() -> None:
    moment = clocked(T0)
    made_later = T0 + timedelta(minutes=5)
    assert _policy(moment, last=made_later, changed=made_later, count=0, now=made_later) == T0
    assert _policy(moment, last=T0, changed=made_later, count=1, now=made_later) is None, "already sent"
