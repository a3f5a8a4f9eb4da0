"""A broker restarted while a worker drains a backlog: the worker reconnects and finishes all.

Each test stops the real server behind its leg (PostgreSQL for djq:// on PostgreSQL,
redis-server, rabbitmq-server) through scripts/services.sh, keeps it down for a moment,
and starts it again. Redis is shut down with SAVE, as a Redis with persistence would
be, so the backlog survives the restart.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable
from urllib.parse import urlsplit

import pytest
from django.db import DatabaseError, connections
from django.db.models import Count

from djq import states
from djq.models import TaskResult
from tests.conftest import ROOT, wait_for
from tests.faultproxy import in_front_of
from tests.ledger import Ledger
from tests.testapp.tasks import ledgered, ledgered_late, sleep_then_add

SERVICES = ROOT / "scripts" / "services.sh"
DOWN_FOR = 2.0  # seconds the server stays down: long enough for the worker to notice


def _services(*args: str, port_var: str, port: int) -> None:
    env = {**os.environ, port_var: str(port)}
    subprocess.run(["bash", str(SERVICES), *args], env=env, check=True, timeout=180,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _restart_postgres() -> None:
    port = urlsplit(os.environ["DJQ_TEST_POSTGRES_URL"]).port or 5432
    _services("stop-postgres", port_var="DJQ_PG_PORT", port=port)
    time.sleep(DOWN_FOR)
    _services("postgres", port_var="DJQ_PG_PORT", port=port)


def _restart_redis() -> None:
    port = urlsplit(os.environ["DJQ_TEST_REDIS_URL"]).port or 6379
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "shutdown", "save"],
                   timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(DOWN_FOR)
    _services("redis", port_var="DJQ_REDIS_PORT", port=port)


def _restart_rabbitmq() -> None:
    port = urlsplit(os.environ["DJQ_TEST_AMQP_URL"]).port or 5672
    _services("stop-rabbitmq", port_var="DJQ_AMQP_PORT", port=port)
    time.sleep(DOWN_FOR)
    _services("rabbitmq", port_var="DJQ_AMQP_PORT", port=port)


RESTART: dict[str, Callable[[], None]] = {"postgres": _restart_postgres, "redis": _restart_redis, "amqp": _restart_rabbitmq}


def _count_done(alias: str, ids: list[str]) -> int:
    """Finished tasks among ``ids``; a connection the restart broke is reopened."""
    try:
        return TaskResult.objects.using(alias).filter(task_id__in=ids, state=states.SUCCESS).count()
    except DatabaseError:
        connections[alias].close()
        return 0


def _wait_all_done(alias: str, ids: list[str], worker, *, timeout: float, what: str,
                   ledger: Ledger | None = None) -> None:
    """Wait until every task in ``ids`` has succeeded; if not, say where the others are."""
    try:
        wait_for(lambda: _count_done(alias, ids) == len(ids), timeout=timeout, interval=0.5, what=what)
    except AssertionError as exc:
        connections[alias].close()
        rows = dict(TaskResult.objects.using(alias).filter(task_id__in=ids).values_list("task_id", "state"))
        by_state = dict(TaskResult.objects.using(alias).filter(task_id__in=ids).values_list("state")
                        .annotate(n=Count("pk")).values_list("state", "n"))
        unfinished = [i for i in ids if rows.get(i) != states.SUCCESS]
        runs = ""
        if ledger is not None:
            starts, ends = ledger.starts(), ledger.ends()
            runs = "; unfinished (id, state, starts, ends): " + repr(
                [(i, rows.get(i), starts[i], ends[i]) for i in unfinished[:20]])
        raise AssertionError(f"{exc}; states {by_state}; {len(unfinished)} unfinished{runs}; "
                             f"worker log (end):\n{worker.output[-8000:]}") from None


@pytest.mark.parametrize("db_alias", ["postgres", "redis", "amqp"], indirect=True)
def test_worker_survives_a_broker_restart_and_finishes_the_backlog(broker, start_worker) -> None:
    results = [sleep_then_add.delay(0.03, i, 1) for i in range(300)]
    ids = [r.id for r in results]
    worker = start_worker("-P", "threads", "-c", "4", env={"DJQ_TEST_VISIBILITY_TIMEOUT": "5"})
    wait_for(lambda: _count_done(broker, ids) >= 20, timeout=60, what="the drain to be under way")
    RESTART[broker.leg]()
    connections[broker].close()
    _wait_all_done(broker, ids, worker, timeout=120, what="every task to finish after the restart")
    assert worker.proc.poll() is None, "the worker must still be running"
    output = worker.output
    assert "lost the broker connection" in output or "connection to" in output, output[-3000:]
    assert "reconnected to" in output, output[-3000:]
    values = dict(TaskResult.objects.using(broker).filter(task_id__in=ids).values_list("task_id", "result"))
    assert [values[r.id] for r in results] == [str(i + 1) for i in range(300)]


ROUNDS = 10  # broker restarts per leg


def _restart_quickly(leg: str) -> None:
    """The restart of RESTART[leg], down for a shorter moment (ten of them run in a row)."""
    global DOWN_FOR
    saved, DOWN_FOR = DOWN_FOR, 0.3
    try:
        RESTART[leg]()
    finally:
        DOWN_FOR = saved


def _send(task, ledger: Ledger, n: int, seconds: float) -> list[str]:
    """Send n tasks; a publish the restart broke is tried again on a fresh connection."""
    from djq.messaging.producer import reset_publishers

    ids: list[str] = []
    deadline = time.monotonic() + 60
    while len(ids) < n:
        try:
            ids.append(task.delay(str(ledger), seconds).id)
        except Exception:
            if time.monotonic() > deadline:
                raise
            reset_publishers()
            time.sleep(0.2)
    return ids


@pytest.mark.parametrize("db_alias", ["postgres", "redis", "amqp"], indirect=True)
def test_broker_restarts_run_no_early_ack_task_twice_and_lose_no_late_one(broker, start_worker,
                                                                          tmp_path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    worker = start_worker("-P", "threads", "-c", "4", env={"DJQ_TEST_VISIBILITY_TIMEOUT": "5"})
    early: list[str] = []
    late: list[str] = []
    for _ in range(ROUNDS):
        batch = _send(ledgered, ledger, 20, 0.02)
        late += _send(ledgered_late, ledger, 20, 0.02)
        early += batch
        wait_for(lambda: sum(ledger.starts()[i] > 0 for i in batch) >= 5, timeout=60, interval=0.05,
                 what="this round's drain to be under way")
        _restart_quickly(broker.leg)
        connections[broker].close()
    ids = early + late
    _wait_all_done(broker, ids, worker, timeout=180, what="every task to succeed after the restarts",
                   ledger=ledger)
    starts, ends = ledger.starts(), ledger.ends()
    twice = [i for i in early if starts[i] != 1]
    assert not twice, f"{len(twice)} early-ack task(s) ran {[starts[i] for i in twice]} times"
    assert all(ends[i] >= 1 for i in late), "every acks_late task ran to its end"
    assert worker.proc.poll() is None
    assert "reconnected to" in worker.output


def _stop_server(leg: str) -> Callable[[], None]:
    """Stop the leg's server; returns the function that starts it again."""
    if leg == "postgres":
        port = urlsplit(os.environ["DJQ_TEST_POSTGRES_URL"]).port or 5432
        _services("stop-postgres", port_var="DJQ_PG_PORT", port=port)
        return lambda: _services("postgres", port_var="DJQ_PG_PORT", port=port)
    if leg == "redis":
        port = urlsplit(os.environ["DJQ_TEST_REDIS_URL"]).port or 6379
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "shutdown", "save"],
                       timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return lambda: _services("redis", port_var="DJQ_REDIS_PORT", port=port)
    port = urlsplit(os.environ["DJQ_TEST_AMQP_URL"]).port or 5672
    _services("stop-rabbitmq", port_var="DJQ_AMQP_PORT", port=port)
    return lambda: _services("rabbitmq", port_var="DJQ_AMQP_PORT", port=port)


