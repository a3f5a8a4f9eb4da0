"""Sending many tasks at once: ``delay_many``/``apply_many`` and groups, on every broker."""
from __future__ import annotations

import json

import pytest
from django.db import transaction

from djq import group, states
from djq.exceptions import EncodeError, TaskOptionError
from djq.messaging.producer import broker_connection, task_queue
from djq.models import QueueMessage, TaskResult
from tests.conftest import wait_for
from tests.testapp.tasks import add, mul


def _queued(broker) -> int:
    if broker.embedded:
        return QueueMessage.objects.using(broker).count()
    with broker_connection(broker.broker_url) as conn:
        return int(task_queue("default", broker.broker_url)(conn.default_channel).queue_declare().message_count)


@pytest.mark.integration
def test_delay_many_apply_many_and_group_run_on_a_worker(broker, start_worker) -> None:
    start_worker("-P", "threads", "-c", "4")
    calls = [(i, i) for i in range(600)] + [{"x": 1, "y": 2}]  # more than one chunk of 500
    results = add.delay_many(calls)
    later = mul.apply_many([(2, 3), [4, 5]], countdown=0.2, priority=5)
    grouped = group(add.s(i, 1) for i in range(20)).delay()
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(600)] + [3]
    assert [r.get(timeout=30) for r in later] == [6, 20]
    assert grouped.get(timeout=30) == [i + 1 for i in range(20)]
    assert _queued(broker) == 0


def test_delay_many_follows_the_transaction(broker) -> None:
    with pytest.raises(RuntimeError), transaction.atomic(using=broker):
        rolled_back = add.delay_many([(1, 1)] * 3)
        raise RuntimeError("abort")
    with transaction.atomic(using=broker):
        sent = add.delay_many([(2, 2)] * 2) + mul.apply_many([(2, 3)], countdown=60)
        if not broker.embedded:
            assert _queued(broker) == 0, "other brokers publish at commit"
    wait_for(lambda: _queued(broker) == 3, timeout=10, what="the committed batch, and only it, to be queued")
    # each sent task is visible at once: a PENDING row with its eta, written in bulk
    rows = {row.task_id: row for row in TaskResult.objects.using(broker).filter(task_id__in=[r.id for r in sent])}
    assert [rows[r.id].state for r in sent] == [states.PENDING] * 3
    assert [rows[r.id].eta is None for r in sent] == [True, True, False]
    assert not TaskResult.objects.using(broker).filter(task_id__in=[r.id for r in rolled_back]).exists()


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_a_bad_element_is_named_and_nothing_is_sent(broker) -> None:
    with pytest.raises(EncodeError, match=r"element 2 of .*positional argument 1 \(object\).*nothing was sent"):
        add.delay_many([(1, 2), (3, 4), (5, object())])
    with pytest.raises(TaskOptionError, match=r"element 1 of .*delay_many\(\).* got int"):
        add.delay_many([(1, 2), 7])
    with pytest.raises(TaskOptionError, match="task_id belongs to one call"):
        add.apply_many([(1, 2)], task_id="mine")
    assert _queued(broker) == 0
    add.delay(1, 2)
    add.delay_many([(1, 2)])
    stored = [json.loads(p) for p in QueueMessage.objects.using(broker).order_by("id").values_list("payload", flat=True)]
    for message in stored:  # what differs between two sends of the same call
        for key in ("id", "root_id"):
            message["headers"].pop(key)
        for key in ("correlation_id", "delivery_tag"):
            message["properties"].pop(key, None)
    assert stored[0] == stored[1], "delay_many sends the message delay() sends"


def test_delay_is_visible_as_pending_with_its_message_and_rolls_back_with_it(broker) -> None:
    """One delay(): its PENDING row and its message commit together (on djq:// PostgreSQL
    in one statement), or with the caller's transaction not at all."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    mul.apply_async((1, 1), queue="special")  # the first send to a queue declares it
    with CaptureQueriesContext(connections[str(broker)]) as queries:
        sent = mul.apply_async((6, 7), countdown=60, queue="special")
    if broker.embedded and connections[str(broker)].vendor == "postgresql":
        assert len(queries) == 1, [query["sql"] for query in queries]
        assert "djq_taskresult" in queries[0]["sql"] and "pg_notify" in queries[0]["sql"]
    row = TaskResult.objects.using(broker).get(task_id=sent.id)
    assert (row.state, row.task_name, row.queue, row.args_repr) == (states.PENDING, mul.name, "special", "(6, 7)")
    assert row.eta is not None and row.date_created is not None
    if broker.embedded:
        assert QueueMessage.objects.using(broker).filter(queue="special").count() == 2
    with pytest.raises(RuntimeError), transaction.atomic(using=broker):
        rolled_back = add.delay(1, 1)
        assert TaskResult.objects.using(broker).filter(task_id=rolled_back.id).exists()
        raise RuntimeError("abort")
    assert not TaskResult.objects.using(broker).filter(task_id=rolled_back.id).exists()
    if broker.embedded:
        assert QueueMessage.objects.using(broker).filter(queue="special").count() == 2, "only the committed messages"
