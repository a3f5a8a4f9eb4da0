"""Faults, tested as faults: a worker killed with -9, cold shutdown, a restart under the
same name. Every execution is counted in a ledger outside djq (tests/ledger.py), and
every stored state must agree with it: no task stays STARTED, none is called lost that
finished, none runs twice that was acked early.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from djq import states
from djq.models import TaskResult, WorkerState
from tests.conftest import results_held, wait_for
from tests.ledger import Ledger
from tests.testapp.tasks import ledgered, ledgered_late

pytestmark = pytest.mark.integration
#: killed workers' messages come back quickly on djq:// and Redis
FAST_REDELIVERY = {"DJQ_TEST_VISIBILITY_TIMEOUT": "5"}


def _rows(alias: str, ids: list[str]) -> dict[str, TaskResult]:
    return {row.task_id: row for row in TaskResult.objects.using(alias).filter(task_id__in=ids)}


def _kill(worker) -> None:
    """kill -9 of the worker and of its pool children (its own process group)."""
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)


def _assert_agrees_with_ledger(alias: str, ids: list[str], ledger: Ledger, lost_worker: str) -> None:
    starts, ends = ledger.starts(), ledger.ends()
    rows = _rows(alias, ids)
    for task_id in ids:
        row = rows[task_id]
        assert starts[task_id] <= 1, f"{task_id} was acked early and ran {starts[task_id]} times"
        if ends[task_id]:
            assert row.state == states.SUCCESS, f"{task_id} ran to its end but is stored {row.state}"
        else:
            assert row.state == states.FAILURE, f"{task_id} was stopped mid-run but is stored {row.state}"
            assert "WorkerLostError" in (row.traceback or ""), row.traceback
            assert lost_worker in row.traceback and "last seen" in row.traceback, row.traceback


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_killed_workers_tasks_end_failed_once_its_heartbeats_stop(pool: str, broker, start_worker,
                                                                    tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    long = [ledgered.delay(str(ledger), 30).id for _ in range(2)]
    doomed = start_worker("-P", pool, "-c", "2", "-n", "doomed@%h", env=FAST_REDELIVERY)
    wait_for(lambda: len(ledger.starts()) == 2, what="both long tasks to start")
    short = [ledgered.delay(str(ledger), 0.05).id for _ in range(6)]  # reserved by doomed, or not yet taken
    time.sleep(0.5)
    _kill(doomed)
    watcher = start_worker("-P", "threads", "-c", "2", "-n", "watcher@%h", env=FAST_REDELIVERY)
    ids = long + short
    wait_for(lambda: TaskResult.objects.using(broker).filter(task_id__in=ids, state__in=states.READY_STATES)
             .count() == len(ids), timeout=60, interval=0.2, what="every task to end")
    assert not TaskResult.objects.using(broker).filter(task_id__in=ids, state=states.STARTED).exists()
    _assert_agrees_with_ledger(broker, ids, ledger, "doomed@")
    assert all(_rows(broker, long)[i].state == states.FAILURE for i in long)
    assert "failed: worker doomed@" in watcher.output


def test_a_worker_restarted_under_its_name_resolves_what_it_left_running(broker, start_worker,
                                                                         tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    running = [ledgered.delay(str(ledger), 30).id for _ in range(2)]
    first = start_worker("-P", "threads", "-c", "2", "-n", "again@%h",
                         env={"DJQ_TEST_HEARTBEAT_INTERVAL": "60"})  # its row stays "online" for 2 min
    wait_for(lambda: len(ledger.starts()) == 2, what="both tasks to start")
    _kill(first)
    start_worker("-P", "threads", "-c", "2", "-n", "again@%h", env={"DJQ_TEST_HEARTBEAT_INTERVAL": "60"})
    rows = _rows(broker, running)
    assert [rows[i].state for i in running] == [states.FAILURE] * 2, "resolved before it consumes"
    assert all("worker again@" in (rows[i].traceback or "") for i in running)


def test_a_second_worker_of_a_live_name_refuses_and_default_names_are_unique(broker, start_worker,
                                                                            tmp_path: Path) -> None:
    from djq import control

    ledger = Ledger(tmp_path / "ledger")
    first = start_worker("-P", "threads", "-c", "1", "-n", "twin@%h")
    task_id = ledgered.delay(str(ledger), 3).id
    wait_for(lambda: ledger.starts()[task_id] == 1, what="the task to start")
    second = start_worker("-P", "threads", "-c", "1", "-n", "twin@%h", ready=False)
    assert second.wait(timeout=60) != 0
    refusal = [line for line in second.output.splitlines() if "is held by a live worker" in line]
    assert refusal and f"pid {first.proc.pid} on " in refusal[0] and "-n worker2@%h" in refusal[0], second.output
    assert "Traceback" not in second.output
    twin = f"twin@{socket.gethostname()}"
    # the refused twin touched neither the row nor the control queue: the first still answers
    assert WorkerState.objects.using(broker).get(hostname=twin).pid == first.proc.pid
    assert control.broadcast("ping", destination=[twin], timeout=10) == [{twin: {"ok": "pong"}}]
    wait_for(lambda: ledger.ends()[task_id] == 1, what="the task to end")
    assert wait_for(lambda: TaskResult.objects.using(broker).get(task_id=task_id).state == states.SUCCESS,
                    what="its SUCCESS")
    # no -n: each process on the host gets its own default name; stopping one deafens nobody
    ledgered.apply_async((str(ledger), 0), queue="nobody-consumes")
    one = start_worker("-P", "threads", "-c", "1")
    assert "NOT CONSUMED: nobody-consumes (1 waiting)" in one.output  # the banner says so
    assert "queue 'nobody-consumes' is consumed by no online worker" in one.output
    two = start_worker("-P", "threads", "-c", "1")
    host = socket.gethostname()
    names = {f"djq@{host}", f"djq-2@{host}"}
    assert {row.hostname for row in WorkerState.objects.using(broker).filter(stopped=None)} >= names
    two.stop()
    assert control.broadcast("ping", destination=[f"djq@{host}"], timeout=10) == [{f"djq@{host}": {"ok": "pong"}}]
    assert one.proc.poll() is None and first.proc.poll() is None


@pytest.mark.parametrize("pool", ["threads", "prefork", "solo"])
def test_cold_shutdown_records_the_task_it_stops_and_exits_0(pool: str, broker, start_worker,
                                                             tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    task_id = ledgered.delay(str(ledger), 30).id
    worker = start_worker("-P", pool, "-c", "1", "-n", "cold@%h")
    wait_for(lambda: ledger.starts()[task_id] == 1, what="the task to start")
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "warm shutdown" in worker.output, what="the warm shutdown")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0, worker.output[-3000:]
    row = TaskResult.objects.using(broker).get(task_id=task_id)
    assert row.state == states.FAILURE and not ledger.ends()[task_id]
    assert "WorkerLostError" in row.traceback and "cold shutdown" in row.traceback, row.traceback


def test_cold_shutdown_leaves_an_acks_late_task_to_its_redelivery(broker, start_worker, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    result = ledgered_late.delay(str(ledger), 2)
    worker = start_worker("-P", "threads", "-c", "1", "-n", "coldlate@%h", env=FAST_REDELIVERY)
    wait_for(lambda: ledger.starts()[result.id] == 1, what="the task to start")
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "warm shutdown" in worker.output, what="the warm shutdown")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0, worker.output[-3000:]
    row = TaskResult.objects.using(broker).get(task_id=result.id)
    assert row.state == states.STARTED and "delivers it again" in (row.traceback or ""), row.traceback
    start_worker("-P", "threads", "-c", "1", env=FAST_REDELIVERY)
    assert result.get(timeout=60) == "done"
    assert ledger.starts()[result.id] == 2 and ledger.ends()[result.id] == 1


def test_a_worker_killed_while_brief_tasks_wait_ahead_in_its_prefork_pool(broker, start_worker,
                                                                          tmp_path: Path) -> None:
    """Brief tasks are taken ahead of a free child (docs/pools.md): killed mid-drain, every
    one of them still ends stored as what ran. None stays STARTED, none acked early runs
    twice, none is SUCCESS without a complete run, and each one lost names the worker."""
    ledger = Ledger(tmp_path / "ledger")
    doomed = start_worker("-P", "prefork", "-c", "2", "-n", "doomed@%h", env=FAST_REDELIVERY)
    warm = [ledgered.delay(str(ledger), 0.001).id for _ in range(10)]  # now known to be brief
    wait_for(lambda: TaskResult.objects.using(broker).filter(task_id__in=warm, state=states.SUCCESS).count() == 10,
             timeout=60, what="the first brief tasks to end")
    ids = [ledgered.delay(str(ledger), 0.002).id for _ in range(300)]
    wait_for(lambda: len(set(ledger.starts()) & set(ids)) >= 60, timeout=60, interval=0.01,
             what="the drain to be under way")
    _kill(doomed)
    start_worker("-P", "threads", "-c", "2", "-n", "watcher@%h", env=FAST_REDELIVERY)
    wait_for(lambda: TaskResult.objects.using(broker).filter(task_id__in=ids, state__in=states.READY_STATES)
             .count() == len(ids), timeout=90, interval=0.2, what="every task to end")
    starts, ends = ledger.starts(), ledger.ends()
    for task_id, row in _rows(broker, ids).items():
        assert starts[task_id] <= 1, f"{task_id} was acked early and ran {starts[task_id]} times"
        if row.state == states.SUCCESS:
            assert ends[task_id] == 1, f"{task_id} is SUCCESS without one complete run"
        else:
            assert row.state == states.FAILURE, f"{task_id} is stored {row.state}"
            assert "WorkerLostError" in (row.traceback or "") and "doomed@" in row.traceback, row.traceback
    assert sum(1 for task_id in ids if ends[task_id]) >= 60


@pytest.mark.parametrize("db_alias", ["redis", "amqp"], indirect=True)
def test_a_worker_whose_heartbeat_waited_on_the_database_does_not_end_its_own_tasks(broker, start_worker,
                                                                                   tmp_path: Path) -> None:
    """The heartbeat's write waits out a held database (2 s, four intervals here), so the
    moment it stores as ``offline_after`` has passed when it commits: the sweep that follows
    must not take its own worker for lost and end the task it is running FAILURE."""
    ledger = Ledger(tmp_path / "ledger")
    start_worker("-P", "threads", "-c", "1", "-n", "stalled@%h")
    result = ledgered.delay(str(ledger), 4)
    wait_for(lambda: ledger.starts()[result.id] == 1, what="the task to start")
    wait_for(lambda: TaskResult.objects.using(broker).get(task_id=result.id).state == states.STARTED,
             what="its STARTED row")
    with results_held(broker):
        time.sleep(2)
    assert result.get(timeout=30) == "done"
    row = TaskResult.objects.using(broker).get(task_id=result.id)
    assert row.state == states.SUCCESS and ledger.ends()[result.id] == 1, row.traceback
