"""Validation of periodic tasks and schedules, as the admin and full_clean() see it."""
from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from djq.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def every_minute() -> IntervalSchedule:
    return IntervalSchedule.objects.create(every=1, period="minutes")


def errors_of(obj: object) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        obj.full_clean()  # type: ignore[attr-defined]
    return info.value.message_dict


def test_exactly_one_schedule(every_minute: IntervalSchedule) -> None:
    cron = CrontabSchedule.objects.create(minute="0", hour="3", timezone="UTC")
    message = ["Choose exactly one schedule: interval, crontab, solar or clocked."]
    none = PeriodicTask(name="none", task="tests.testapp.tasks.noop")
    assert errors_of(none)["__all__"] == message
    two = PeriodicTask(name="two", task="tests.testapp.tasks.noop", interval=every_minute, crontab=cron)
    assert errors_of(two)["__all__"] == message
    PeriodicTask(name="one", task="tests.testapp.tasks.noop", interval=every_minute).full_clean()


def test_database_refuses_two_schedules_too(every_minute: IntervalSchedule) -> None:
    cron = CrontabSchedule.objects.create(minute="0", hour="3", timezone="UTC")
    with pytest.raises(IntegrityError), transaction.atomic():
        PeriodicTask.objects.create(name="two", task="tests.testapp.tasks.noop", interval=every_minute, crontab=cron)


def test_unknown_task_name(every_minute: IntervalSchedule) -> None:
    task = PeriodicTask(name="x", task="tests.testapp.tasks.nope", interval=every_minute)
    assert "no task named 'tests.testapp.tasks.nope' is registered" in errors_of(task)["task"][0]


def test_args_and_kwargs_types(every_minute: IntervalSchedule) -> None:
    task = PeriodicTask(name="x", task="tests.testapp.tasks.add", interval=every_minute, args={"x": 1}, kwargs=[1])
    errors = errors_of(task)
    assert errors["args"] == ['args must be a JSON list such as [1, "two"], not dict']
    assert errors["kwargs"] == ['kwargs must be a JSON object such as {"key": 1}, not list']


def test_expires_or_expire_seconds(every_minute: IntervalSchedule) -> None:
    task = PeriodicTask(name="x", task="tests.testapp.tasks.noop", interval=every_minute,
                        expires=datetime(2030, 1, 1, tzinfo=UTC), expire_seconds=60)
    assert errors_of(task)["expire_seconds"] == ["give expires or expire_seconds, not both"]


def test_priority_range(every_minute: IntervalSchedule) -> None:
    task = PeriodicTask(name="x", task="tests.testapp.tasks.noop", interval=every_minute, priority=256)
    assert "priority" in errors_of(task)


def test_crontab_fields_are_validated_one_by_one() -> None:
    bad = CrontabSchedule(minute="61", hour="2", day_of_week="funday", timezone="Nowhere/Land")
    errors = errors_of(bad)
    # The form shows each message under its field, so the message does not name it again.
    assert errors["minute"] == ["61 is out of range 0-59"]
    assert errors["day_of_week"][0].startswith("'funday' is neither a number")
    assert errors["timezone"] == ["unknown timezone 'Nowhere/Land'; use an IANA name such as 'Europe/Paris'"]
    never = CrontabSchedule(minute="0", hour="0", day_of_month="31", month_of_year="feb", timezone="UTC")
    assert "would never run" in errors_of(never)["__all__"][0]


@pytest.mark.parametrize("minute", ["²", "٣", "１"])
def test_crontab_with_a_non_ascii_digit_is_a_validation_error(minute: str) -> None:
    errors = errors_of(CrontabSchedule(minute=minute, hour="2", timezone="UTC"))
    assert errors["minute"] == [f"{minute!r} is not a number (0-59) (only the digits 0-9 count)"]


def test_crontab_timezone_defaults_to_time_zone(settings) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    assert CrontabSchedule().timezone == "Europe/Paris"


def test_solar_schedule_without_astral_is_a_clear_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "astral", None)
    monkeypatch.setitem(sys.modules, "astral.sun", None)
    errors = errors_of(SolarSchedule(event="sunrise", latitude="48.85", longitude="2.35"))
    assert errors["__all__"] == ["solar schedules need the 'astral' library: pip install 'djq[solar]'"]


def test_solar_schedule_with_astral_is_valid() -> None:
    solar = SolarSchedule(event="dusk_civil", latitude="48.85", longitude="2.35")
    solar.full_clean()  # raises ValidationError if astral were missing or a field invalid
    noon = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
    dusk = solar.as_schedule().next_after(noon)
    # Paris' civil dusk at midsummer is late evening, UTC
    assert dusk is not None and noon < dusk < noon + timedelta(hours=12)


def test_a_new_task_records_its_creation_as_last_run(every_minute: IntervalSchedule) -> None:
    before = datetime.now(UTC)
    task = PeriodicTask.objects.create(name="fresh", task="tests.testapp.tasks.noop", interval=every_minute)
    assert task.last_run_at is not None and task.last_run_at >= before
    next_run = task.next_run_at()
    assert next_run is not None and next_run - task.last_run_at == timedelta(minutes=1)


def test_descriptions() -> None:
    cron = CrontabSchedule.objects.create(minute="30", hour="2", timezone="Europe/Paris")
    task = PeriodicTask.objects.create(name="nightly", task="tests.testapp.tasks.noop", crontab=cron)
    assert task.describe_schedule() == "At 02:30, every day (Europe/Paris)"
    assert str(IntervalSchedule(every=1, period="hours")) == "every hour"
    assert str(ClockedSchedule(clocked_time=datetime(2030, 1, 2, 3, 4, tzinfo=UTC))) == "once, at 2030-01-02 03:04:00 UTC"
