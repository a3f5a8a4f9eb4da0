"""Beat ticks at chosen moments: what gets sent, when, and what the admin's edits change."""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone

from djq.beat import timing
from djq.beat.scheduler import Scheduler, run_now
from djq.models import (ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicRun, PeriodicTask,
                        QueueMessage)
from tests.beat.conftest import make_task, message_ids, runs

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def scheduled(name: str = "job") -> list[datetime]:
    return [timing.from_db(run.scheduled_at) for run in runs(name=name)]


def every(seconds: int) -> IntervalSchedule:
    return IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")[0]


def test_an_interval_task_is_sent_once_per_scheduled_time() -> None:
    make_task(at=T0, schedule=every(10), task="tests.testapp.tasks.add", args=[2, 3])
    beat = Scheduler()
    assert beat.tick(T0 + timedelta(seconds=9)) == T0 + timedelta(seconds=10)
    assert beat.tick(T0 + timedelta(seconds=10)) == T0 + timedelta(seconds=20)
    assert beat.tick(T0 + timedelta(seconds=10.5)) == T0 + timedelta(seconds=20)
    beat.tick(T0 + timedelta(seconds=21))
    assert scheduled() == [T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)]
    assert sorted(message_ids()) == sorted(run.task_id for run in runs())
    job = PeriodicTask.objects.get(name="job")
    assert (timing.from_db(job.last_run_at), job.total_run_count) == (T0 + timedelta(seconds=20), 2)
    body = json.loads(json.loads(QueueMessage.objects.first().payload)["body"])  # type: ignore[union-attr]
    assert body[:2] == [[2, 3], {}]


def test_queue_priority_kwargs_and_expiry_go_into_the_message() -> None:
    make_task(at=T0, schedule=every(10), task="tests.echo", kwargs={"value": "hi"}, queue="beat-q", priority=9,
              expire_seconds=30)
    Scheduler().tick(T0 + timedelta(seconds=10))
    message = QueueMessage.objects.get()
    payload = json.loads(message.payload)
    assert (message.queue, message.priority) == ("beat-q", 9)
    assert json.loads(payload["body"])[1] == {"value": "hi"}
    assert payload["headers"]["expires"] is not None


def test_a_fresh_task_does_not_run_at_once_but_an_empty_last_run_does() -> None:
    now = timing.now()
    make_task(name="fresh", schedule=every(60))
    make_task(name="asked", schedule=every(60), last_run_at=None)
    Scheduler().tick(now + timedelta(seconds=1))
    assert [run.periodic_task.name for run in runs()] == ["asked"]


def test_after_downtime_a_missed_window_runs_once() -> None:
    make_task(at=T0, schedule=every(60))
    beat = Scheduler()
    beat.tick(T0 + timedelta(hours=3, seconds=30))  # 180 runs were missed
    beat.tick(T0 + timedelta(hours=3, seconds=31))
    assert scheduled() == [T0 + timedelta(hours=3)]
    beat.tick(T0 + timedelta(hours=3, seconds=60))
    assert scheduled()[-1] == T0 + timedelta(hours=3, minutes=1), "and the schedule carries on from there"


def test_one_off_task_disables_itself_after_running() -> None:
    make_task(at=T0, schedule=every(10), one_off=True)
    beat = Scheduler()
    assert beat.tick(T0 + timedelta(seconds=10)) is None
    beat.tick(T0 + timedelta(seconds=60))
    assert len(runs()) == 1
    assert PeriodicTask.objects.get(name="job").enabled is False


def test_clocked_task_fires_once_at_its_time() -> None:
    moment = ClockedSchedule.objects.create(clocked_time=T0 + timedelta(seconds=30))
    make_task(at=T0, schedule=moment)
    beat = Scheduler()
    assert beat.tick(T0 + timedelta(seconds=29)) == T0 + timedelta(seconds=30)
    beat.tick(T0 + timedelta(seconds=31))
    beat.tick(T0 + timedelta(days=1))
    assert scheduled() == [T0 + timedelta(seconds=30)]
    assert PeriodicTask.objects.get(name="job").enabled is False


