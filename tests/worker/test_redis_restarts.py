"""At least once on Redis: restarting Redis again and again under an acks_late drain loses nothing.

Each run of the task appends its id to a ledger file (O_APPEND + fsync), so the count of
runs does not depend on djq's own bookkeeping. Redis is shut down with SAVE and started
again from its dump, as a Redis with persistence would be, ten times while a worker
drains the backlog; every task must run at least once (twice is allowed: a task whose
ack was lost in a restart runs again after the visibility timeout).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import redis
from django.db import DatabaseError, connections

from djq import states
from djq.models import TaskResult
from tests.conftest import wait_for
from tests.ledger import Ledger
from tests.testapp.tasks import ledgered_late
from tests.worker.test_broker_restart import _restart_redis

RESTARTS = 10
TASKS = 400
VISIBILITY = "3"


def _ran(ledger: Path) -> Counter[str]:
    return Ledger(ledger).starts()


def _succeeded(alias: str, ids: list[str]) -> int:
    try:
        return TaskResult.objects.using(alias).filter(task_id__in=ids, state=states.SUCCESS).count()
    except DatabaseError:  # the connection from before a restart of a shared server
        connections[alias].close()
        return 0


@pytest.mark.parametrize("db_alias", ["redis"], indirect=True)
def test_ten_redis_restarts_under_an_acks_late_drain_lose_no_task(broker, start_worker, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    ids = [ledgered_late.delay(str(ledger), 0.02).id for _ in range(TASKS)]
    client = redis.Redis.from_url(broker.broker_url)
    worker = start_worker("-P", "threads", "-c", "4", env={"DJQ_TEST_VISIBILITY_TIMEOUT": VISIBILITY})
    for restart in range(RESTARTS):
        before = len(_ran(ledger))
        wait_for(lambda: len(_ran(ledger)) >= before + 10, timeout=60, interval=0.02,
                 what=f"the drain to move before restart {restart + 1}")
        client.set("djq-test-restart-marker", restart)
        _restart_redis()
        # the dump was written and loaded: what was queued and unacked survived too
        assert client.get("djq-test-restart-marker") == str(restart).encode()
    assert len(_ran(ledger)) < TASKS, "the restarts must happen during the drain, not after it"

    try:
        wait_for(lambda: set(ids) <= set(_ran(ledger)), timeout=60, interval=0.5,
                 what="every task to run after the restarts")
    except AssertionError:
        pass  # counted below
    runs = _ran(ledger)
    lost = [task_id for task_id in ids if task_id not in runs]
    assert lost == [], f"{len(lost)} of {TASKS} tasks never ran"
    wait_for(lambda: _succeeded(broker, ids) == TASKS, timeout=60, interval=0.5, what="every result row")
    assert worker.proc.poll() is None, "the worker must still be running"
    assert worker.output.count("reconnected to") >= RESTARTS // 2, worker.output[-3000:]