@pytest.mark.parametrize("db_alias", ["postgres", "redis", "amqp"], indirect=True)
def test_a_worker_started_while_its_broker_is_down_waits_and_then_consumes(broker, start_worker) -> None:
    start_again = _stop_server(broker.leg)
    try:
        worker = start_worker("-P", "threads", "-c", "2", ready=False)
        wait_for(lambda: worker.output.count("next try in") >= 2 or worker.proc.poll() is not None,
                 timeout=60, what="the worker's retry lines")
        assert worker.proc.poll() is None, worker.output[-3000:]
        assert "Traceback" not in worker.output and "missing 2 required" not in worker.output, worker.output[-3000:]
    finally:
        start_again()
    connections[broker].close()
    worker.wait_ready(timeout=90)
    assert sleep_then_add.delay(0, 2, 3).get(timeout=60) == 5


@pytest.mark.parametrize("db_alias", ["postgres", "redis", "amqp"], indirect=True)
def test_a_worker_told_to_stop_while_its_broker_is_away_stops(broker, start_worker) -> None:
    proxy, env = in_front_of(broker.leg)
    try:
        worker = start_worker("-P", "threads", "-c", "2", env=env)
        proxy.close()
        wait_for(lambda: "next try in" in worker.output, timeout=60, what="the worker to wait for its broker")
        worker.signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=30)  # kombu's own retry loop would wait for the broker for ever
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not stop:\n{worker.output[-3000:]}") from None
    finally:
        proxy.close()
    assert code == 0, worker.output[-3000:]
    assert "stopped" in worker.output.splitlines()[-1], worker.output[-3000:]