def test_expired_task_is_not_sent_and_is_disabled(caplog: pytest.LogCaptureFixture) -> None:
    make_task(at=T0, schedule=every(10), expires=T0 + timedelta(seconds=15))
    beat = Scheduler()
    beat.tick(T0 + timedelta(seconds=10))
    with caplog.at_level(logging.WARNING, logger="djq.beat"):
        beat.tick(T0 + timedelta(seconds=20))
    assert scheduled() == [T0 + timedelta(seconds=10)]
    assert PeriodicTask.objects.get(name="job").enabled is False
    assert "periodic task 'job' expired" in caplog.text


def test_admin_edits_take_effect_on_the_next_tick() -> None:
    beat = Scheduler()
    job = make_task(schedule=every(10))
    start = timing.from_db(job.last_run_at)  # edits below are stamped with the real clock; so are the ticks
    beat.tick(start + timedelta(seconds=10))
    assert len(runs()) == 1
    before = PeriodicTask.objects.get(pk=job.pk).date_changed
    assert before == job.date_changed, "beat's own bookkeeping is not an edit"

    job.refresh_from_db()
    job.interval = every(3600)  # rescheduled: nothing more for an hour
    job.save()
    beat.tick(start + timedelta(seconds=30))
    assert len(runs()) == 1

    newcomer = make_task(name="newcomer", schedule=every(5))
    beat.tick(start + timedelta(seconds=36))
    assert [run.periodic_task.name for run in runs()].count("newcomer") == 1

    PeriodicTask.objects.filter(pk=newcomer.pk).update(enabled=False, date_changed=timezone.now())
    beat.tick(start + timedelta(seconds=50))
    assert [run.periodic_task.name for run in runs()].count("newcomer") == 1

    PeriodicTask.objects.filter(pk=job.pk).delete()
    assert beat.tick(start + timedelta(hours=2)) is None
    assert PeriodicRun.objects.count() == 1, "a deleted task's runs go with it"


def test_a_quiet_tick_asks_one_query_and_every_kind_of_change_ends_the_quiet() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    job = make_task(at=T0, schedule=every(3600))
    daily = CrontabSchedule.objects.create(minute="0", hour="3")
    make_task(name="nightly", at=T0, schedule=daily)
    beat = Scheduler()
    beat.tick(T0 + timedelta(seconds=1))  # the first tick reads everything

    def queries_of_a_tick(at: datetime) -> int:
        with CaptureQueriesContext(connection) as seen:
            beat.tick(at)
        return len(seen)

    assert queries_of_a_tick(T0 + timedelta(seconds=2)) == 1, "nothing due, nothing changed: the fingerprint only"
    # a run falling due ends the quiet (and is sent)
    assert queries_of_a_tick(T0 + timedelta(hours=1)) > 1
    assert scheduled() == [T0 + timedelta(hours=1)]
    beat.tick(T0 + timedelta(hours=1, seconds=0.5))  # its own claim moved last_run_at: read once more
    assert queries_of_a_tick(T0 + timedelta(hours=1, seconds=1)) == 1
    # an edit of a schedule row, as the admin makes it
    daily.hour = "2"
    daily.save()
    assert queries_of_a_tick(T0 + timedelta(hours=1, seconds=2)) > 1
    assert queries_of_a_tick(T0 + timedelta(hours=1, seconds=3)) == 1
    # "run it now" by QuerySet.update(), which leaves date_changed alone
    PeriodicTask.objects.filter(pk=job.pk).update(last_run_at=None)
    assert queries_of_a_tick(T0 + timedelta(hours=1, seconds=4)) > 1
    assert len(scheduled()) == 2
    beat.tick(T0 + timedelta(hours=1, seconds=4.5))
    # a new task, and a deleted one
    make_task(name="newcomer", at=T0 + timedelta(hours=1), schedule=every(60))
    assert queries_of_a_tick(T0 + timedelta(hours=1, seconds=5)) > 1
    PeriodicTask.objects.filter(name="newcomer").delete()
    assert queries_of_a_tick(T0 + timedelta(hours=1, seconds=6)) > 1
    assert queries_of_a_tick(T0 + timedelta(hours=1, seconds=7)) == 1


