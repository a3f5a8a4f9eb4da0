"""How a run is claimed and sent, on SQLite and PostgreSQL, and on a broker outside the database."""
from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections
from django.test import override_settings
from kombu import Connection

from djq.beat import scheduler as scheduler_module
from djq.beat import timing
from djq.beat.scheduler import Scheduler
from djq.exceptions import PublishError
from djq.messaging.producer import reset_publishers
from djq.models import PeriodicTask
from tests.beat.conftest import make_task, message_ids, runs
from tests.conftest import EMBEDDED

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DUE = T0 + timedelta(seconds=1)


def send_then(monkeypatch: pytest.MonkeyPatch, after: Any, *, send: bool = True) -> None:
    """Make beat's sending (the batch's bulk send and the one-by-one send) do the real send
    (``send``) and then call ``after()``."""
    real_publish, real_many = scheduler_module.publish, scheduler_module.publish_many

    def publish(*args: Any) -> None:
        if send:
            real_publish(*args)
        after()

    def publish_many(sends: Any) -> None:
        if send:
            real_many(sends)
        after()

    monkeypatch.setattr(scheduler_module, "publish", publish)
    monkeypatch.setattr(scheduler_module, "publish_many", publish_many)


@pytest.mark.parametrize("db_alias", EMBEDDED, indirect=True)
def test_claim_and_message_commit_together(broker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_task(broker, at=T0)

    def fail() -> None:  # after the message row is written...
        raise PublishError("the beat fails before its transaction commits")

    send_then(monkeypatch, fail)
    beat = Scheduler(using=broker)
    beat.tick(DUE)
    assert runs(broker) == [] and message_ids(broker) == [], "...and rolled back with the claim"
    job = PeriodicTask.objects.using(broker).get()
    assert (timing.from_db(job.last_run_at), job.total_run_count) == (T0, 0)

    monkeypatch.undo()
    beat.tick(DUE + timedelta(milliseconds=5))
    assert [timing.from_db(run.scheduled_at) for run in runs(broker)] == [DUE], "the next tick sends it"
    assert message_ids(broker) == [runs(broker)[0].task_id]


@pytest.mark.parametrize("db_alias", EMBEDDED, indirect=True)
def test_two_beats_racing_for_one_run_send_it_once(broker: str, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Beat A claims the run and stalls before committing; beat B reads the old row meanwhile."""
    make_task(broker, at=T0)
    claimed, release = threading.Event(), threading.Event()

    def stall() -> None:
        claimed.set()
        release.wait(10)

    send_then(monkeypatch, stall)
    errors: list[BaseException] = []

    def tick(name: str) -> None:
        try:
            Scheduler(using=broker, beat_name=name).tick(DUE)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    caplog.set_level(logging.DEBUG, logger="djq.beat")
    first = threading.Thread(target=tick, args=("A",))
    first.start()
    assert claimed.wait(10)
    second = threading.Thread(target=tick, args=("B",))
    second.start()
    time.sleep(0.3)  # B has read the row and now waits for A's lock
    release.set()
    first.join(15)
    second.join(15)
    assert errors == []
    assert [(run.beat, timing.from_db(run.scheduled_at)) for run in runs(broker)] == [("A", DUE)]
    assert message_ids(broker) == [runs(broker)[0].task_id]
    assert PeriodicTask.objects.using(broker).get().total_run_count == 1
    assert "'job' for 2026-06-01T12:00:01+00:00 was claimed by another beat" in caplog.text, "B did race"


@pytest.fixture
def memory_broker() -> Any:
    with override_settings(DJQ_BROKER_URL="memory://"):
        reset_publishers()
        with Connection("memory://") as connection:
            queue = connection.SimpleQueue("default")
            yield queue
            queue.close()
    reset_publishers()


def _drain(queue: Any) -> list[str]:
    ids = []
    while True:
        try:
            message = queue.get(timeout=0.2)
        except queue.Empty:
            return ids
        ids.append(message.headers["id"])
        message.ack()


@pytest.mark.django_db(transaction=True)
def test_other_brokers_get_the_message_after_the_claim_commits(memory_broker: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    make_task(at=T0)
    beat = Scheduler()
    assert not beat.one_transaction

    def broker_down() -> None:
        raise PublishError("broker unreachable")

    send_then(monkeypatch, broker_down, send=False)
    beat.tick(DUE)
    job = PeriodicTask.objects.get()
    assert runs() == [] and (timing.from_db(job.last_run_at), job.total_run_count) == (T0, 0), \
        "a failed publish undoes the claim"

    monkeypatch.undo()
    beat.tick(DUE + timedelta(milliseconds=5))
    assert _drain(memory_broker) == [runs()[0].task_id]
    assert PeriodicTask.objects.get().total_run_count == 1


class BeatDied(BaseException):
    """Stands for the process dying: nothing in the scheduler catches it."""


@pytest.mark.django_db(transaction=True)
def test_a_run_claimed_by_a_beat_that_died_before_publishing_is_sent_by_another(
        memory_broker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from djq.models import PeriodicRun

    make_task(at=T0)

    def die() -> None:
        raise BeatDied()

    send_then(monkeypatch, die, send=False)
    with pytest.raises(BeatDied):
        Scheduler(beat_name="A").tick(DUE)
    monkeypatch.undo()
    [orphan] = runs()
    assert orphan.published_at is None and _drain(memory_broker) == []

    survivor = Scheduler(beat_name="B")
    survivor.tick(DUE + timedelta(milliseconds=5))
    assert _drain(memory_broker) == [], "a run just claimed may still be on its way: not yet"

    PeriodicRun.objects.filter(pk=orphan.pk).update(
        sent_at=timing.now() - timedelta(seconds=scheduler_module.ORPHAN_AFTER + 1))
    survivor.tick(DUE + timedelta(milliseconds=10))
    assert _drain(memory_broker) == [orphan.task_id], "sent once, with the run's own task id"
    [run] = runs()
    assert run.published_at is not None and run.beat == "B"
    survivor.tick(DUE + timedelta(milliseconds=15))
    assert _drain(memory_broker) == []
    assert PeriodicTask.objects.get().total_run_count == 1


@pytest.mark.django_db(transaction=True)
def test_a_published_run_is_marked_so_no_beat_sends_it_again(memory_broker: Any) -> None:
    from djq.models import PeriodicRun

    make_task(at=T0)
    Scheduler(beat_name="A").tick(DUE)
    [run] = runs()
    assert _drain(memory_broker) == [run.task_id] and run.published_at is not None
    PeriodicRun.objects.filter(pk=run.pk).update(
        sent_at=timing.now() - timedelta(seconds=scheduler_module.ORPHAN_AFTER + 1))
    Scheduler(beat_name="B").tick(DUE + timedelta(milliseconds=5))
    assert _drain(memory_broker) == []
