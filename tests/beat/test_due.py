"""The stored next run (``due_at``): kept right on save, on claim and after edits, and what a tick reads."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

from djq.beat import scheduler as scheduler_module
from djq.beat import timing
from djq.beat.scheduler import Scheduler
from djq.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from tests.beat.conftest import make_task, runs

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def due(name: str = "job") -> datetime | None:
    return timing.from_db(PeriodicTask.objects.get(name=name).due_at)


def test_saving_a_task_stores_its_next_run() -> None:
    hourly = IntervalSchedule.objects.create(every=1, period="hours")
    task = PeriodicTask.objects.create(name="job", task="tests.testapp.tasks.noop", interval=hourly)
    assert due() == timing.from_db(task.last_run_at) + timedelta(hours=1)
    nightly = CrontabSchedule.objects.create(minute="30", hour="2", timezone="UTC")
    task.interval, task.crontab = None, nightly
    task.save(update_fields=["interval", "crontab"])
    assert due() == nightly.as_schedule().next_after(timing.now())
    task.enabled = False
    task.save()
    assert due() is None, "a disabled task has no next run"


def test_a_claim_moves_the_next_run_on() -> None:
    minutely = IntervalSchedule.objects.create(every=1, period="minutes")
    make_task(at=T0, schedule=minutely)
    beat = Scheduler()
    beat.tick(T0 + timedelta(minutes=1))
    assert [timing.from_db(run.scheduled_at) for run in runs()] == [T0 + timedelta(minutes=1)]
    assert due() == T0 + timedelta(minutes=2)
    assert beat.tick(T0 + timedelta(minutes=1, seconds=5)) == T0 + timedelta(minutes=2), "when the next tick is due"


def test_a_tick_evaluates_only_the_tasks_due_now_and_those_edited(monkeypatch: pytest.MonkeyPatch) -> None:
    hourly = IntervalSchedule.objects.create(every=1, period="hours")
    minutely = IntervalSchedule.objects.create(every=1, period="minutes")
    for number in range(60):
        make_task(name=f"hourly {number:02d}", at=T0, schedule=hourly)
    make_task(name="minutely", at=T0, schedule=minutely)
    beat = Scheduler()
    beat.tick(T0 + timedelta(seconds=1))  # the first tick reads everything once
    looked_at: list[str] = []
    real = Scheduler._handle

    def counting(self: Scheduler, row: PeriodicTask, now: Any) -> Any:
        looked_at.append(row.name)
        return real(self, row, now)

    monkeypatch.setattr(Scheduler, "_handle", counting)
    beat.tick(T0 + timedelta(minutes=1))
    assert looked_at == ["minutely"]
    edited = PeriodicTask.objects.get(name="hourly 07")
    edited.description = "edited in the admin"
    edited.save()
    looked_at.clear()
    beat.tick(T0 + timedelta(minutes=1, seconds=30))
    assert looked_at == ["hourly 07"]
    assert len(runs()) == 1


def test_an_update_that_leaves_date_changed_alone_is_seen_by_the_next_full_read(monkeypatch: pytest.MonkeyPatch) -> None:
    hourly = IntervalSchedule.objects.create(every=1, period="hours")
    minutely = IntervalSchedule.objects.create(every=1, period="minutes")
    IntervalSchedule.objects.update(date_changed=T0)
    make_task(at=T0, schedule=hourly)
    beat = Scheduler()
    beat.tick(T0 + timedelta(seconds=1))
    assert due() == T0 + timedelta(hours=1)
    PeriodicTask.objects.update(interval=minutely)
    monkeypatch.setattr(scheduler_module, "FULL_READ_EVERY", 0.0)
    beat.tick(T0 + timedelta(seconds=2))
    assert due() == T0 + timedelta(minutes=1)


def test_tasks_made_by_bulk_create_get_their_next_run_at_the_first_tick() -> None:
    hourly = IntervalSchedule.objects.create(every=1, period="hours")
    PeriodicTask.objects.bulk_create(PeriodicTask(name=f"job {n:03d}", task="tests.testapp.tasks.noop", interval=hourly)
                                     for n in range(250))  # bulk_create does not call save()
    PeriodicTask.objects.update(last_run_at=T0, date_changed=T0)
    IntervalSchedule.objects.update(date_changed=T0)
    assert set(PeriodicTask.objects.values_list("due_at", flat=True)) == {None}
    with CaptureQueriesContext(connection) as seen:
        Scheduler().tick(T0 + timedelta(seconds=1))
    writes = [query for query in seen.captured_queries if query["sql"].startswith('UPDATE "djq_periodictask"')]
    assert len(writes) == 3, "written a batch of 100 at a time, not a statement per task"
    assert set(PeriodicTask.objects.values_list("due_at", flat=True)) == {timing.to_db(T0 + timedelta(hours=1))}


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_next_run_of_existing_tasks() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("djq", "0005_faults")])
    old = executor.loader.project_state([("djq", "0005_faults")]).apps
    schedule = old.get_model("djq", "IntervalSchedule").objects.create(every=5, period="minutes")
    last = timing.now() - timedelta(minutes=1)
    old.get_model("djq", "PeriodicTask").objects.create(
        name="job", task="tests.testapp.tasks.noop", interval=schedule, last_run_at=last, enabled=True)
    old.get_model("djq", "PeriodicTask").objects.create(
        name="off", task="tests.testapp.tasks.noop", interval=schedule, last_run_at=last, enabled=False)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes("djq"))
    assert due("job") == last + timedelta(minutes=5)
    assert due("off") is None