def test_a_run_asked_for_again_right_after_the_tick_that_sent_it_is_sent() -> None:
    """last_run_at emptied by QuerySet.update(), sent, and emptied again before the next tick:
    that tick's probe sees "a task never ran" as the last one did, and must still read."""
    make_task(at=T0, schedule=every(3600))
    make_task(name="sooner", at=T0, schedule=every(60))
    # the earliest stored next run, before and after the claims: the probes differ in nothing else
    PeriodicTask.objects.filter(name="sooner").update(due_at=T0 + timedelta(seconds=60))
    beat = Scheduler(revalidated_elsewhere=True)  # no check of every next run inside the ticks
    beat.tick(T0 + timedelta(seconds=1))
    for second in (2, 3):
        PeriodicTask.objects.filter(name="job").update(last_run_at=None)
        beat.tick(T0 + timedelta(seconds=second))
    assert scheduled() == [T0 + timedelta(seconds=2), T0 + timedelta(seconds=3)]


def _simulate(beat: Scheduler, start: datetime, end: datetime, max_tick: timedelta) -> None:
    """Tick the way the service loop does: at the next due time, or after max_tick."""
    now = start
    while now < end:
        upcoming = beat.tick(now)
        now = min(upcoming, now + max_tick) if upcoming is not None and upcoming > now else now + max_tick


@pytest.mark.parametrize(("start", "change_day", "change_run"), [
    (datetime(2026, 3, 27, 12, tzinfo=UTC), "2026-03-29", "03:00:00+02:00"),  # spring forward
    (datetime(2026, 10, 23, 12, tzinfo=UTC), "2026-10-25", "02:30:00+02:00"),  # fall back
])
def test_daily_0230_job_runs_exactly_once_on_dst_change_days(start: datetime, change_day: str, change_run: str) -> None:
    cron = CrontabSchedule.objects.create(minute="30", hour="2", timezone="Europe/Paris")
    make_task(at=start, schedule=cron)
    _simulate(Scheduler(), start, start + timedelta(days=4), max_tick=timedelta(minutes=7))
    local = [t.astimezone(PARIS) for t in scheduled()]
    days = [t.date().isoformat() for t in local]
    assert len(days) == 4 and len(set(days)) == 4, days
    assert local[days.index(change_day)].isoformat()[11:] == change_run


@override_settings(USE_TZ=False, TIME_ZONE="Europe/Paris")
def test_projects_without_use_tz_work() -> None:
    naive_t0 = datetime(2026, 6, 1, 14, 0)  # 12:00 UTC in Paris summer time
    make_task(name="job", at=naive_t0, schedule=every(10))
    cron = CrontabSchedule.objects.create(minute="30", hour="14", timezone="Europe/Paris")
    make_task(name="cron", at=naive_t0, schedule=cron)
    Scheduler().tick(T0 + timedelta(minutes=31))
    job = PeriodicTask.objects.get(name="job")
    assert job.last_run_at == datetime(2026, 6, 1, 14, 31), "stored as naive local time"
    assert PeriodicTask.objects.get(name="cron").last_run_at == datetime(2026, 6, 1, 14, 30)
    assert len(runs()) == 2 and len(message_ids()) == 2


def test_run_now_sends_once_and_leaves_the_schedule_alone() -> None:
    job = make_task(at=T0, schedule=every(3600), task="tests.testapp.tasks.add", args=[1, 1])
    task_id = run_now(job, sent_by="test")
    job.refresh_from_db()
    assert (timing.from_db(job.last_run_at), job.total_run_count) == (T0, 0)
    assert message_ids() == [task_id]
    assert PeriodicRun.objects.get().manual is True


def test_a_task_missing_from_code_is_reported_once_and_not_claimed(caplog: pytest.LogCaptureFixture) -> None:
    make_task(at=T0, schedule=every(10), task="tests.testapp.tasks.gone")
    beat = Scheduler()
    with caplog.at_level(logging.ERROR, logger="djq.beat"):
        beat.tick(T0 + timedelta(seconds=10))
        beat.tick(T0 + timedelta(seconds=11))
    assert caplog.text.count("'tests.testapp.tasks.gone' is not registered") == 1
    assert runs() == [] and timing.from_db(PeriodicTask.objects.get().last_run_at) == T0
