"""A real ``manage.py djq_worker`` subprocess on SQLite and on PostgreSQL."""
from __future__ import annotations

import signal
import uuid

import pytest
from django.db import transaction
from kombu import Producer

from djq import AsyncResult, states
from djq.models import QueueMessage, RejectedMessage, TaskResult
from tests.conftest import wait_for
from tests.testapp.tasks import add, fail, sleep_then_add, whoami

pytestmark = pytest.mark.integration


def _states(broker: str, ids: list[str]) -> dict[str, str]:
    return dict(TaskResult.objects.using(broker).filter(task_id__in=ids).values_list("task_id", "state"))


def test_200_tasks_all_succeed_with_correct_results(broker: str, start_worker) -> None:
    results = [add.delay(i, i * 2) for i in range(200)]
    start_worker("-P", "threads", "-c", "4")
    assert [r.get(timeout=60) for r in results] == [i * 3 for i in range(200)]
    assert TaskResult.objects.using(broker).filter(state=states.SUCCESS).count() == 200
    if broker.embedded:
        assert QueueMessage.objects.using(broker).count() == 0


def test_solo_pool_runs_tasks(broker: str, start_worker) -> None:
    start_worker("-P", "solo")
    assert add.delay(20, 22).get(timeout=30) == 42


def test_failure_is_stored_with_traceback_and_worker_goes_on(broker: str, start_worker) -> None:
    start_worker("-c", "2")
    failed = fail.delay("kaboom")
    with pytest.raises(ValueError, match="kaboom"):
        failed.get(timeout=30)
    assert failed.state == states.FAILURE
    assert "raise ValueError(message)" in failed.traceback
    info = whoami.delay().get(timeout=30)
    assert info["id"] and info["hostname"].startswith("djq@")


def test_transactional_enqueue(broker: str, start_worker) -> None:
    start_worker("-c", "2")
    with pytest.raises(RuntimeError):
        with transaction.atomic(using=broker):
            rolled_back = add.delay(1, 1)
            raise RuntimeError("abort")
    with transaction.atomic(using=broker):
        committed = add.delay(2, 2)
    assert committed.get(timeout=30) == 4
    assert AsyncResult(rolled_back.id).state == states.PENDING
    if broker.embedded:  # the row was part of the rolled-back transaction
        assert QueueMessage.objects.using(broker).count() == 0


def test_sigterm_while_tasks_run_loses_none(broker: str, start_worker) -> None:
    results = [sleep_then_add.delay(0.3, i, 1) for i in range(24)]
    first = start_worker("-P", "threads", "-c", "4")
    wait_for(lambda: TaskResult.objects.using(broker).filter(state=states.SUCCESS).exists(),
             what="the first task to finish")
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    assert "warm shutdown" in first.output
    running_when_stopped = TaskResult.objects.using(broker).filter(state=states.STARTED).count()
    assert running_when_stopped == 0, "a warm shutdown finishes the tasks it started"
    done = TaskResult.objects.using(broker).filter(state=states.SUCCESS).count()
    assert done < len(results), "the worker should have stopped before draining everything"
    start_worker("-P", "threads", "-c", "4")
    assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(24)]


def _publish_raw(broker, body, headers, content_type="application/json", serializer=None) -> None:
    from djq.messaging.producer import broker_connection, task_queue

    with broker_connection(broker.broker_url) as conn, conn.channel() as channel:
        producer = Producer(channel)
        options = {"serializer": serializer} if serializer else {"content_type": content_type,
                                                                  "content_encoding": "utf-8"}
        producer.publish(body, routing_key="default", exchange="", headers=headers,
                         declare=[task_queue("default")], **options)


def test_bad_messages_are_recorded_and_the_worker_goes_on(broker: str, start_worker) -> None:
    unknown_id = str(uuid.uuid4())
    _publish_raw(broker, "this is not json", {"task": "tests.testapp.tasks.add", "id": str(uuid.uuid4())})
    _publish_raw(broker, "[[], {}, {}]", {"hello": "no task header"})
    _publish_raw(broker, "[[], {}, {}]", {"task": "no.such.task", "id": unknown_id})
    _publish_raw(broker, ([1, 2], {}, {}), {"task": "tests.testapp.tasks.add", "id": str(uuid.uuid4())},
                 serializer="pickle")
    worker = start_worker("-c", "2")
    assert add.delay(5, 5).get(timeout=30) == 10
    wait_for(lambda: RejectedMessage.objects.using(broker).count() == 4, what="four rejected messages")
    reasons = " | ".join(RejectedMessage.objects.using(broker).values_list("reason", flat=True))
    assert "cannot be decoded" in reasons
    assert "no 'task' header" in reasons
    assert "'no.such.task' is not registered" in reasons
    assert "not in DJQ_ACCEPT_CONTENT" in reasons
    unknown = AsyncResult(unknown_id)
    assert unknown.state == states.FAILURE
    if broker.embedded:
        assert QueueMessage.objects.using(broker).count() == 0, "rejected messages are not requeued"
    assert worker.output.count("rejected message") == 4
    assert worker.proc.poll() is None


