"""Events from real workers: the camera stores them, the live view shows them, -E turns them on."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from djq.models import TaskEvent, WorkerState
from djq.monitor import LiveView
from tests.conftest import WorkerProcess, wait_for
from tests.testapp.tasks import add, always_retry, fail

pytestmark = pytest.mark.integration


def _events(broker: str, task_id: str) -> list[str]:
    return list(TaskEvent.objects.using(broker).filter(task_id=task_id).order_by("timestamp", "id")
                .values_list("event", flat=True))


@pytest.fixture
def events_process(broker, tmp_path):
    processes: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        process = WorkerProcess(broker, list(args), tmp_path / f"events-{len(processes)}.log", command="djq_events")
        processes.append(process)
        process.wait_ready()
        return process

    yield start
    for process in processes:
        process.stop()


def test_camera_stores_task_and_worker_events_and_prunes_old_ones(broker, start_worker, events_process) -> None:
    old = TaskEvent.objects.using(broker).create(event="task-succeeded", task_id="ancient",
                                                 timestamp=timezone.now() - timedelta(days=3))
    camera = events_process("--camera", "--frequency", "0.2")
    start_worker("-P", "threads", "-E", "-n", "seen@%h")
    hostname = WorkerState.objects.using(broker).get().hostname
    with override_settings(DJQ_TASK_SEND_SENT_EVENT=True):
        ok = add.delay(1, 2)
    failed = fail.delay("<b>boom</b>")
    assert ok.get(timeout=30) == 3
    # the client's task-sent and the worker's events travel separately: wait for all four
    wait_for(lambda: len(_events(broker, ok.id)) == 4, what="four events stored")
    assert _events(broker, ok.id) == ["task-sent", "task-received", "task-started", "task-succeeded"]
    succeeded = TaskEvent.objects.using(broker).get(task_id=ok.id, event="task-succeeded")
    assert succeeded.hostname == hostname and succeeded.fields["result"] == "3" and succeeded.fields["runtime"] >= 0
    received = TaskEvent.objects.using(broker).get(task_id=ok.id, event="task-received")
    assert received.task_name == "tests.testapp.tasks.add" and received.fields["args"] == "(1, 2)"

    wait_for(lambda: "task-failed" in _events(broker, failed.id), what="task-failed stored")
    failure = TaskEvent.objects.using(broker).get(task_id=failed.id, event="task-failed")
    assert "<b>boom</b>" in failure.fields["exception"] and "ValueError" in failure.fields["traceback"]
    # only task-sent/received carry the name on the wire; the camera names the others too
    names = set(TaskEvent.objects.using(broker).filter(task_id__in=(ok.id, failed.id))
                .values_list("event", "task_name"))
    assert {("task-started", "tests.testapp.tasks.add"), ("task-succeeded", "tests.testapp.tasks.add"),
            ("task-failed", "tests.testapp.tasks.fail")} <= names
    assert all(name for _, name in names), names
    wait_for(lambda: TaskEvent.objects.using(broker).filter(event="worker-heartbeat", hostname=hostname).exists(),
             what="heartbeat event")
    assert TaskEvent.objects.using(broker).filter(event="worker-online", hostname=hostname).exists()
    assert not TaskEvent.objects.using(broker).filter(pk=old.pk).exists()  # older than the retention
    camera.stop()
    assert "camera stopped" in camera.output


def test_no_task_events_without_dash_e(broker, start_worker, events_process) -> None:
    events_process("--camera", "--frequency", "0.2")
    start_worker("-P", "threads")
    result = add.delay(2, 2)
    assert result.get(timeout=30) == 4
    marker = add.delay(0, 0)  # a second round trip gives any stray event time to be stored
    assert marker.get(timeout=30) == 0
    assert TaskEvent.objects.using(broker).count() == 0


def test_live_view_shows_workers_rates_and_failures(broker, start_worker, events_process) -> None:
    start_worker("-P", "threads", "-E", "-n", "live@%h")
    live = events_process("--frequency", "0.3", "--duration", "60")
    # once a heartbeat reached the view, the worker's event publisher knows the view's queue
    wait_for(lambda: "ONLINE  live@" in live.output, what="worker in the live view")
    assert add.delay(3, 4).get(timeout=30) == 7
    fail.delay("exploded")
    screen = wait_for(lambda: "ValueError: exploded" in live.output and live.output, what="live view with the failure")
    last = screen.rsplit("djq events at", 1)[-1]
    assert "task-succeeded   1" in last and "task-failed      1" in last
    assert "tests.testapp.tasks.fail[" in last


def test_live_view_model() -> None:
    view = LiveView()
    view({"type": "worker-heartbeat", "hostname": "w@h", "active": 2, "processed": 9, "freq": 5.0})
    view({"type": "task-received", "uuid": "u1", "name": "app.job", "hostname": "w@h"})
    view({"type": "task-failed", "uuid": "u1", "exception": "KeyError('x')", "hostname": "w@h", "timestamp": 0})
    text = view.render()
    assert "ONLINE  w@h  active 2  processed 9" in text
    assert "task-failed      1" in text and "app.job[u1] on w@h: KeyError('x')" in text
    view({"type": "worker-offline", "hostname": "w@h"})
    assert "OFFLINE w@h" in view.render()


def _publish_raw(broker, body: str, headers: dict) -> None:
    from kombu import Producer

    from djq.messaging.producer import broker_connection, task_queue

    with broker_connection(broker.broker_url) as conn, conn.channel() as channel:
        Producer(channel).publish(body, routing_key="default", exchange="", headers=headers,
                                  content_type="application/json", content_encoding="utf-8",
                                  declare=[task_queue("default")])


def _stored(broker: str, event: str, task_id: str | None = None, count: int = 1) -> list[TaskEvent]:
    rows = TaskEvent.objects.using(broker).filter(event=event).order_by("timestamp", "id")
    if task_id is not None:
        rows = rows.filter(task_id=task_id)
    return wait_for(lambda: len(found := list(rows.all())) >= count and found, what=f"{count} {event} event(s)")


def test_retried_revoked_rejected_and_offline_events_carry_their_fields(broker, start_worker,
                                                                       events_process) -> None:
    events_process("--camera", "--frequency", "0.2")
    revoked = add.delay(1, 1)
    revoked.revoke()
    expired = add.apply_async((2, 2), expires=timezone.now() - timedelta(seconds=1))
    unknown_id, garbled_id = str(uuid.uuid4()), str(uuid.uuid4())
    _publish_raw(broker, "[[], {}, {}]", {"task": "no.such.task", "id": unknown_id})
    _publish_raw(broker, "this is not json", {"task": "tests.testapp.tasks.add", "id": garbled_id})
    retried = always_retry.delay()  # retried twice, then fails
    worker = start_worker("-P", "threads", "-E", "-n", "fields@%h")
    hostname = WorkerState.objects.using(broker).get().hostname

    first, second = _stored(broker, "task-retried", retried.id, count=2)
    assert first.hostname == hostname
    assert first.fields["exception"] == second.fields["exception"] == "KeyError: 'still down'"
    assert "KeyError: 'still down'" in first.fields["traceback"]
    _stored(broker, "task-failed", retried.id)

    (revoke,) = _stored(broker, "task-revoked", revoked.id)
    assert (revoke.fields["expired"], revoke.fields["terminated"], revoke.fields["signum"]) == (False, False, None)
    assert {"utcoffset", "pid", "clock"} <= set(revoke.fields)
    (expiry,) = _stored(broker, "task-revoked", expired.id)
    assert (expiry.fields["expired"], expiry.fields["terminated"], expiry.fields["signum"]) == (True, False, None)

    (unknown,) = _stored(broker, "task-rejected", unknown_id)
    assert unknown.task_name == "no.such.task" and unknown.fields["requeue"] is False
    assert "'no.such.task' is not registered" in unknown.fields["reason"]
    (garbled,) = _stored(broker, "task-rejected", garbled_id)
    assert garbled.task_name == "tests.testapp.tasks.add" and "cannot be decoded" in garbled.fields["reason"]

    assert not TaskEvent.objects.using(broker).filter(event="worker-offline").exists()
    worker.stop()  # SIGTERM: a warm shutdown
    assert worker.proc.returncode == 0
    (offline,) = _stored(broker, "worker-offline")
    assert offline.hostname == hostname
    assert {"freq", "sw_ident", "sw_ver", "sw_sys", "active", "processed", "loadavg"} <= set(offline.fields)
    assert offline.fields["sw_ident"] == "djq" and offline.fields["active"] == 0 and offline.fields["processed"] >= 1


def test_a_lost_workers_task_fails_as_a_task_failed_event(broker, start_worker, events_process, tmp_path) -> None:
    import os
    import signal as signals

    from tests.ledger import Ledger
    from tests.testapp.tasks import ledgered

    ledger = Ledger(tmp_path / "ledger")
    camera = events_process("--camera", "--frequency", "0.2")
    doomed = start_worker("-P", "threads", "-c", "1", "-n", "gone@%h")
    task_id = ledgered.delay(str(ledger), 30).id
    wait_for(lambda: ledger.starts()[task_id] == 1, what="the task to start")
    os.killpg(doomed.proc.pid, signals.SIGKILL)
    doomed.proc.wait(timeout=10)
    start_worker("-P", "threads", "-E", "-n", "notices@%h")
    wait_for(lambda: "task-failed" in _events(broker, task_id), timeout=30, what="task-failed stored")
    failed = TaskEvent.objects.using(broker).get(task_id=task_id, event="task-failed")
    assert "worker gone@" in failed.fields["exception"] and "WorkerLostError" in failed.fields["traceback"]
    assert failed.hostname.startswith("notices@")
    assert camera.proc.poll() is None


def test_an_event_sent_as_soon_as_a_receiver_is_ready_reaches_it(broker) -> None:
    """``on_ready`` means subscribed: on Redis kombu sends SUBSCRIBE only when it first polls,
    and an event published before that was lost (the interop follow-up event flaked on it)."""
    import threading

    from kombu import Producer

    from djq.messaging.events import EventReceiver, events_exchange
    from djq.messaging.producer import broker_connection

    seen: list[dict] = []
    receiver = EventReceiver(seen.append, url=broker.broker_url)
    token = uuid.uuid4().hex

    def publish_at_once() -> None:  # in the receiver's thread, before its first poll
        with broker_connection(broker.broker_url) as connection:
            Producer(connection.channel(), exchange=events_exchange()).publish(
                {"type": "task-received", "uuid": token}, routing_key="", serializer="json", retry=False)

    thread = threading.Thread(target=receiver.capture, kwargs={"timeout": 30, "on_ready": publish_at_once})
    thread.start()
    try:
        wait_for(lambda: any(e.get("uuid") == token for e in seen), timeout=10, what="the event sent at ready")
        assert all(e["type"] != "djq-probe" for e in seen)  # the receiver's own probe is not an event
    finally:
        receiver.should_stop = True
        thread.join(10)
    assert not thread.is_alive()
