"""Celery and djq on one broker: results both ways, chains and chords across (issue 14).

Each test covers rows of the issue's table against a real ``celery worker`` and real
``djq_worker`` processes (tests/interop/results_fixtures.py), on Redis and on RabbitMQ.
"""
from __future__ import annotations

import pytest

from djq import AsyncResult, chord, group
from djq.canvas import signature
from djq.exceptions import ChordError
from djq.models import TaskResult
from tests.testapp.tasks import add, echo, fail, tsum

from .results_celery_app import CELERY_QUEUE, PREFIX
from .results_fixtures import side  # noqa: F401 - the module's workers

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT = 30


def test_celery_client_reads_what_djq_workers_ran(side) -> None:
    """Celery send_task -> djq worker: the Celery client's get() (Redis results and rpc://),
    djq's AsyncResult and the admin's row all see it; a Celery chain runs to its end."""
    client = side.celery_client
    sent = client.send_task(PREFIX + "add", (2, 3), queue="default")
    assert sent.get(timeout=TIMEOUT) == 5
    assert AsyncResult(sent.id).get(timeout=TIMEOUT) == 5
    assert (sent.name, sent.queue) == (PREFIX + "add", "default")  # Celery's result_extended fields
    row = TaskResult.objects.get(task_id=sent.id)
    assert (row.state, row.task_name) == ("SUCCESS", PREFIX + "add")

    failed = client.send_task(PREFIX + "fail", ("boom",), queue="default")
    with pytest.raises(ValueError, match="boom"):
        failed.get(timeout=TIMEOUT)
    assert failed.state == "FAILURE"

    links = [client.signature(PREFIX + "add", args, queue="default") for args in ((1, 1), (2,), (3,))]
    last = (links[0] | links[1] | links[2]).apply_async()
    assert last.get(timeout=TIMEOUT) == 7  # stopped after the first link before (reply_to refused)
    from celery import group as celery_group

    members = celery_group(client.signature(PREFIX + "add", (i, i), queue="default") for i in range(3))
    assert members.apply_async().get(timeout=TIMEOUT) == [0, 2, 4]
    assert "unexpected keyword" not in side.djq_worker.output

    replied = side.rpc_client.send_task(PREFIX + "add", (20, 22), queue="rpc-side")
    assert replied.get(timeout=TIMEOUT) == 42
    rpc_failed = side.rpc_client.send_task(PREFIX + "fail", ("rpc boom",), queue="rpc-side")
    with pytest.raises(ValueError, match="rpc boom"):
        rpc_failed.get(timeout=TIMEOUT)


def test_djq_reads_what_a_celery_worker_ran(side) -> None:
    """djq delay() -> Celery worker: djq's AsyncResult reads Celery's Redis backend; a djq
    chain and group on the Celery worker; the Celery worker logs no decode warning."""
    result = add.apply_async((4, 5), queue=CELERY_QUEUE)
    assert result.get(timeout=TIMEOUT) == 9
    assert result.state == "SUCCESS"
    # only Celery stored its end: djq's own row is the PENDING row written when it was sent
    assert TaskResult.objects.get(task_id=result.id).state == "PENDING"

    failed = fail.apply_async(("celery boom",), queue=CELERY_QUEUE)
    with pytest.raises(ValueError, match="celery boom"):
        failed.get(timeout=TIMEOUT)
    assert failed.get(timeout=1, propagate=False).args == ("celery boom",)

    last = (add.s(1, 2).set(queue=CELERY_QUEUE) | add.s(10).set(queue=CELERY_QUEUE)).apply_async()
    assert last.get(timeout=TIMEOUT) == 13
    assert group(add.s(i, 1).set(queue=CELERY_QUEUE) for i in range(3)).apply_async().get(timeout=TIMEOUT) == [1, 2, 3]
    log = side.celery_worker.output
    assert "Received unregistered task" not in log and "decode" not in log.lower()


def test_chords_across(side) -> None:
    """A Celery chord completes on djq workers; a djq chord completes on the Celery worker
    and across both, the body getting the header's results in header order."""
    client = side.celery_client
    header = [client.signature(PREFIX + "add", (i, i), queue="default") for i in range(4)]
    celery_chord = client.signature("tests.echo", queue="default")
    from celery import chord as celery_chord_of

    body = celery_chord_of(header, celery_chord).apply_async()
    assert body.get(timeout=TIMEOUT) == [0, 2, 4, 6]

    on_celery = chord([add.s(i, 1).set(queue=CELERY_QUEUE) for i in range(3)],
                      tsum.s().set(queue=CELERY_QUEUE)).apply_async()
    assert on_celery.get(timeout=TIMEOUT) == 6

    # header split between the two sides: whichever finishes last sends the body once
    mixed = chord([add.s(i, 0).set(queue=CELERY_QUEUE if i % 2 else "default") for i in range(6)],
                  echo.s()).apply_async()
    assert mixed.get(timeout=TIMEOUT) == [0, 1, 2, 3, 4, 5]

    broken = chord([add.s(1, 1), fail.s("header down").set(queue=CELERY_QUEUE)], tsum.s()).apply_async()
    with pytest.raises(ChordError, match="header down"):
        broken.get(timeout=TIMEOUT)


def test_a_follow_up_that_cannot_be_sent_is_on_the_result(side) -> None:
    """A callback naming a task the worker does not know: the task's result says so, and
    the worker sends a task-follow-up-failed event."""
    import threading

    from djq.messaging.events import EventReceiver
    from tests.conftest import wait_for

    seen: list[dict] = []
    listening = threading.Event()
    receiver = EventReceiver(seen.append)
    thread = threading.Thread(target=receiver.capture, kwargs={"timeout": TIMEOUT, "on_ready": listening.set})
    thread.start()
    try:
        assert listening.wait(TIMEOUT)
        result = add.apply_async((1, 2), link=signature("tests.interop.no_such_task"))
        assert result.get(timeout=TIMEOUT) == 3

        def noted() -> str:
            return TaskResult.objects.get(task_id=result.id).traceback or ""

        assert "could not be sent" in wait_for(noted, timeout=TIMEOUT, what="the note on the result")
        assert "no_such_task" in noted()
        event = wait_for(lambda: next((e for e in seen if e["type"] == "task-follow-up-failed"
                                       and e.get("uuid") == result.id), None), timeout=TIMEOUT, what="the event")
        assert "no_such_task" in event["exception"]
    finally:
        receiver.should_stop = True
        thread.join(TIMEOUT)
