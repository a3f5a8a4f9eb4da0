"""Schedules declared in code (DJQ_BEAT_SCHEDULE and @periodic) and their sync into the database."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from djq.beat import crontab, every, periodic
from djq.beat.sync import sync
from djq.exceptions import ConfigurationError
from djq.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db
REPORT = {"task": "tests.testapp.tasks.add", "schedule": "30 2 * * *", "args": [1, 2]}


def test_setting_entries_become_periodic_tasks(settings) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    settings.DJQ_BEAT_SCHEDULE = {
        "report": REPORT,
        "poll": {"task": "tests.echo", "schedule": timedelta(minutes=5), "queue": "io", "priority": 7,
                 "kwargs": {"value": "x"}},
        "tick": {"task": "tests.testapp.tasks.noop", "schedule": every(seconds=30)},
    }
    outcome = sync()
    assert outcome["report"] == outcome["poll"] == outcome["tick"] == "created"
    assert outcome["testapp weekly cleanup"] == "created"  # the @periodic in tests/testapp/tasks.py
    report = PeriodicTask.objects.get(name="report")
    assert report.crontab is not None and str(report.crontab) == "30 2 * * * (Europe/Paris)"
    assert report.args == [1, 2] and report.declared_in_code and report.enabled
    poll = PeriodicTask.objects.get(name="poll")
    assert (poll.interval.every, poll.interval.period, poll.queue, poll.priority) == (5, "minutes", "io", 7)  # type: ignore[union-attr]
    weekly = PeriodicTask.objects.get(name="testapp weekly cleanup")
    assert weekly.describe_schedule() == "At 04:00, on Monday (Europe/Paris)"
    assert weekly.kwargs == {"older_than_days": 30}
    assert sync()["report"] == "unchanged"


def test_admin_edits_to_fields_code_does_not_set_survive_a_restart(settings) -> None:
    settings.DJQ_BEAT_SCHEDULE = {"report": REPORT}
    sync()
    PeriodicTask.objects.filter(name="report").update(description="edited in the admin", enabled=False,
                                                      queue="reports", args=[9, 9])
    settings.DJQ_BEAT_SCHEDULE = {"report": {**REPORT, "schedule": "45 3 * * *"}}
    assert sync()["report"] == "updated"
    report = PeriodicTask.objects.get(name="report")
    assert (report.description, report.enabled, report.queue) == ("edited in the admin", False, "reports")
    assert report.args == [1, 2], "the code sets args, so the code wins"
    assert str(report.crontab).startswith("45 3 * * *")
    assert CrontabSchedule.objects.filter(minute="30", hour="2").exists(), "the old schedule row is kept"


def test_bookkeeping_is_left_alone_and_an_unchanged_sync_writes_nothing(settings) -> None:
    settings.DJQ_BEAT_SCHEDULE = {"report": REPORT}
    sync()
    ran = datetime(2026, 1, 1, 2, 30, tzinfo=UTC)
    PeriodicTask.objects.filter(name="report").update(last_run_at=ran, total_run_count=4)
    before = PeriodicTask.objects.get(name="report").date_changed
    sync()
    after = PeriodicTask.objects.get(name="report")
    assert (after.last_run_at, after.total_run_count, after.date_changed) == (ran, 4, before)


def test_entries_removed_from_code_are_disabled_not_deleted(settings) -> None:
    settings.DJQ_BEAT_SCHEDULE = {"report": REPORT, "old": {**REPORT, "schedule": 60}}
    sync()
    settings.DJQ_BEAT_SCHEDULE = {"report": REPORT}
    assert sync()["old"] == "disabled"
    assert PeriodicTask.objects.get(name="old").enabled is False
    assert IntervalSchedule.objects.filter(every=1, period="minutes").exists()


@pytest.mark.parametrize(("entry", "message"), [
    ({"task": "no.such.task", "schedule": 10}, "DJQ_BEAT_SCHEDULE['x']: task 'no.such.task' is not registered"),
    ({"task": "tests.testapp.tasks.add"}, "DJQ_BEAT_SCHEDULE['x'] has no 'schedule'"),
    ({**REPORT, "schedule": "61 * * * *"}, "DJQ_BEAT_SCHEDULE['x']: minute: 61 is out of range 0-59"),
    ({**REPORT, "schedule": [1]}, "DJQ_BEAT_SCHEDULE['x']: schedule must be crontab(...)"),
    ({**REPORT, "args": "1, 2"}, "DJQ_BEAT_SCHEDULE['x']: args must be a list or tuple, got str"),
    ({**REPORT, "kwargs": {"when": object()}}, "DJQ_BEAT_SCHEDULE['x']: kwargs must be JSON-serializable"),
    ({**REPORT, "priority": 300}, "priority must be an integer from 0 to 255"),
    ({**REPORT, "start_time": datetime(2030, 1, 1)}, "start_time must be a timezone-aware datetime"),
    ({**REPORT, "every": 5}, "unknown option(s) every; valid: task, schedule, args,"),
    ({**REPORT, "expires": datetime(2030, 1, 1, tzinfo=UTC), "expire_seconds": 5}, "give expires or expire_seconds, not both"),
])
def test_setting_mistakes_are_configuration_errors(settings, entry: dict, message: str) -> None:
    settings.DJQ_BEAT_SCHEDULE = {"x": entry}
    with pytest.raises(ConfigurationError) as info:
        sync()
    assert message in str(info.value)
    assert not PeriodicTask.objects.filter(name="x").exists()


def test_setting_must_be_a_dict(settings) -> None:
    settings.DJQ_BEAT_SCHEDULE = [REPORT]
    with pytest.raises(ConfigurationError, match="DJQ_BEAT_SCHEDULE must be a dict"):
        sync()


def test_periodic_decorator_checks_its_arguments() -> None:
    with pytest.raises(ConfigurationError, match=r"@periodic: unknown option\(s\) quue"):
        periodic(every(minutes=1), quue="x")
    with pytest.raises(ConfigurationError, match="@periodic must be placed above @task"):
        periodic(every(minutes=1))(lambda: None)
    with pytest.raises(ConfigurationError, match="minute: 99 is out of range"):
        periodic("99 * * * *")(add)


def test_the_same_name_in_setting_and_decorator_is_an_error(settings) -> None:
    settings.DJQ_BEAT_SCHEDULE = {"testapp weekly cleanup": REPORT}
    with pytest.raises(ConfigurationError, match="declared twice: DJQ_BEAT_SCHEDULE"):
        sync()


def test_crontab_helper_can_be_written_in_a_settings_file(settings) -> None:
    schedule = crontab("0 6 * * *")  # TIME_ZONE is looked up at sync, not here
    settings.TIME_ZONE = "America/New_York"
    settings.DJQ_BEAT_SCHEDULE = {"morning": {"task": "tests.testapp.tasks.noop", "schedule": schedule}}
    sync()
    assert PeriodicTask.objects.get(name="morning").crontab.timezone == "America/New_York"  # type: ignore[union-attr]
