"""A burst of due runs: claimed with one statement and logged with one insert per batch, still once each."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from djq.beat import timing
from djq.beat.claims import batch_size
from djq.beat.scheduler import Scheduler
from djq.models import IntervalSchedule, PeriodicRun, PeriodicTask
from tests.beat.conftest import message_ids, runs
from tests.conftest import EMBEDDED

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DUE = T0 + timedelta(minutes=1)


def many_tasks(using: str, count: int) -> None:
    """``count`` tasks every minute, made at T0 (so all are due at DUE)."""
    minutely, _ = IntervalSchedule.objects.using(using).get_or_create(every=1, period="minutes")
    PeriodicTask.objects.using(using).bulk_create(
        PeriodicTask(name=f"job {number:04d}", task="tests.testapp.tasks.noop", interval=minutely)
        for number in range(count))
    PeriodicTask.objects.using(using).update(last_run_at=T0, date_changed=T0)
    IntervalSchedule.objects.using(using).update(date_changed=T0)


@pytest.mark.parametrize("db_alias", EMBEDDED, indirect=True)
def test_a_burst_of_due_runs_is_claimed_and_logged_in_batches(broker: str) -> None:
    count = 2 * batch_size(broker) + 50
    many_tasks(broker, count)
    PeriodicTask.objects.using(broker).filter(name="job 0003").update(one_off=True)  # its next run: none
    with CaptureQueriesContext(connections[broker]) as seen:
        Scheduler(using=broker).tick(DUE)
    statements = [query["sql"] for query in seen.captured_queries]
    claims = [sql for sql in statements if 'UPDATE "djq_periodictask"' in sql and "RETURNING" in sql]
    logged = [sql for sql in statements if sql.startswith('INSERT INTO "djq_periodicrun"')]
    assert (len(claims), len(logged)) == (3, 3), "one claim and one run-log insert per batch"
    if connections[broker].vendor == "sqlite":  # PostgreSQL's bulk insert goes round Django's cursor (binary arrays)
        messages = [sql for sql in statements if "INSERT INTO" in sql and "djq_queuemessage" in sql]
        assert len(messages) == 3, "one message insert per batch"
    sent = runs(broker)
    assert len(sent) == count and {run.periodic_task.name for run in sent} == {f"job {n:04d}" for n in range(count)}
    assert {timing.from_db(run.scheduled_at) for run in sent} == {DUE}
    assert sorted(message_ids(broker)) == sorted(run.task_id for run in sent)
    assert set(PeriodicTask.objects.using(broker).values_list("total_run_count", "due_at", "enabled")) == {
        (1, timing.to_db(DUE + timedelta(minutes=1)), True), (1, None, False)}


@pytest.mark.parametrize("db_alias", EMBEDDED, indirect=True)
def test_one_run_that_cannot_be_sent_does_not_hold_up_its_batch(broker: str, caplog: pytest.LogCaptureFixture) -> None:
    many_tasks(broker, 30)
    stuck = PeriodicTask.objects.using(broker).get(name="job 0007")
    # its run for DUE is already in the log, as if last_run_at had been moved back by hand
    PeriodicRun.objects.using(broker).create(periodic_task=stuck, scheduled_at=DUE, sent_at=DUE, task_id="earlier")
    Scheduler(using=broker).tick(DUE)
    sent = [run for run in runs(broker) if run.task_id != "earlier"]
    assert len(sent) == 29 and stuck.pk not in {run.periodic_task_id for run in sent}
    assert len(message_ids(broker)) == 29
    assert "periodic task 'job 0007': the run for 2026-06-01T12:01:00+00:00 was already sent" in caplog.text


@pytest.mark.django_db(databases=["default", "postgres"], transaction=True)
def test_beats_claiming_one_burst_together_send_each_run_once() -> None:
    if "postgres" not in connections.settings:
        pytest.skip("PostgreSQL leg needs DJQ_TEST_POSTGRES_URL")
    from django.test import override_settings

    count = 3 * batch_size("postgres")
    with override_settings(DJQ_BROKER_URL="djq://postgres", DJQ_RESULT_BACKEND="database://postgres"):
        many_tasks("postgres", count)
        errors: list[BaseException] = []
        start = threading.Barrier(3)

        def beat(name: str) -> None:
            try:
                start.wait(10)
                Scheduler(using="postgres", beat_name=name).tick(DUE)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=beat, args=(name,)) for name in "ABC"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        sent = runs("postgres")
        assert len(sent) == count and len({run.periodic_task_id for run in sent}) == count
        assert len(message_ids("postgres")) == count
        assert set(PeriodicTask.objects.using("postgres").values_list("total_run_count", flat=True)) == {1}