def test_kill_9_during_acks_late_task_redelivers_it(broker: str, start_worker, tmp_path) -> None:
    from tests.testapp.tasks import sleep_late

    env = {"DJQ_TEST_VISIBILITY_TIMEOUT": "2", "DJQ_TEST_TMP": str(tmp_path)}
    result = sleep_late.delay(1.5, "k9")
    victim = start_worker("-c", "1", env=env)
    marker = tmp_path / "ran-k9"
    wait_for(marker.exists, what="the task to start")
    victim.signal(signal.SIGKILL)
    victim.wait(timeout=10)
    start_worker("-c", "1", env=env)
    assert result.get(timeout=60) == "k9"
    assert len(marker.read_text().split()) == 2, "ran once on each worker"


def test_expired_task_is_revoked_not_run(broker: str, start_worker) -> None:
    from datetime import datetime, timedelta, timezone

    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    expired = add.apply_async((1, 1), expires=past)
    fresh = add.apply_async((2, 2), expires=3600)
    start_worker("-c", "2")
    assert fresh.get(timeout=30) == 4
    wait_for(lambda: expired.state == states.REVOKED, what="the expired task to be revoked")
    assert "expired" in (expired.traceback or "")


def test_rate_limited_task_waits_without_blocking_others(broker: str, start_worker) -> None:
    from tests.testapp.tasks import once_a_minute

    limited = [once_a_minute.delay() for _ in range(3)]
    start_worker("-c", "2")
    assert add.delay(3, 4).get(timeout=30) == 7
    wait_for(lambda: limited[0].state == states.SUCCESS, what="the first rate-limited task")
    assert add.delay(5, 6).get(timeout=30) == 11
    assert [r.state for r in limited[1:]] == [states.PENDING, states.PENDING]



def test_prefork_children_use_their_own_database_connections(broker: str, start_worker) -> None:
    """Children must not reuse (or close) the parent's connections, on either database."""
    start_worker("-P", "prefork", "-c", "2")
    first = [add.delay(i, 1) for i in range(30)]
    assert [r.get(timeout=60) for r in first] == [i + 1 for i in range(30)]
    # The parent kept claiming through all of that, so its own connection is intact too.
    second = [add.delay(i, 2) for i in range(30)]
    assert [r.get(timeout=60) for r in second] == [i + 2 for i in range(30)]


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_task_is_stored_started_before_its_body(broker: str, pool: str, start_worker) -> None:
    """On Redis and RabbitMQ the consumer's result writer stores an early-ack task's
    STARTED beside the ack, and on djq:// the ack's own statement does: a prefork child
    has the job after it is stored, a threads slot waits for it. The child opens no
    database connection for it, and the row says STARTED when the body starts."""
    from tests.testapp.tasks import as_it_starts

    start_worker("-P", pool, "-c", "1")
    assert as_it_starts.delay().get(timeout=60) == {"opened": False, "state": states.STARTED}


@pytest.mark.parametrize("db_alias", ["default", "postgres"], indirect=True)
@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_on_djq_started_is_stored_with_the_ack(broker: str, pool: str, start_worker) -> None:
    """djq://: an early-ack task's STARTED is stored with the delete of its message
    (PostgreSQL: one statement; SQLite: one transaction), so the row says STARTED when
    the body starts, on every pool; a threads slot opens no database connection for it."""
    from tests.testapp.tasks import as_it_starts

    start_worker("-P", pool, "-c", "1")
    seen = as_it_starts.delay().get(timeout=60)
    assert seen["state"] == states.STARTED
    if pool == "threads":
        assert seen["opened"] is False, "the slot stored STARTED itself"


def test_higher_priority_runs_first(broker, start_worker) -> None:
    # neighbouring levels: every broker keeps ten apart (Redis' default would merge 4 and 5)
    low = [add.apply_async((i, 0), priority=4) for i in range(4)]
    high = [add.apply_async((i, 100), priority=5) for i in range(4)]
    start_worker("-P", "solo", "--prefetch-multiplier", "1")
    for result in low + high:
        result.get(timeout=60)
    started = dict(TaskResult.objects.using(broker).values_list("task_id", "date_started"))
    assert max(started[r.id] for r in high) < min(started[r.id] for r in low)


def test_routes_send_a_task_to_the_queue_a_worker_serves(broker, start_worker) -> None:
    from django.test import override_settings

    with override_settings(DJQ_TASK_ROUTES={"tests.testapp.tasks.add": "special"}):
        routed = add.delay(20, 1)
    start_worker("-Q", "special", "-P", "threads", "-c", "1")
    assert routed.get(timeout=60) == 21
    assert TaskResult.objects.using(broker).get(task_id=routed.id).queue == "special"


@pytest.mark.parametrize("db_alias", ["default", "postgres"], indirect=True)
def test_two_messages_of_one_task_id_in_one_batch_both_go_through(broker: str, start_worker) -> None:
    """djq:// stores an early-ack batch's STARTED rows with its acks: two messages sharing a
    task id (sent twice under one id) must not make that statement fail and hold the
    batch's acks back until the visibility timeout."""
    first = add.apply_async((1, 1), task_id="one-id-twice")
    add.apply_async((1, 1), task_id="one-id-twice")
    others = [add.delay(i, 0) for i in range(4)]
    start_worker("-P", "threads", "-c", "8")
    assert [r.get(timeout=15) for r in others] == [0, 1, 2, 3]
    assert first.get(timeout=15) == 2
    wait_for(lambda: not QueueMessage.objects.using(broker).exists(), timeout=15,
             what="both messages of the one task id to be acked")
