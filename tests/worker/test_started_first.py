"""An early-ack task is acked only once its STARTED row is stored (djq/worker/started_ahead.py).

With the result database held (a write lock on SQLite, taken from outside the worker),
the worker cannot store STARTED, so it must not have acked the task either: killed -9
then, it leaves the message with the broker, and the next worker runs the task. Acked
beside its STARTED, the task would be gone from the broker while its row still said
PENDING, run nowhere and found by nothing (the lost-worker sweep ends only what is
stored as running).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from djq import states
from djq.models import TaskResult
from tests.conftest import results_held, wait_for
from tests.ledger import Ledger
from tests.testapp.tasks import ledgered

pytestmark = pytest.mark.integration
FAST_REDELIVERY = {"DJQ_TEST_VISIBILITY_TIMEOUT": "5"}


@pytest.mark.parametrize("db_alias", ["redis", "amqp"], indirect=True)
@pytest.mark.parametrize("pool", ["threads", "prefork", "solo"])
def test_a_worker_killed_before_it_could_store_started_leaves_the_task_to_the_broker(
        pool: str, broker, start_worker, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    doomed = start_worker("-P", pool, "-c", "1", "-n", "doomed@%h", env=FAST_REDELIVERY)
    result = ledgered.apply_async((str(ledger), 0), countdown=0.5)  # its PENDING row is stored now
    with results_held(broker):
        time.sleep(3)  # the task was due after 0.5 s: the worker has it and is storing STARTED
        assert not ledger.starts()[result.id], "the task ran before its STARTED was stored"
        os.killpg(doomed.proc.pid, signal.SIGKILL)
        doomed.proc.wait(timeout=10)
    assert TaskResult.objects.using(broker).get(task_id=result.id).state == states.PENDING
    start_worker("-P", "threads", "-c", "1", "-n", "watcher@%h", env=FAST_REDELIVERY)
    assert result.get(timeout=60) == "done", "the broker kept the message the killed worker had not acked"
    wait_for(lambda: ledger.ends()[result.id] == 1, what="its one complete run")
    assert ledger.starts()[result.id] == 1


@pytest.mark.parametrize("db_alias", ["redis", "amqp"], indirect=True)
def test_a_warm_shutdown_runs_the_task_whose_started_it_was_storing(broker, start_worker, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    worker = start_worker("-P", "threads", "-c", "1", env=FAST_REDELIVERY)
    result = ledgered.apply_async((str(ledger), 0), countdown=0.5)
    with results_held(broker):
        time.sleep(2)
        worker.signal(signal.SIGTERM)
        wait_for(lambda: "warm shutdown" in worker.output, what="the warm shutdown")
        time.sleep(0.5)
        assert not ledger.starts()[result.id]
    assert worker.wait(timeout=30) == 0, worker.output[-3000:]
    assert ledger.starts()[result.id] == 1 and ledger.ends()[result.id] == 1, "taken, so run before the exit"
    assert TaskResult.objects.using(broker).get(task_id=result.id).state == states.SUCCESS


@pytest.mark.parametrize("db_alias", ["redis", "amqp"], indirect=True)
def test_a_cold_shutdown_leaves_the_task_whose_started_it_was_storing_to_the_broker(
        broker, start_worker, tmp_path: Path) -> None:
    """Cold while the warm shutdown waits for the row: the task is not acked, so not lost."""
    ledger = Ledger(tmp_path / "ledger")
    worker = start_worker("-P", "threads", "-c", "1", env=FAST_REDELIVERY)
    result = ledgered.apply_async((str(ledger), 0), countdown=0.5)
    with results_held(broker):
        time.sleep(2)
        worker.signal(signal.SIGTERM)
        wait_for(lambda: "warm shutdown" in worker.output, what="the warm shutdown")
        worker.signal(signal.SIGTERM)
        time.sleep(0.5)
    assert worker.wait(timeout=30) == 0, worker.output[-3000:]
    assert not ledger.starts()[result.id]
    assert TaskResult.objects.using(broker).get(task_id=result.id).state == states.PENDING, "its row went back"
    start_worker("-P", "threads", "-c", "1", env=FAST_REDELIVERY)
    assert result.get(timeout=60) == "done"
    assert ledger.starts()[result.id] == 1
